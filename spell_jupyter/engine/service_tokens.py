"""Tokens of runs that serve (a workspace's Jupyter), derived from a key of the data directory:
the engine that launches a run and every server of the data directory that proxies to it
agree on the token with nothing stored, a resumed launch gets the same one, and no browser
ever sees it (the proxy adds it)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path


class ServiceTokens:
    """`token(run_id)`: the token a serving run takes from its clients."""

    def __init__(self, home: Path):
        self.path = home / "service.key"
        self._key: bytes | None = None

    def token(self, run_id: int) -> str:
        return hmac.new(self._read_key(), f"run-{run_id}".encode(), hashlib.sha256).hexdigest()

    def _read_key(self) -> bytes:
        if self._key is None:
            with contextlib.suppress(FileNotFoundError):
                self._key = self.path.read_bytes()
        if not self._key:
            self._key = self._create_key()
        return self._key

    def _create_key(self) -> bytes:
        """Written whole under a temporary name, then linked into place: two processes
        creating it at once both end up with the one that was linked first."""
        tmp = self.path.with_name(f"service.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        return self.path.read_bytes()
