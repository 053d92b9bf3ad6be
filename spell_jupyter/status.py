"""Run statuses, kinds and actions: Spell's vocabulary. Standard library only, so the light
client and the pydantic models share one definition."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A run's status, with Spell's names and order."""

    MACHINE_REQUESTED = "machine_requested"
    BUILDING = "building"
    MOUNTING = "mounting"
    RUNNING = "running"
    SAVING = "saving"
    PUSHING = "pushing"
    COMPLETE = "complete"
    FAILED = "failed"
    BUILD_FAILED = "build_failed"
    MOUNT_FAILED = "mount_failed"
    STOPPED = "stopped"
    KILLED = "killed"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        Status.COMPLETE,
        Status.FAILED,
        Status.BUILD_FAILED,
        Status.MOUNT_FAILED,
        Status.STOPPED,
        Status.KILLED,
        Status.INTERRUPTED,
    }
)


class RunKind(str, Enum):
    """What a run is for; workspaces and kernels are runs too, hidden from `spell ps` by default."""

    RUN = "run"
    WORKFLOW = "workflow"
    HYPER = "hyper"
    WORKSPACE = "workspace"
    KERNEL = "kernel"
    TENSORBOARD = "tensorboard"


class RunAction(str, Enum):
    """A request on a live run, recorded in the store and carried out by the engine."""

    STOP = "stop"
    KILL = "kill"
