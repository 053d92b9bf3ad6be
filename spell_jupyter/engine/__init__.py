"""The run engine: lifecycles as a table of steps, scheduling, environments, log pumps.
Event-driven; never imports tornado or jupyter_server; reaches runs only through a Backend."""

from pathlib import Path
from typing import Protocol

from ..models import RunSpec
from .lifecycle import RunEngine
from .machine_types import Allocation


class RunControl(Protocol):
    """What the services may ask of the engine (RunEngine is one)."""

    is_leader: bool

    def wake(self, run_id: int | None = None) -> None: ...

    def check_submission(self, spec: RunSpec) -> None: ...

    def run_stats(self, handle: dict) -> dict: ...

    def held_allocations(self) -> list[Allocation]: ...

    def live_folder(self, run_id: int) -> Path | None: ...

    def signal_run(self, run_id: int, signum: int) -> bool: ...


__all__ = ["RunControl", "RunEngine"]
