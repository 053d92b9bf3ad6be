"""MetricsManager: what runs send (`spell.metrics.send_metric`) and what clients read, and the
stop conditions it checks as values arrive."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime, timezone

from ..errors import Conflict, InvalidInput
from ..models import HARDWARE_METRIC_PREFIX, RunAction, SendMetrics
from ..stop_conditions import StopCondition, parse_stop_condition
from ..store import RunStore
from ..store.metrics import MetricPoint, MetricStore


class MetricSignal:
    """Wakes a follower (on the IOLoop) when a run's metrics were written in this process."""

    def __init__(self, signals: MetricSignals, run_id: int, loop: asyncio.AbstractEventLoop):
        self.signals = signals
        self.run_id = run_id
        self.loop = loop
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()

    def close(self) -> None:
        self.signals.remove(self)


class MetricSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[int, set[MetricSignal]] = {}

    def subscribe(self, run_id: int) -> MetricSignal:
        signal = MetricSignal(self, run_id, asyncio.get_running_loop())
        with self._lock:
            self._by_run.setdefault(run_id, set()).add(signal)
        return signal

    def remove(self, signal: MetricSignal) -> None:
        with self._lock:
            found = self._by_run.get(signal.run_id)
            if found is not None:
                found.discard(signal)
                if not found:
                    del self._by_run[signal.run_id]

    def notify(self, run_id: int) -> None:
        with self._lock:
            signals = list(self._by_run.get(run_id, ()))
        for signal in signals:
            signal.loop.call_soon_threadsafe(signal.event.set)


class MetricsManager:
    def __init__(self, store: RunStore, metrics: MetricStore, wake):
        self.store = store
        self.metrics = metrics
        self.wake = wake  # tells the engine of a stop request
        self.signals = MetricSignals()
        metrics.listeners.append(self.signals.notify)

    def send(self, run_id: int, batch: SendMetrics) -> int:
        """Store a run's values (the run must be active); returns how many were sent."""
        run = self.store.get_run(run_id)  # its status and its stop conditions, in one read
        if run.status.is_final:
            raise Conflict(f"run {run_id} is {run.status.value}: it takes no more metrics")
        reserved = [m.name for m in batch.metrics if m.name.startswith(HARDWARE_METRIC_PREFIX)]
        if reserved:
            raise InvalidInput(
                f"metric names starting with {HARDWARE_METRIC_PREFIX!r} are the server's own "
                f"hardware samples: rename {reserved[0]!r}"
            )
        now = datetime.now(timezone.utc)
        points = [MetricPoint(m.name, m.value, m.index, m.timestamp or now) for m in batch.metrics]
        conditions = [parse_stop_condition(c) for c in run.spec.stop_conditions]
        watched = {name for c in conditions for name in c.metrics}
        before = self.metrics.latest(run_id, watched & {p.name for p in points}) if watched else {}
        stored = self.metrics.append(run_id, points)
        if conditions:
            self._check(run_id, conditions, before, stored)
        return len(points)

    def _check(
        self,
        run_id: int,
        conditions: list[StopCondition],
        latest: dict[str, tuple[int, float]],
        stored: list[dict],
    ) -> None:
        """Stop the run at the first value after which a condition holds (values in the
        order they arrived, each metric at its latest index)."""
        watched = {name for c in conditions for name in c.metrics}
        for row in stored:
            name, value = row["name"], row["value"]
            if name not in watched or value is None:
                continue
            if name in latest and latest[name][0] > row["index"]:
                continue  # an older index arriving late
            latest[name] = (row["index"], value)
            for condition in conditions:
                if name in condition.metrics and condition.holds(latest):
                    self._stop(run_id, condition, name, row)
                    return

    def _stop(self, run_id: int, condition: StopCondition, name: str, row: dict) -> None:
        run = self.store.get_run(run_id)
        if run.requested_action is not None or run.status.is_final:
            return
        self.store.add_status_note(
            run_id,
            f"Stop condition '{condition}' met ({name} = {row['value']:g} at index "
            f"{row['index']}): stopping the run",
        )
        with contextlib.suppress(Conflict):  # it ended meanwhile
            self.store.request_action(run_id, RunAction.STOP)
        self.wake()

    def summary(self, run_id: int) -> list[dict]:
        self.store.status_of(run_id)  # 404 for an unknown run
        return self.metrics.summary(run_id)

    def rows(self, run_id: int, name: str | None, **query) -> list[dict]:
        return self.metrics.rows(run_id, name, **query)
