"""The Backend interface the engine drives: what a backend must do for a run, not where.

A backend stages a run (its code, mounts and outputs: in folders on this host, in a bucket, on
a cluster node), launches it, streams its output from a cursor, reports status changes as
events, stops or kills it, collects its outputs into SpellFS and cleans up. Everything it needs
to find a run again is in the JSON `handle` that `launch` returns and the engine stores, so a
restarted server reattaches. Building images is a separate capability (`ImageBuilder`).

Backends are registered under the `spell_jupyter.backends` entry-point group.
"""

from __future__ import annotations

import threading
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from traitlets.config import LoggingConfigurable

from ..errors import Conflict, InvalidInput
from ..fs.spellfs import SpellFileSystem
from ..models import CodeSpec, OutputLine
from .run_api import RunApi

ENTRY_POINT_GROUP = "spell_jupyter.backends"
# A run that serves (a workspace's Jupyter, a kernel) listens on $SPELL_PORT (and the others of
# $SPELL_PORTS, comma-separated, when it asks for several) at $SPELL_BIND and takes
# $SPELL_SERVICE_TOKEN from its clients; the backend publishes them to this host alone and puts
# where this host reaches them ("127.0.0.1:PORT") in the run's handle under "address" (the
# first) and "addresses" (all, in order).
SERVICE_PORT_ENV = "SPELL_PORT"
SERVICE_PORTS_ENV = "SPELL_PORTS"
SERVICE_BIND_ENV = "SPELL_BIND"
SERVICE_TOKEN_ENV = "SPELL_SERVICE_TOKEN"


class BuildFailed(Exception):
    """An environment could not be built or pulled; the message says why."""


class CodeFailed(Exception):
    """The code could not be unpacked, patched or cloned; the message is git's."""


class MountFailed(Exception):
    """A resource could not be mounted; the message names it."""


@dataclass(frozen=True)
class MountRequest:
    """A SpellFS resource (or bucket URL) to show at `target` (absolute, as the run sees it)."""

    resource: str
    target: str


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to stage and start one run."""

    run_id: int
    command: str
    cwd: str = ""  # relative to the working directory (WORKDIR)
    envvars: dict[str, str] = field(default_factory=dict)
    gpu_indices: tuple[int, ...] = ()
    cpus: float = 0.0  # limits from the machine type (0: none)
    memory_mib: int = 0
    image: str | None = None  # for backends that run images
    code: CodeSpec | None = None
    mounts: tuple[MountRequest, ...] = ()
    api: RunApi | None = None  # set at launch: how code inside reaches the server
    service_token: str | None = None  # the run serves (SERVICE_PORT_ENV); its token
    service_ports: int = 1  # how many ports it serves on
    host_folder: str | None = None  # a folder of this host to work in, read-write (a kernel's)
    # a SpellFS folder (an earlier run's outputs) copied into the working folder before the
    # run starts; its files are saved again as the run's own outputs
    restore: str | None = None

    @property
    def repository(self) -> str | None:
        return self.code.repository if self.code else None


@dataclass(frozen=True)
class Resources:
    """What a run of a machine type asks of the machine it runs on (for backends whose
    cluster places runs)."""

    machine_type: str
    cpus: float
    memory_mib: int
    gpus: int = 0
    gpu: str = ""


@dataclass(frozen=True)
class StagedCode:
    commit: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputFile:
    """A file a run produced: where the backend holds it, and its path under runs/<id>."""

    source: str
    path: str
    size: int


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

    @property
    def ended(self) -> bool:
        return self.state in (ProcessState.EXITED, ProcessState.LOST)


OutputBatches = Iterator[tuple[list[OutputLine], str]]
StatusListener = Callable[[int | None], None]  # a run ID, or None: any run may have changed


class ImageBuilder(ABC):
    """A capability: backends that run images can tell, pull and build them."""

    @abstractmethod
    def has_image(self, image: str) -> bool: ...

    def image_id(self, image: str) -> str | None:
        """The content ID of a local image (None when absent or unknown): environments built
        FROM it are named after it, so a rebuilt base image gets new environments."""
        return None

    @abstractmethod
    def pull_image(self, image: str, on_line: Callable[[str], None]) -> None: ...

    @abstractmethod
    def build_image(
        self, dockerfile: str, files: dict[str, bytes], tag: str, on_line: Callable[[str], None]
    ) -> None: ...


class BackendMeta(ABCMeta, type(LoggingConfigurable)):
    """Abstract methods on a configurable class (as jupyter_client's provisioners do)."""


class Backend(LoggingConfigurable, metaclass=BackendMeta):
    """Runs commands; the engine owns lifecycles, the backend owns processes and staging.

    Every method may be called from a worker thread; `follow_output` runs in a thread of its
    own per run. Nothing here may touch the store: the engine records what it returns.
    """

    name: str = "abstract"
    # True for a backend whose cluster places runs on its nodes (Ray): the engine holds nothing
    # of this host for them and asks `place` where each one goes.
    places_runs: bool = False

    def __init__(
        self,
        *,
        fs: SpellFileSystem,
        home: Path,
        bucket_options: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.fs = fs  # where outputs are saved and code blobs are read
        self.home = home  # the data directory, for the backend's own state
        self.bucket_options = bucket_options or {}  # for s3:// (and other) mounts
        # Where code in runs on other machines reaches the server's API (a placing backend's
        # runs cannot use this host's socket); set by the server.
        self.api_url: str | None = None

    @property
    def images(self) -> ImageBuilder | None:
        """The image-building capability, when the backend runs images."""
        return self if isinstance(self, ImageBuilder) else None

    def images_for(self, placed: dict) -> ImageBuilder | None:
        """The images a run placed at `placed` (its allocation: a cluster's node) runs in:
        this host's for a single-host backend; None where it runs as a process."""
        return self.images

    # -- before a run exists ---------------------------------------------------------------------

    def check_submission(self, *, gpus: int, wants_environment: bool) -> None:
        """Refuse, before a run is created, what this backend cannot do."""
        if wants_environment and self.images is None:
            raise InvalidInput(
                f"the {self.name} backend runs commands as they are on this machine, so "
                "--framework, --docker-image, --apt, --pip, --pip-req, --conda-file and "
                "--deps-from-env need the Docker backend: start Docker and the server again"
            )

    def check_mounts(self, targets: list[str]) -> None:
        """Refuse, before a run is created, mount targets this backend cannot place."""

    # -- placement (backends whose cluster places runs) ------------------------------------------

    def check_resources(self, resources: Resources) -> None:
        """Refuse, before a run is created, a machine type no node can ever hold (listing
        what the cluster has), or answer Unavailable when the cluster is out of reach."""

    def place(self, run_id: int, resources: Resources) -> dict | None:
        """Ask the cluster for a place for the run (idempotent): None while it waits for one,
        then {"node": ..., "node_ip": ..., "gpus": [indices on that node]}. The backend calls
        the `watch` listener with the run's ID once it is placed."""
        raise NotImplementedError(f"the {self.name} backend runs everything on this host")

    def capacity(self) -> list[dict] | None:
        """The cluster's nodes and what each has (None: this host alone)."""
        return None

    # -- staging (in the engine's fetch pool) ----------------------------------------------------

    @abstractmethod
    def stage_code(self, request: LaunchRequest) -> StagedCode:
        """Put the run's code where it will run (raises CodeFailed)."""

    @abstractmethod
    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        """Make the run's mounts ready (raises MountFailed); lines for the run's log."""

    # -- the process -----------------------------------------------------------------------------

    @abstractmethod
    def launch(self, request: LaunchRequest) -> dict:
        """Start the run (idempotent for one run_id: a resumed launch) and return its handle."""

    @abstractmethod
    def status(self, handle: dict) -> ProcessStatus:
        """Is it starting, running, exited (with its exit code), or lost?"""

    @abstractmethod
    def watch(self, on_change: StatusListener) -> None:
        """Report status changes as events from now on: `on_change(run_id)` when a run's
        process may have changed state. Called once, before any launch or attach."""

    def attach(self, run_id: int, handle: dict) -> None:
        """Follow the status of a run launched earlier (after a restart) or just now."""

    @abstractmethod
    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        """Output lines after `cursor` (opaque to the engine; "" at first) as they come, each
        batch with the cursor after it; ends once the process has ended and all of its output
        was given, or when `stop` is set. Storing (lines, cursor) together loses and doubles
        nothing across restarts."""

    @abstractmethod
    def signal(self, handle: dict, signum: int) -> bool:
        """Send a signal to the whole command; False if not yet possible."""

    def service_environment(self, request: LaunchRequest, ports: list[int], bind: str) -> dict:
        """The variables of a serving run (none for others)."""
        if request.service_token is None:
            return {}
        return {
            SERVICE_PORT_ENV: str(ports[0]),
            SERVICE_PORTS_ENV: ",".join(map(str, ports)),
            SERVICE_BIND_ENV: bind,
            SERVICE_TOKEN_ENV: request.service_token,
        }

    def local_folder(self, run_id: int) -> Path | None:
        """The run's working folder (WORKDIR) on this host while it is active, for backends
        that keep one here (what it writes shows there live); None for others."""
        return None

    def describe(self, handle: dict) -> str:
        """A line for the run's log saying where it runs."""
        return f"Running on the {self.name} backend"

    def stats(self, handle: dict) -> dict:
        """One sample of the running run's CPU %, memory, network and block I/O (and, from a
        backend whose runs are on other machines, "gpus": their usage, sampled there)."""
        raise Conflict(f"the {self.name} backend has no resource statistics")

    # -- after the process (in the engine's save pool) -------------------------------------------

    @abstractmethod
    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        """The files the run produced (new or changed), not yet saved."""

    @abstractmethod
    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        """Put `files` into SpellFS under runs/<id>/."""

    @abstractmethod
    def cleanup(self, run_id: int, handle: dict | None) -> None:
        """Forget the run: remove whatever the backend kept for it (idempotent)."""

    @abstractmethod
    def remove_leftovers(self, active_run_ids: set[int]) -> list[int]:
        """Remove what runs that are no longer active left behind; returns their IDs. Only
        called with a set read from the store (never a guess)."""

    def close(self) -> None:
        """Stop the backend's own threads (the engine is stopping)."""
