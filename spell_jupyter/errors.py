"""Errors the service layer raises; the server maps each to its HTTP status."""

from __future__ import annotations


class SpellError(Exception):
    """A failure a user can act on; `status_code` is what REST answers with."""

    status_code = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(SpellError):
    status_code = 400


class NotFound(SpellError):
    status_code = 404


class Conflict(SpellError):
    status_code = 409


class Unavailable(SpellError):
    """A service the request needs (e.g. the Docker Engine) is not answering."""

    status_code = 503


class Forbidden(SpellError):
    """A request for something no one may do here (e.g. writing into runs/ or public/)."""

    status_code = 403


class NotHere(SpellError):
    """A same-host copy that cannot be made (another host or user, or a file that differs from
    the one described): the client sends the bytes over HTTP instead."""

    status_code = 412
