"""The way into services that runs serve on this host alone: a workspace's Jupyter at
`<base_url>spell/workspaces/<name>/...` and a run's TensorBoard at
`<base_url>spell/runs/<id>/tensorboard/...`, proxied (HTTP and websockets). This server's
authentication and Authorizer decide who gets in (403 otherwise, never proxied); the proxy adds
a service's token itself, so it never reaches a browser, and keeps this server's credentials
(cookies, token) from the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

from ..errors import NotFound, Unavailable
from ..http_forwarding import CONNECT_TIMEOUT, HOP_BY_HOP, forward
from ..services.tensorboards import TensorBoards
from ..services.upstreams import NotServing, Upstream
from ..services.workspaces import WorkspaceManager
from ..workspace_identity import USER_HEADER
from .base import AUTH_RESOURCE

# This server's credentials stay here; a service gets its own token instead.
NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "cookie",
    "authorization",
    "x-xsrftoken",
    "content-length",
    USER_HEADER.lower(),
}
# A service's cookies are its login, useless to a browser that reaches it through here,
# and an `_xsrf` of its own would shadow this server's.
NOT_RETURNED = HOP_BY_HOP | {"set-cookie", "content-length"}
TOKEN_ARGUMENT = re.compile(r"(?:^|&)token=[^&]*")


class ServiceProxyHandler(WebSocketMixin, WebSocketHandler, ExtensionHandlerMixin, JupyterHandler):
    """Every method of HTTP, and websocket upgrades (kernels, terminals, events), to the
    service `find_upstream` names."""

    auth_resource = AUTH_RESOURCE
    action = "execute"  # what the Authorizer is asked for (a workspace runs what users type)
    _upstream_ws = None  # the websocket to the service, once connected
    _pending: list[str | bytes] | None = None  # its messages before this side was open

    def find_upstream(self, key: str) -> Upstream:
        """Where the service of `key` (the first path argument) answers; raises NotFound,
        NotServing or Unavailable (called in a worker thread)."""
        raise NotImplementedError

    # -- entry -----------------------------------------------------------------------------------

    async def get(self, name: str, path: str | None = None) -> None:
        await self._admit()
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await self._open_upstream_websocket(await self._upstream(name))
            await WebSocketHandler.get(self, name, path)
            if self.ws_connection is None and self._upstream_ws is not None:
                self._upstream_ws.close()  # the upgrade was refused here (its origin)
                self._upstream_ws = None
        else:
            self.xsrf_token  # noqa: B018 (this server's _xsrf cookie, for the service's pages)
            await self._proxy_http(name, path)

    async def _any(self, name: str, path: str | None = None) -> None:
        await self._admit()
        await self._proxy_http(name, path)

    post = put = patch = delete = head = options = _any

    async def _admit(self) -> None:
        """This server's user, allowed `action` by its Authorizer."""
        if not self.current_user:
            raise web.HTTPError(403, "log in to this Jupyter server first")
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, self.action, AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403, f"this user may not {self.action} on Spell's resources here")

    async def _upstream(self, name: str) -> Upstream:
        try:
            return await asyncio.to_thread(self.find_upstream, name)
        except NotFound as exc:
            self._page(404, "Not found", exc.message)
        except Unavailable as exc:
            self._page(503, "Not available", exc.message)
        except NotServing as exc:
            run = exc.run
            if run.status.is_final:
                self._page(
                    502,
                    f"Workspace {name} is not running",
                    f"Its run {run.id} ended {run.status.value}"
                    + (f" ({run.status_message})" if run.status_message else "")
                    + f". Start it again (its saved files come back): spell jupyter {name}",
                )
            self._page(
                503,
                f"Workspace {name} is starting",
                f"Its run {run.id} is {run.status.value}: this page looks again in a moment.",
                refresh=True,
            )
        raise AssertionError("unreachable")

    def _page(self, status: int, title: str, message: str, refresh: bool = False) -> None:
        """Answer with a short page a person can read (then stop the request)."""
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        again = '<meta http-equiv="refresh" content="2">' if refresh else ""
        self.finish(
            f"<!doctype html><html><head><title>{html.escape(title)}</title>{again}</head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
        )
        raise web.Finish()

    # -- HTTP ------------------------------------------------------------------------------------

    def _upstream_headers(self, upstream: Upstream) -> dict[str, str]:
        headers = {
            k: v for k, v in self.request.headers.get_all() if k.lower() not in NOT_FORWARDED
        }
        if upstream.token:
            headers["Authorization"] = f"token {upstream.token}"
        headers["Host"] = upstream.address
        user = self.current_user
        headers[USER_HEADER] = json.dumps(
            {
                "username": getattr(user, "username", ""),
                "name": getattr(user, "name", ""),
                "display_name": getattr(user, "display_name", ""),
            },
            ensure_ascii=True,
        )
        return headers

    def _upstream_uri(self) -> str:
        """The request's path and query without this server's token (if one was given)."""
        path, _, query = self.request.uri.partition("?")
        query = TOKEN_ARGUMENT.sub("", query).lstrip("&")
        return f"{path}?{query}" if query else path

    async def _proxy_http(self, name: str, path: str | None) -> None:
        upstream = await self._upstream(name)
        url = f"http://{upstream.address}{self._upstream_uri()}"
        error = await forward(self, url, self._upstream_headers(upstream), NOT_RETURNED)
        if error is not None:
            self._not_answering(name, upstream, error)
        self.finish()

    def _not_answering(self, name: str, upstream: Upstream, error: BaseException) -> None:
        run = upstream.run.id
        self.log.info("Spell: what run %s serves (%s) did not answer: %s", run, name, error)
        self._page(
            502,
            f"{name} is not answering",
            f"What run {run} serves does not answer yet: it may be starting (this page looks "
            f"again in a moment), or its process is gone (`spell logs {run}` says why).",
            refresh=True,
        )

    # -- websockets ------------------------------------------------------------------------------

    async def _open_upstream_websocket(self, upstream: Upstream) -> None:
        """Connect to the service first, so the subprotocol it picks is the one answered."""
        offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
        request = HTTPRequest(
            f"ws://{upstream.address}{self._upstream_uri()}",
            headers={
                k: v
                for k, v in self._upstream_headers(upstream).items()
                if not k.lower().startswith("sec-websocket")
            },
            connect_timeout=CONNECT_TIMEOUT,
        )
        try:
            self._upstream_ws = await websocket_connect(
                request,
                on_message_callback=self._from_upstream,
                subprotocols=[p.strip() for p in offered.split(",") if p.strip()] or None,
                max_message_size=self.max_message_size,
            )
        except (OSError, HTTPClientError) as exc:
            self._not_answering(self.path_args[0], upstream, exc)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self._upstream_ws.selected_subprotocol if self._upstream_ws else None
        return chosen if chosen in subprotocols else None

    def open(self, *args, **kwargs) -> None:
        super().open(*args, **kwargs)
        self.set_nodelay(True)  # kernel messages are small: no Nagle delay on this side
        pending, self._pending = self._pending or [], None
        for message in pending:
            self._send_down(message)

    def _from_upstream(self, message: str | bytes | None) -> None:
        if message is None:  # the service closed it
            if self.ws_connection is not None:
                self.close()
            return
        if self.ws_connection is None:  # before this side is open
            self._pending = [*(self._pending or []), message]
        else:
            self._send_down(message)

    def _send_down(self, message: str | bytes) -> None:
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(message, binary=isinstance(message, bytes))

    async def on_message(self, message: str | bytes) -> None:
        if self._upstream_ws is not None:
            with contextlib.suppress(WebSocketClosedError):
                await self._upstream_ws.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self._upstream_ws is not None:
            self._upstream_ws.close()
            self._upstream_ws = None


class WorkspaceProxyHandler(ServiceProxyHandler):
    """A workspace's Jupyter."""

    def find_upstream(self, key: str) -> Upstream:
        workspaces: WorkspaceManager = self.settings["spell_workspaces"]
        return workspaces.upstream(key)


class TensorBoardProxyHandler(ServiceProxyHandler):
    """A run's TensorBoard: reading what a run wrote."""

    action = "read"

    def check_xsrf_cookie(self) -> None:
        """TensorBoard's pages send no XSRF token with their POSTs, which are queries (hparams):
        nothing a TensorBoard answers changes anything, and no other site can read it."""
        return None

    def find_upstream(self, key: str) -> Upstream:
        tensorboards: TensorBoards = self.settings["spell_tensorboards"]
        return tensorboards.upstream(int(key))


def proxy_routes() -> list[tuple[str, type]]:
    return [
        (r"/spell/workspaces/([^/]+)(/.*)?", WorkspaceProxyHandler),
        (r"/spell/runs/(\d{1,18})/tensorboard(/.*)?", TensorBoardProxyHandler),
    ]
