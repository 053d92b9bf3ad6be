"""LogPump: one thread per running run that moves its output from the backend into the store.

Lines arrive in batches as the backend streams them (while one batch is written, the next
gathers), each batch stored in one transaction together with the backend's cursor after it,
so a restart neither loses nor doubles a line. A chatty run only keeps its own pump busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..backends.base import Backend
from ..store import RunStore

RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class LogPump:
    """Follows one run's output from `cursor` until the backend says it has all been given; a
    read that fails is taken up again from the last stored cursor (a few times, waiting longer
    each time), so a backend's passing fault loses no line."""

    def __init__(
        self,
        *,
        run_id: int,
        handle: dict,
        cursor: str,
        backend: Backend,
        store: RunStore,
        on_done: Callable[[int], None],
        on_error: Callable[[BaseException], bool],
        log: logging.Logger,
    ):
        self.run_id = run_id
        self.handle = handle
        self.cursor = cursor
        self.backend = backend
        self.store = store
        self.on_done = on_done
        self.on_error = on_error  # True when it made room (a full disk): try again at once
        self.log = log
        self.stop_event = threading.Event()
        self.drained = threading.Event()  # every line is in the store
        self._thread = threading.Thread(target=self._run, name=f"spell-logs-{run_id}", daemon=True)

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                for lines, cursor in self.backend.follow_output(
                    self.handle, self.cursor, self.stop_event
                ):
                    self._store(lines, cursor)
                    failures = 0
                    if self.stop_event.is_set():
                        return
                break  # everything was given
            except Exception:
                if self.stop_event.is_set():
                    return
                if failures == len(RETRY_SECONDS):  # what could not be read stays unread
                    self.log.exception(
                        "Spell engine: reading the output of run %s failed; giving up", self.run_id
                    )
                    break
                self.log.warning(
                    "Spell engine: reading the output of run %s failed; reading on from its "
                    "cursor in %ss",
                    self.run_id,
                    RETRY_SECONDS[failures],
                    exc_info=True,
                )
                self.stop_event.wait(RETRY_SECONDS[failures])
                failures += 1
        if not self.stop_event.is_set():
            self.drained.set()
            self.on_done(self.run_id)

    def _store(self, lines: list, cursor: str) -> None:
        """Store one batch, trying again (never dropping it) while the store fails."""
        attempt = 0
        while not self.stop_event.is_set():
            try:
                self.store.append_output(self.run_id, lines, cursor)
                self.cursor = cursor
                return
            except Exception as exc:
                if self.on_error(exc):
                    continue
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                self.log.warning(
                    "Spell engine: storing output of run %s failed (%s); again in %ss",
                    self.run_id,
                    exc,
                    delay,
                )
                self.stop_event.wait(delay)
