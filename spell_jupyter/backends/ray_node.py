"""RunOnNode: one run's agent on the Ray node the cluster placed it on.

The RayBackend creates it as a named, detached Ray actor holding the run's machine type's
resources (so Ray's scheduler decides where the run goes and queues it while no node has room).
On its node the run executes as on one host, through a host backend working in a folder of
that node: code and mounts are fetched from SpellFS on the shared root, output is read from a
cursor, outputs are saved back into SpellFS. The actor outlives the server that made it; a new
leader finds it again by its name.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import replace
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


class RunOnNode:
    """The actor's class (made a Ray actor by the RayBackend, so this module imports no Ray
    at import time beyond what the worker has loaded)."""

    def __init__(self, run_id: int, fs_settings: dict, bucket_options: dict):
        import ray

        context = ray.get_runtime_context()
        self.run_id = run_id
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.gpus = [int(g) for g in ray.get_gpu_ids()]
        fs = SpellFileSystem(**fs_settings, skip_instance_cache=True)
        self.backend = LocalBackend(
            fs=fs, home=node_home(self.node_id), bucket_options=bucket_options
        )
        self._changed = threading.Condition()
        self.backend.watch(self._on_change)
        self.handle: dict | None = None
        self._lock = threading.Lock()

    def _on_change(self, _run_id: int | None) -> None:
        with self._changed:
            self._changed.notify_all()

    def where(self) -> dict:
        """Where the run was placed (answered once the actor holds its resources)."""
        return {"node": self.node_id, "node_ip": self.node_ip, "gpus": self.gpus}

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        return self.backend.stage_code(request)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        return self.backend.stage_mounts(request)

    def launch(self, request: LaunchRequest) -> dict:
        """Start the command (once: a resumed launch returns the same handle)."""
        with self._lock:
            if self.handle is None:
                self.handle = self.backend.launch(replace(request, gpu_indices=tuple(self.gpus)))
                self.backend.attach(self.run_id, self.handle)
            return {**self.handle, "node": self.node_id, "node_ip": self.node_ip}

    def status(self) -> ProcessStatus | None:
        """The command's state (None before it was launched)."""
        return None if self.handle is None else self.backend.status(self.handle)

    def wait_end(self, timeout: float) -> ProcessStatus | None:
        """The command's state once it has ended, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: (self.status() or _NOT_ENDED).ended, timeout)
        return self.status()

    def output(self, cursor: str, wait: float) -> tuple[list, str, bool]:
        """Output after `cursor`, waiting up to `wait` seconds for some: (lines, cursor after
        them, whether the command has ended and everything was given)."""
        if self.handle is None:
            return [], cursor, False
        stop = threading.Event()
        timer = threading.Timer(wait, stop.set)
        timer.start()
        try:
            for lines, after in self.backend.follow_output(self.handle, cursor, stop):
                return lines, after, False
            return [], cursor, not stop.is_set()
        finally:
            timer.cancel()
            stop.set()

    def signal(self, signum: int) -> bool:
        return self.handle is not None and self.backend.signal(self.handle, signum)

    def stats(self) -> dict:
        return self.backend.stats(self.handle or {})

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        return self.backend.list_outputs(request)

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        self.backend.save_outputs(request, files)

    def cleanup(self) -> None:
        self.backend.cleanup(self.run_id, self.handle)
