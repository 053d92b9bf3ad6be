"""Errors of the Python client."""

from __future__ import annotations


class SpellClientError(Exception):
    """Base class of every client error."""


class APIError(SpellClientError):
    """The server refused a request; `status_code` and the server's `message` say why."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class ServerUnavailable(SpellClientError):
    """No Spell server answers for this data directory."""


class ServerAlreadyRunning(SpellClientError):
    """`spell server` found another server serving the same data directory."""


class WaitError(SpellClientError):
    """A run reached a final status other than the ones waited for."""


class UnsupportedArgument(SpellClientError, TypeError):
    """A Spell keyword this version does not implement yet (never silently ignored)."""


class InvalidArgument(SpellClientError, ValueError):
    """An argument the client refuses before asking the server (e.g. a missing file)."""
