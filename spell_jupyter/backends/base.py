"""The Backend interface the engine drives; every backend (local, docker, ray) implements it.

A backend is stateless between calls: everything it needs to find a run again is in the
JSON `handle` that `start` returns and the engine stores, so a restarted server picks up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from traitlets.config import LoggingConfigurable

from ..models import OutputLine


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one run."""

    run_id: int
    command: str
    workdir: Path
    cwd: str = ""
    envvars: dict[str, str] = field(default_factory=dict)
    gpu_indices: tuple[int, ...] = ()


class ProcessState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"  # gone without leaving an exit code


@dataclass(frozen=True)
class ProcessStatus:
    state: ProcessState
    exit_code: int | None = None
    detail: str = ""


class Backend(LoggingConfigurable):
    """Runs commands; the engine owns lifecycles, the backend owns processes."""

    name: str = "abstract"

    def start(self, request: LaunchRequest) -> dict:
        """Start the command (idempotent for one run_id) and return its handle."""
        raise NotImplementedError

    def status(self, handle: dict) -> ProcessStatus:
        """Is it starting, running, exited (with its exit code), or lost?"""
        raise NotImplementedError

    def read_output(self, handle: dict, cursor: int) -> tuple[list[OutputLine], int]:
        """Complete output lines after `cursor`, and the cursor after them."""
        raise NotImplementedError

    def signal(self, handle: dict, signum: int) -> bool:
        """Send a signal to the whole command (its process group); False if not yet possible."""
        raise NotImplementedError

    def cleanup(self, handle: dict) -> None:
        """Forget the run: remove whatever the backend kept for it."""
        raise NotImplementedError
