"""`send_metric`: a run's own metrics, sent from inside it in the background.

Inside a run (SPELL_RUN_ID, SPELL_BASE_URL and SPELL_TOKEN set by the server) each call only
checks the value and queues it; a daemon thread sends what queued every FLUSH_SECONDS (or at
once past BATCH values) and what is left when the script exits. Outside a run it does nothing,
as Spell's did. It never raises: a bad value or an unreachable server is a warning.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import warnings

FLUSH_SECONDS = 0.05
BATCH = 5000  # values per request (the server takes up to 10,000)
MAX_QUEUED = 1_000_000  # values kept while the server cannot be reached
MAX_NAME = 128
MAX_TEXT = 4096
EXIT_FLUSH_SECONDS = 10.0


class SpellMetricWarning(UserWarning):
    """A value not sent: a bad one, or one the server could not take."""


class MetricSender:
    """Queues values and sends them in batches from a daemon thread."""

    def __init__(self, run_id: int, base_url: str, token: str):
        from .transport import Transport

        self.run_id = run_id
        self.transport = Transport(base_url, token, timeout=30.0)
        self._queue: list[tuple[str, object, int, float]] = []
        self._lock = threading.Lock()
        self._next_index: dict[str, int] = {}
        self._names: set[str] = set()
        self._wake = threading.Event()
        self._sending = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="spell-metrics", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, name: str, value: object, index: int | None) -> None:
        if name not in self._names and not self._good_name(name):
            return
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return _warn(f"metric {name}: {value} is not sent (values must be finite)")
        elif kind is not int and kind is not str:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)  # numpy numbers and other number types
                if not math.isfinite(value):
                    return _warn(f"metric {name}: {value} is not sent (values must be finite)")
            else:
                return _warn(
                    f"metric {name}: a {kind.__name__} is not sent (a number or a text is)"
                )
        elif kind is str and len(value) > MAX_TEXT:
            return _warn(f"metric {name}: a text over {MAX_TEXT} characters is not sent")
        if index is None:
            index = self._next_index.get(name, 0)
        elif type(index) is not int or index < 0:
            return _warn(f"metric {name}: index {index!r} is not a whole number >= 0")
        self._next_index[name] = index + 1
        with self._lock:
            self._queue.append((name, value, index, time.time()))
            size = len(self._queue)
        if size >= BATCH:
            self._wake.set()
        if size > MAX_QUEUED:
            with self._lock:
                dropped = len(self._queue) - MAX_QUEUED
                del self._queue[:dropped]
            _warn(f"{dropped} metric values dropped: the Spell server has not taken them")

    def _good_name(self, name: object) -> bool:
        if not isinstance(name, str) or not name.strip():
            _warn(f"metric name {name!r} is not sent: a name is a non-empty text", 5)
            return False
        if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
            _warn(
                f"metric name {name[:40]!r} is not sent: at most {MAX_NAME} printable characters", 5
            )
            return False
        if name.startswith("spell/"):
            _warn(f"metric name {name!r} is not sent: spell/... names are the server's own", 5)
            return False
        self._names.add(name)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; False if the server could not take it in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._queue:
                    return True
            if not self._send_some():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.2)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self.flush(EXIT_FLUSH_SECONDS):
                with self._lock:
                    left = len(self._queue)
                _warn(f"{left} metric values could not be sent before the script ended")
            self._wake.set()

    def _loop(self) -> None:
        failures = 0
        while not self._closed:
            self._wake.wait(min(FLUSH_SECONDS * (2**failures), 5.0))
            self._wake.clear()
            failures = 0 if self._send_some() else min(failures + 1, 7)

    def _send_some(self) -> bool:
        """Send one batch (one sender at a time); False when the server did not take it."""
        from .errors import APIError, SpellClientError

        with self._sending:
            with self._lock:
                batch = self._queue[:BATCH]
            if not batch:
                return True
            body = {
                "metrics": [
                    {"name": n, "value": v, "index": i, "timestamp": t} for n, v, i, t in batch
                ]
            }
            try:
                self.transport.request("POST", f"runs/{self.run_id}/metrics", json=body)
            except APIError as exc:
                if exc.status_code >= 500:
                    return False
                _warn(f"{len(batch)} metric values were refused: {exc}")  # never sent again
            except (SpellClientError, OSError, ValueError):
                return False  # unreachable for now: kept and tried again
            with self._lock:
                del self._queue[: len(batch)]
            return True


_sender: MetricSender | None = None
_sender_lock = threading.Lock()


def _warn(message: str, stacklevel: int = 4) -> None:
    """Warn at the user's line (through send_metric and MetricSender.add)."""
    warnings.warn(message, SpellMetricWarning, stacklevel=stacklevel)


def current_sender() -> MetricSender | None:
    """The sender of this run's metrics; None outside a run."""
    global _sender
    if _sender is None:
        run_id, url = os.environ.get("SPELL_RUN_ID"), os.environ.get("SPELL_BASE_URL")
        if not run_id or not url:
            return None
        with _sender_lock:
            if _sender is None:
                try:
                    _sender = MetricSender(int(run_id), url, os.environ.get("SPELL_TOKEN", ""))
                except ValueError as exc:
                    _warn(f"metrics are not sent: {exc}")
                    os.environ.pop("SPELL_RUN_ID", None)
                    return None
    return _sender


def send_metric(name: str, value: float | int | str, index: int | None = None) -> None:
    """Record `value` (a number or a text) of metric `name` at `index` (the next one when left
    out) for the run this script runs in; outside a run, nothing happens."""
    sender = _sender or current_sender()
    if sender is not None:
        sender.add(name, value, index)
