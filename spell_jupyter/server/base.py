"""The base of every Spell handler: authentication, errors as JSON 4xx, strict arguments."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import ValidationError
from tornado import web

from ..engine import ResourceService, RunService
from ..errors import NotHere, SpellError
from .peer import is_same_user_here


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, e.g. `labels.0: invalid label ...`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def api(method: Callable) -> Callable:
    """Authenticate, then turn SpellError/ValidationError into JSON 4xx answers."""

    @web.authenticated
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            result = method(self, *args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except SpellError as exc:
            raise web.HTTPError(exc.status_code, exc.message) from exc
        except ValidationError as exc:
            raise web.HTTPError(400, describe_validation_error(exc)) from exc

    return wrapper


class SpellHandler(ExtensionHandlerMixin, APIHandler):
    """Base: access to the service, JSON in and out, strict query parsing."""

    @property
    def service(self) -> RunService:
        return self.settings["spell_service"]

    @property
    def resources(self) -> ResourceService:
        return self.settings["spell_resources"]

    def is_local_peer(self) -> bool:
        """Whether the client runs on this host as this server's user, and same-host copies are
        allowed (SpellJupyter.local_copies)."""
        if not self.settings.get("spell_local_copies", False):
            return False
        stream = getattr(self.request.connection, "stream", None)
        return is_same_user_here(getattr(stream, "socket", None))

    def require_local_peer(self) -> None:
        if not self.is_local_peer():
            raise NotHere(
                "same-host copies are for clients on this server's host, running as its user"
            )

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def send(self, model, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())

    def int_arg(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer, not {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise web.HTTPError(400, f"{name} must be {bound}, not {value}")
        return value

    def bool_arg(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise web.HTTPError(400, f"{name} must be true or false, not {raw!r}")

    def enum_args(self, name: str, enum: type) -> list:
        values = []
        for raw in self.get_query_arguments(name):
            try:
                values.append(enum(raw))
            except ValueError:
                known = ", ".join(e.value for e in enum)
                raise web.HTTPError(400, f"unknown {name} {raw!r}: use one of {known}") from None
        return values
