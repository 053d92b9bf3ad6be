"""The base of every Spell handler: authentication, errors as JSON 4xx, strict arguments."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from tornado import web

from ..errors import Forbidden, NotHere, SpellError
from ..models import describe_validation_error
from ..services import RunManager, SpellFSManager
from ..services.metrics import MetricsManager
from ..services.run_access import Level, RunAccess
from ..store.repository import TokenHolder
from .owners import request_owner
from .peer import is_same_user_here

# What a Jupyter Authorizer (or JupyterHub's scopes) is asked about: read (listings, logs,
# downloads), write (stop, kill, labels, uploads, links) and execute (creating a run).
AUTH_RESOURCE = "spell"
MAX_INT64 = 2**63 - 1  # the largest integer the store holds
MAX_JSON_BODY = 8 << 20  # a run spec with its 1 MiB requirements and conda files fits easily


def first_text_not_utf8(value, where: str = "") -> str | None:
    """Why a JSON value holds text that is not UTF-8 (a lone surrogate such as "\\ud800", or a
    byte a terminal passed through as one), naming the field; None when all of it is."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            field = where or "the body"
            return f"{field}: text is not valid UTF-8 (at character {exc.start})"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        name = f"{where}.{key}" if where else str(key)
        problem = first_text_not_utf8(key, f"{name} (a name)") if isinstance(key, str) else None
        problem = problem or first_text_not_utf8(item, name)
        if problem:
            return problem
    return None


STORE_DOWN = (
    "the run store (database) does not answer; nothing was changed: try again once it is back"
)


def api(method: Callable | None = None, *, action: str | None = None) -> Callable:
    """Authenticate, ask Jupyter's Authorizer whether the user may do `action` on the handler's
    `auth_resource` (default: read for GET/HEAD, write for the rest), then turn
    SpellError/ValidationError into JSON 4xx answers. `@api` or `@api(action="execute")`.
    A run's token (on the runs' socket, where only those are taken, or from a --local
    workflow master over TCP) is held to the handler's `run_tokens` level for the method
    instead."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        async def wrapper(self, *args, **kwargs):
            try:
                if self.settings.get("spell_run_socket") or self.bears_run_token():
                    await self.authorize_run_token(method.__name__, args)
                result = method(self, *args, **kwargs)
                if asyncio.iscoroutine(result):
                    result = await result
                return result
            except SpellError as exc:
                raise web.HTTPError(exc.status_code, exc.message) from exc
            except ValidationError as exc:
                raise web.HTTPError(400, describe_validation_error(exc)) from exc
            except (OperationalError, InterfaceError) as exc:  # the database is out of reach
                raise web.HTTPError(503, STORE_DOWN) from exc

        through_jupyter = web.authenticated(authorized(action)(wrapper))

        @functools.wraps(method)
        async def entry(self, *args, **kwargs):
            if self.settings.get("spell_run_socket") or self.bears_run_token():
                return await wrapper(self, *args, **kwargs)
            return await through_jupyter(self, *args, **kwargs)

        return entry

    return decorate(method) if method is not None else decorate


class SpellHandler(ExtensionHandlerMixin, APIHandler):
    """Base: access to the service, JSON in and out, strict query parsing."""

    auth_resource = AUTH_RESOURCE
    run_tokens: dict[str, Level] = {}  # method -> what a run's token needs to call it
    run_in_path = False  # whether the first path argument is a run's ID
    run_holder: TokenHolder | None = None  # the run whose token called (None: a Jupyter user)

    def bearer_token(self) -> str:
        """The token of the Authorization header ('' when there is none)."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() in ("token", "bearer") else ""

    def bears_run_token(self) -> bool:
        return self.bearer_token().startswith("spellrun-")

    def check_xsrf_cookie(self) -> None:
        """A run's token is a header, never a cookie: no cross-site request can carry it."""
        if self.bears_run_token():
            return None
        return super().check_xsrf_cookie()

    async def authorize_run_token(self, method: str, args: tuple) -> None:
        token = self.bearer_token()
        access: RunAccess = self.settings["spell_run_access"]
        holder = await self.call(access.holder, token) if token else None
        if holder is None:
            raise Forbidden(
                "a run's token (SPELL_TOKEN inside a run) is taken while its run is active; "
                "this one is unknown or its run has ended"
            )
        run_id = int(args[0]) if self.run_in_path and args else None
        await self.call(access.check, holder, self.run_tokens.get(method), run_id)
        self.run_holder = holder

    async def owner(self) -> str:
        """Who this request acts for: a run's token acts for its run's owner, a Jupyter user
        for themselves (see `owners`)."""
        if self.run_holder is not None:
            found = await self.call(self.service.store.owner_of, self.run_holder.run_id)
            return found or self.settings["spell_owner"]
        return request_owner(
            self.current_user, self.identity_provider, self.settings["spell_owner"]
        )

    async def call(self, function: Callable, *args, **kwargs):
        """Run a blocking call (the store, SpellFS, Docker) in a worker thread: one request
        waiting on a locked database or a slow bucket never stalls the others."""
        return await asyncio.to_thread(function, *args, **kwargs)

    def _request_summary(self) -> str:
        """What tornado logs of a request that failed: never its token."""
        uri = re.sub(r"([?&][^=&]*(?:token|auth|key)[^=&]*=)[^&]*", r"\1[secret]", self.request.uri)
        return f"{self.request.method} {uri} ({self.request.remote_ip})"

    @property
    def service(self) -> RunManager:
        return self.settings["spell_service"]

    @property
    def metrics(self) -> MetricsManager:
        return self.settings["spell_metrics"]

    @property
    def resources(self) -> SpellFSManager:
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
        if len(self.request.body) > MAX_JSON_BODY:
            raise web.HTTPError(
                413, f"the request body is over {MAX_JSON_BODY >> 20} MiB: send files as uploads"
            )
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        problem = first_text_not_utf8(body)
        if problem:
            raise web.HTTPError(400, problem)
        return body

    def send(self, model, status: int = 200) -> None:
        """The model as JSON; text the store holds that is not valid UTF-8 (rows from before
        the edge refused it) is sent escaped, so no row can make an answer fail."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(model.model_dump(mode="json"), ensure_ascii=True))

    def int_arg(self, name: str, default: int, low: int = 0, high: int = MAX_INT64) -> int:
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
