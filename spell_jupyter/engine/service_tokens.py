"""Tokens of runs that serve (a workspace's Jupyter, a remote kernel), derived from a key
the store keeps: the engine that launches a run and every server of the store that proxies to
it agree on the token with nothing stored per run, a resumed launch gets the same one, and no
browser ever sees it (the proxy adds it). The key lives in the store (not in one data
directory), so the servers of a team share it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from pathlib import Path

from ..store import RunStore

SECRET_NAME = "service_key"


class ServiceTokens:
    """`token(run_id)`: the token a serving run takes from its clients."""

    def __init__(self, store: RunStore, home: Path):
        self.store = store
        self.former_key = home / "service.key"  # where a data directory kept it before
        self._key: bytes | None = None

    def token(self, run_id: int) -> str:
        return hmac.new(self._read_key(), f"run-{run_id}".encode(), hashlib.sha256).hexdigest()

    def _read_key(self) -> bytes:
        if self._key is None:
            self._key = self.store.shared_secret(SECRET_NAME, self._first_key)
        return self._key

    def _first_key(self) -> bytes:
        """The data directory's key of before, so that workspaces running keep their tokens;
        else a new one."""
        with contextlib.suppress(OSError):
            kept = self.former_key.read_bytes()
            if kept:
                return kept
        return secrets.token_bytes(32)
