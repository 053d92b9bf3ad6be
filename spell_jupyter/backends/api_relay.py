"""ApiRelay: the Spell API for the runs of one cluster node, on a Unix socket of that node.

Runs on a node reach Spell as runs on the server's host do: a socket in a folder that
containers see at /run/spell. The node's agent forwards each request to the server that leads
the runs now (each new leader tells the agents its URL), so a run lives through a change of
leader without knowing of it; between leaders it gets 503s with Retry-After, on which the
run's client asks again (for up to a minute).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from tornado.web import Application, RequestHandler

from ..http_forwarding import HOP_BY_HOP, forward
from .run_api import SOCKET_NAME, socket_url

NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
LEADER_FILE = "leader-url"
RETRY_AFTER = 1  # seconds a run's client waits before asking again when no leader answers
MAX_REQUESTS = 1000  # requests relayed at once (followed logs stay open for long)
STREAM_SECONDS = 30 * 86400.0  # how long one relayed request (a followed log) may last
MAX_BODY = 64 << 20  # what the server's own socket takes (uploads come in 16 MiB requests)


class ApiRelay:
    """Serves `folder`/api.sock from a thread of its own, forwarding to `upstream`."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        try:  # the leader an agent before this one was told of (its node lived on)
            self.upstream = (folder / LEADER_FILE).read_text().strip()
        except OSError:
            self.upstream = ""  # until a leader says
        self._lock = threading.Lock()
        self._http: AsyncHTTPClient | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: list[BaseException] = []
        threading.Thread(target=self._serve, name="spell-api-relay", daemon=True).start()
        self._ready.wait(30)
        if self._failed:
            raise self._failed[0]

    @property
    def url(self) -> str:
        """The base URL a run on this node gets (SPELL_BASE_URL)."""
        return socket_url(self.folder)

    def lead(self, upstream: str) -> None:
        """From now on, forward to the server at `upstream`."""
        upstream = upstream.rstrip("/") + "/"
        with self._lock:
            self.upstream = upstream
            kept = self.folder / f"{LEADER_FILE}.{threading.get_ident()}"
            kept.write_text(upstream)
            kept.replace(self.folder / LEADER_FILE)

    def http_client(self) -> AsyncHTTPClient:
        """The relay's own client (in its loop's thread): as many requests at once as the
        node's runs make (tornado's shared client queues any past 10)."""
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True, max_clients=MAX_REQUESTS)
        return self._http

    def close(self) -> None:
        """Stop serving (the socket file goes too)."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        (self.folder / SOCKET_NAME).unlink(missing_ok=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            path = self.folder / SOCKET_NAME
            path.unlink(missing_ok=True)  # an agent before this one (its node lives on)
            sock = bind_unix_socket(str(path), mode=0o600)
            app = Application([(r"/.*", _RelayHandler, {"relay": self})])
            HTTPServer(app, max_body_size=MAX_BODY, xheaders=False).add_socket(sock)
        except BaseException as exc:
            self._failed.append(exc)
            return
        finally:
            self._ready.set()
        self._loop.run_forever()


class _RelayHandler(RequestHandler):
    """Every request, as it came, to the leading server."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, relay: ApiRelay) -> None:
        self.relay = relay

    async def _relay(self, *args) -> None:
        upstream = self.relay.upstream
        if not upstream:
            self._answer(503, "no Spell server leads this node's runs yet; try again soon")
            return
        headers = {
            k: v for k, v in self.request.headers.get_all() if k.lower() not in NOT_FORWARDED
        }
        error = await forward(
            self,
            upstream + self.request.uri.lstrip("/"),
            headers,
            client=self.relay.http_client(),
            request_timeout=STREAM_SECONDS,
        )
        if error is not None:
            self._answer(503, f"the Spell server at {upstream} does not answer ({error})")
            return
        self.finish()

    get = post = put = patch = delete = head = options = _relay

    def _answer(self, status: int, message: str) -> None:
        """503 and its message, telling the run's client to ask again shortly."""
        self.clear()
        self.set_status(status)
        self.set_header("Retry-After", str(RETRY_AFTER))  # a leader comes (the client waits)
        self.finish({"message": message})
