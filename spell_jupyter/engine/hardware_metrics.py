"""HardwareSampler: CPU, memory and GPU use of running container runs, recorded every few
seconds as metrics of their own (`spell/cpu_percent`, `spell/memory_mib`, `spell/gpu0_percent`,
...), beside what the runs send themselves."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from ..backends.base import Backend
from ..errors import SpellError
from ..gpus import gpu_usage
from ..store.metrics import MetricPoint, MetricStore

log = logging.getLogger(__name__)

Running = Callable[[], dict[int, tuple[dict, list[int]]]]  # run -> (handle, GPU indices)


def samples(stats: dict, gpus: list[dict]) -> list[tuple[str, float]]:
    """Metric (name, value) pairs of one stats sample and its GPUs' usage."""
    out = [("spell/cpu_percent", float(stats.get("cpu_percent", 0.0)))]
    if "memory_bytes" in stats:
        out.append(("spell/memory_mib", round(stats["memory_bytes"] / 2**20, 1)))
    for gpu in gpus:
        if gpu.get("utilization_percent") is not None:
            out.append((f"spell/gpu{gpu['index']}_percent", gpu["utilization_percent"]))
        if gpu.get("memory_used_mib") is not None:
            out.append((f"spell/gpu{gpu['index']}_memory_mib", gpu["memory_used_mib"]))
    return out


class HardwareSampler:
    """One thread sampling every running run in turn, every `interval` seconds."""

    def __init__(self, backend: Backend, metrics: MetricStore, running: Running, interval: float):
        self.backend = backend
        self.metrics = metrics
        self.running = running
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="spell-hardware", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            for run_id, (handle, gpu_indices) in list(self.running().items()):
                self.sample(run_id, handle, gpu_indices)

    def sample(self, run_id: int, handle: dict, gpu_indices: list[int]) -> bool:
        """Record one sample of a run; False where the backend has no statistics (local
        processes) or the run is gone."""
        try:
            stats = self.backend.stats(handle)
        except SpellError:
            return False  # this backend keeps none
        except Exception as exc:  # the container ended between the list and the sample
            log.debug("Spell: no statistics of run %s: %s", run_id, exc)
            return False
        gpus = stats.pop("gpus", None)  # sampled where it runs (a cluster's node)
        if gpus is None:
            gpus = gpu_usage(gpu_indices) if gpu_indices else []
        now = datetime.now(timezone.utc)
        points = [MetricPoint(name, value, None, now) for name, value in samples(stats, gpus)]
        try:
            self.metrics.append(run_id, points)
        except SpellError:
            return False
        return True
