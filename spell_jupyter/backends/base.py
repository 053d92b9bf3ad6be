"""The Backend interface the engine drives; every backend (local, docker, ray) implements it.

A backend is stateless between calls: everything it needs to find a run again is in the
JSON `handle` that `start` returns and the engine stores, so a restarted server picks up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from traitlets.config import LoggingConfigurable

from ..errors import Conflict, InvalidInput
from ..models import OutputLine


class BuildFailed(Exception):
    """An environment could not be built or pulled; the message says why."""


WORKDIR = "/spell"  # a run's working directory, as the command sees it


@dataclass(frozen=True)
class MountRequest:
    """A resource shown to a run: `source` on this machine at `target` (absolute, as the run
    sees it). Writes under a folder mount go to `upper` (the source never changes)."""

    source: Path
    target: str
    upper: Path
    scratch: Path  # overlayfs' work directory, beside `upper`

    @property
    def is_dir(self) -> bool:
        return self.source.is_dir()

    def workdir_relative(self) -> str | None:
        """The target relative to the working directory, or None when it is outside it."""
        if self.target == WORKDIR or not self.target.startswith(WORKDIR + "/"):
            return None
        return self.target[len(WORKDIR) + 1 :]


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one run."""

    run_id: int
    command: str
    workdir: Path
    cwd: str = ""
    envvars: dict[str, str] = field(default_factory=dict)
    gpu_indices: tuple[int, ...] = ()
    cpus: float = 0.0  # limits from the machine type (0: none)
    memory_mib: int = 0
    image: str | None = None  # for backends that run images
    mounts: tuple[MountRequest, ...] = ()


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
    supports_environments: bool = False  # can it run images (framework, --pip, ...)?

    def check_submission(self, *, gpus: int, wants_environment: bool) -> None:
        """Refuse, before a run is created, what this backend cannot do."""
        if wants_environment:
            raise InvalidInput(
                f"the {self.name} backend runs commands as they are on this machine, so "
                "--framework, --docker-image, --apt, --pip, --pip-req, --conda-file and "
                "--deps-from-env need the Docker backend: start Docker and the server again"
            )

    def check_mounts(self, targets: list[str]) -> None:
        """Refuse, before a run is created, mount targets this backend cannot place."""

    def prepare_mounts(self, workdir: Path, mounts: tuple[MountRequest, ...]) -> str:
        """Make the mounts visible (or ready to be) before the run's files are recorded;
        returns a line for the run's log saying how."""
        raise NotImplementedError

    def has_image(self, image: str) -> bool:
        raise NotImplementedError

    def pull_image(self, image: str, on_line: Callable[[str], None]) -> None:
        raise NotImplementedError

    def build_image(
        self, dockerfile: str, files: dict[str, bytes], tag: str, on_line: Callable[[str], None]
    ) -> None:
        raise NotImplementedError

    def describe(self, handle: dict) -> str:
        """A line for the run's log saying where it runs."""
        return f"Running on the {self.name} backend"

    def stats(self, handle: dict) -> dict:
        raise Conflict(f"the {self.name} backend has no resource statistics")

    def remove_orphans(self, active_run_ids: set[int]) -> list[int]:
        """Remove what runs that are no longer active left behind; returns their IDs."""
        return []

    def start(self, request: LaunchRequest) -> dict:
        """Start the command (idempotent for one run_id) and return its handle."""
        raise NotImplementedError

    def status(self, handle: dict) -> ProcessStatus:
        """Is it starting, running, exited (with its exit code), or lost?"""
        raise NotImplementedError

    def read_output(self, handle: dict, cursor: str) -> tuple[list[OutputLine], str]:
        """Complete output lines after `cursor` (opaque to the engine; "" at first), and the
        cursor after them."""
        raise NotImplementedError

    def signal(self, handle: dict, signum: int) -> bool:
        """Send a signal to the whole command (its process group); False if not yet possible."""
        raise NotImplementedError

    def cleanup(self, handle: dict) -> None:
        """Forget the run: remove whatever the backend kept for it."""
        raise NotImplementedError
