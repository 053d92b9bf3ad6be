"""RunSocket: the API's door for code inside runs.

The leading server listens on a Unix socket in a private folder (`paths.run_api_dir`) that the
engine shows to each run (mounted read-only into containers); runs reach the API there with
their own token, never over the network. The socket serves the Spell routes alone, with the
server's settings, and takes run tokens alone (`SpellHandler.authorize_run_token`).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application

from ..backends.run_api import SOCKET_NAME
from .handlers import route_table

log = logging.getLogger(__name__)
EXTENSION_NAME = "spell_jupyter"  # what ExtensionHandlerMixin finds its settings by


class RunSocket:
    def __init__(self, web_settings: dict, folder: Path, io_loop: IOLoop):
        self.web_settings = web_settings  # the server's, complete once it serves
        self.path = folder / SOCKET_NAME
        self.io_loop = io_loop
        self.server: HTTPServer | None = None

    def open(self) -> None:
        """Listen (from any thread: connections queue until the loop takes the socket). The
        engine calls this as it begins leading, before any run is launched."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)  # left by a leader that died; the leader lock is ours
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self.io_loop.add_callback(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        settings = {
            **self.web_settings,
            "spell_run_socket": True,
            "disable_check_xsrf": True,  # bearer tokens, never cookies
            "autoreload": False,
            "static_path": None,
        }
        routes = [
            (pattern, handler, {"name": EXTENSION_NAME}) for pattern, handler in route_table()
        ]
        self.server = HTTPServer(Application(routes, **settings), max_body_size=64 << 20)
        self.server.add_socket(sock)
        log.info("Spell: runs reach the API at %s", self.path)

    def close(self) -> None:
        """Stop listening; the socket's path is removed only by the server that made it."""
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.path.unlink(missing_ok=True)
