"""LogFeed: one watcher per followed run feeds every follower of its log from memory.

In the process that writes a run's log (the engine's leader), the store tells the feed of each
committed batch; in any other server of the data directory, one thread per followed run reads
the store on from the newest entry it has. Followers (REST log streams, waits, later the Lab's
event stream) wait on an asyncio event and take what is new from the feed's buffer; one that
fell behind the buffer reads the store instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from ..models import LogEntry, Status
from ..store import RunStore

BUFFER = 20_000  # entries kept per followed run


class Subscription:
    """One follower of one run's log: `wait` for news, then `take` it."""

    def __init__(self, topic: _Topic, loop: asyncio.AbstractEventLoop):
        self.topic = topic
        self.loop = loop
        self.event = asyncio.Event()

    def notify(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float | None = None) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()

    def take(self, offset: int) -> list[str] | None:
        """NDJSON lines of the entries from `offset` on, [] when there are none yet, None when
        `offset` is older than the buffer (read the store)."""
        return self.topic.take(offset)

    @property
    def status(self) -> Status | None:
        """The run's status as its last status entry said (None before one was seen)."""
        return self.topic.status

    def close(self) -> None:
        self.topic.feed.unsubscribe(self)


class _Topic:
    def __init__(self, feed: LogFeed, run_id: int):
        self.feed = feed
        self.run_id = run_id
        self.lock = threading.Lock()
        self.entries: list[dict] = []  # rows, in offset order (the last BUFFER to 2*BUFFER)
        self.lines: list[str | None] = []  # each row's NDJSON line, made once when asked
        self.end = -1  # the next offset after the buffer (-1: nothing seen yet)
        self.status: Status | None = None
        self.subscribers: set[Subscription] = set()
        self.poller: threading.Thread | None = None

    def publish(self, rows: list[dict]) -> None:
        with self.lock:
            for row in rows:
                if row["offset"] < self.end:
                    continue  # seen already (a poller and a write of this process)
                self.entries.append(row)
                self.lines.append(None)
                self.end = row["offset"] + 1
                if row["status_event"]:
                    self.status = Status(row["status"])
            if len(self.entries) > 2 * BUFFER:
                del self.entries[:-BUFFER], self.lines[:-BUFFER]
            subscribers = list(self.subscribers)
        for subscriber in subscribers:
            subscriber.notify()

    def take(self, offset: int) -> list[str] | None:
        with self.lock:
            if self.end < 0:
                return None  # nothing seen yet
            if offset >= self.end:
                return []
            if not self.entries or offset < self.entries[0]["offset"]:
                return None
            start = offset - self.entries[0]["offset"]
            for index in range(start, len(self.entries)):
                if self.lines[index] is None:
                    entry = LogEntry.model_validate(self.entries[index])
                    self.lines[index] = entry.model_dump_json() + "\n"
            return self.lines[start:]


class LogFeed:
    """Follows the logs of runs someone follows; see the module's docstring."""

    def __init__(
        self,
        store: RunStore,
        writes_here: Callable[[], bool],
        poll_interval: float = 0.05,
    ):
        self.store = store
        self.writes_here = writes_here  # is this process the one writing logs (the leader)?
        self.poll_interval = poll_interval
        self._topics: dict[int, _Topic] = {}
        self._lock = threading.Lock()
        store.log_listeners.append(self._on_entries)

    def subscribe(self, run_id: int) -> Subscription:
        """Follow a run's log from now on (call before reading the store, so nothing falls
        between the two)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            topic = self._topics.get(run_id)
            if topic is None:
                topic = self._topics[run_id] = _Topic(self, run_id)
            subscription = Subscription(topic, loop)
            topic.subscribers.add(subscription)
            if topic.poller is None and not self.writes_here():
                topic.poller = threading.Thread(
                    target=self._poll, args=(topic,), name=f"spell-feed-{run_id}", daemon=True
                )
                topic.poller.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        topic = subscription.topic
        with self._lock:
            topic.subscribers.discard(subscription)
            if not topic.subscribers:
                self._topics.pop(topic.run_id, None)

    def _on_entries(self, run_id: int, rows: list[dict]) -> None:
        topic = self._topics.get(run_id)
        if topic is not None:
            topic.publish(rows)

    def _poll(self, topic: _Topic) -> None:
        """The one reader of a run's log in a process that does not write it."""
        stop = threading.Event()
        while topic.subscribers and not self.writes_here():
            start = topic.end if topic.end >= 0 else self.store.log_count(topic.run_id)
            rows = self.store.log_rows(topic.run_id, start, 5000)
            if rows:
                topic.publish(rows)
            elif topic.end < 0:
                topic.end = start
            else:
                stop.wait(self.poll_interval)
        topic.poller = None
