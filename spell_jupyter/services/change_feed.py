"""ChangeFeed: what the event stream (`GET /events`) pushes to every panel and widget: runs
created, changed status, ended, labelled, archived; metrics appended.

Changes are rows of the store with one ascending ID, so a stream resumes after a reconnect (or
a server restart) from the last ID it sent, with nothing missing. In the process that writes
status changes (the engine's leader) a committed status entry wakes the streams at once; any
server of the data directory also looks at the newest ID every `poll_interval` seconds while
someone listens (one indexed query per process, not one per stream or per run). Metrics
appended are told at once by the process that stores them (the leader, where runs send them);
the others see them in the same poll, by the newest arrival number of each live run's metrics."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from ..store import RunStore
from ..store.metrics import MetricStore


class Listener:
    """One stream: `wait` for news, then read the store from its cursor and `take_metrics`."""

    def __init__(self, feed: ChangeFeed, loop: asyncio.AbstractEventLoop):
        self.feed = feed
        self.loop = loop
        self.event = asyncio.Event()
        self.metric_runs: set[int] = set()

    def notify(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float) -> bool:
        """Whether news came within `timeout` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        news = self.event.is_set()
        self.event.clear()
        return news

    def take_metrics(self) -> list[int]:
        """The runs with metrics appended since the last call."""
        with self.feed._lock:
            taken, self.metric_runs = sorted(self.metric_runs), set()
        return taken

    def close(self) -> None:
        self.feed.unsubscribe(self)


class ChangeFeed:
    def __init__(self, store: RunStore, metrics: MetricStore, poll_interval: float = 0.25):
        self.store = store
        self.poll_interval = poll_interval
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._seen = 0
        self._metrics = metrics
        self._metrics_seen: dict[int, int] = {}
        store.log_listeners.append(self._on_entries)
        metrics.listeners.append(self._on_metrics)

    def subscribe(self) -> Listener:
        listener = Listener(self, asyncio.get_running_loop())
        with self._lock:
            self._listeners.add(listener)
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="spell-change-feed", daemon=True
                )
                self._poller.start()
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def _on_metrics(self, run_id: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
            for listener in listeners:
                listener.metric_runs.add(run_id)
        for listener in listeners:
            listener.notify()

    def _current(self) -> list[Listener]:
        with self._lock:
            return list(self._listeners)

    def _on_entries(self, run_id: int, rows: list[dict]) -> None:
        if any(row["status_event"] for row in rows):
            for listener in self._current():
                listener.notify()

    def _poll(self) -> None:
        """The changes other servers of the data directory write."""
        stop = threading.Event()
        while True:
            with self._lock:
                if not self._listeners:
                    self._poller = None
                    return
            newest = self.store.last_change()
            if newest != self._seen:
                self._seen = newest
                for listener in self._current():
                    listener.notify()
            grown = self._metrics.newest_of_live_runs()
            for run_id, seq in grown.items():
                if self._metrics_seen.get(run_id) != seq:
                    self._on_metrics(run_id)
            self._metrics_seen = grown
            stop.wait(self.poll_interval)
