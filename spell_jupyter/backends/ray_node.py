"""NodeAgent: Spell's agent on one Ray node, running there the runs the cluster placed there.

The RayBackend reserves each run's machine type in a placement group (Ray's scheduler picks
the node and queues the run while no node has room) and asks the agent of that node, a named
detached actor pinned to it and holding no resources of its own, to execute the run as on one
host: through a local backend working in a folder of the node, its code and mounts fetched from
SpellFS on the shared root, its output read from a cursor, its outputs saved back into SpellFS.
One warm agent per node serves every run there, so a run starts without a new worker process.
Everything a run's handle needs is derived from its ID, so an agent finds its runs again.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from ..fs.spellfs import SpellFileSystem
from .base import LaunchRequest, OutputFile, ProcessState, ProcessStatus, StagedCode
from .local import LocalBackend

# Where a node keeps its runs' folders (env on the node; default: a folder of its temp dir).
NODE_HOME_ENV = "SPELL_NODE_HOME"
_NOT_ENDED = ProcessStatus(ProcessState.STARTING)


def node_home(node_id: str) -> Path:
    base = os.environ.get(NODE_HOME_ENV)
    return Path(base) if base else Path(tempfile.gettempdir()) / "spell-ray" / node_id[:16]


class NodeAgent:
    """The actor's class (made a Ray actor by the RayBackend)."""

    def __init__(self, fs_settings: dict, bucket_options: dict):
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        fs = SpellFileSystem(**fs_settings, skip_instance_cache=True)
        self.backend = LocalBackend(
            fs=fs,
            home=node_home(self.node_id),
            bucket_options=bucket_options,
            service_bind=self.node_ip,  # workspaces and kernels: reached from the server's host
        )
        self._changed = threading.Condition()
        self.backend.watch(self._on_change)
        self._lock = threading.Lock()

    def _on_change(self, _run_id: int | None) -> None:
        with self._changed:
            self._changed.notify_all()

    def _handle(self, run_id: int) -> dict | None:
        """The local backend's handle of a launched run (None before its launch)."""
        state_dir = Path(self.backend.state_root) / str(run_id)
        return {"state_dir": str(state_dir)} if (state_dir / "shim.lock").exists() else None

    def where(self) -> dict:
        return {"node": self.node_id, "node_ip": self.node_ip}

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        return self.backend.stage_code(request)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        return self.backend.stage_mounts(request)

    def launch(self, request: LaunchRequest) -> dict:
        """Start the command (once: a resumed launch returns the same handle)."""
        with self._lock:
            handle = self.backend.launch(request)
        self.backend.attach(request.run_id, handle)
        return {**handle, "node": self.node_id, "node_ip": self.node_ip}

    def status(self, run_id: int) -> ProcessStatus | None:
        """The command's state (None before it was launched)."""
        handle = self._handle(run_id)
        if handle is None:
            return None
        self.backend.attach(run_id, handle)  # after an agent restart: watched again
        return self.backend.status(handle)

    def wait_end(self, run_id: int, timeout: float) -> ProcessStatus | None:
        """The command's state once it has ended, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: (self.status(run_id) or _NOT_ENDED).ended, timeout)
        return self.status(run_id)

    def output(self, run_id: int, cursor: str, wait: float) -> tuple[list, str, bool]:
        """Output after `cursor`, waiting up to `wait` seconds for some: (lines, cursor after
        them, whether the command has ended and everything was given)."""
        handle = self._handle(run_id)
        if handle is None:
            return [], cursor, False
        stop = threading.Event()
        timer = threading.Timer(wait, stop.set)
        timer.start()
        try:
            for lines, after in self.backend.follow_output(handle, cursor, stop):
                return lines, after, False
            return [], cursor, not stop.is_set()
        finally:
            timer.cancel()
            stop.set()

    def signal(self, run_id: int, signum: int) -> bool:
        handle = self._handle(run_id)
        return handle is not None and self.backend.signal(handle, signum)

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        return self.backend.list_outputs(request)

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        self.backend.save_outputs(request, files)

    def cleanup(self, run_id: int) -> None:
        self.backend.cleanup(run_id, self._handle(run_id))


def gpu_ids() -> list[int]:
    """The GPUs Ray gives a task in a run's placement group: the run's own."""
    import ray

    return [int(g) for g in ray.get_gpu_ids()]
