"""RunService: what clients may ask of runs and SpellFS. Handlers call this and nothing else."""

from __future__ import annotations

from typing import BinaryIO

from ..errors import Conflict, InvalidInput
from ..fs.spellfs import SpellFS
from ..models import (
    FileInfo,
    LogEntry,
    Run,
    RunAction,
    RunKind,
    RunPage,
    RunSpec,
    Status,
    check_label,
)
from ..store import RunStore
from .environments import Frameworks
from .lifecycle import RunEngine
from .machine_types import MachineTypes, gpu_usage


class RunService:
    """Submission, queries and requests on runs; the engine carries the requests out."""

    def __init__(
        self,
        *,
        store: RunStore,
        fs: SpellFS,
        machine_types: MachineTypes,
        engine: RunEngine,
        frameworks: Frameworks | None = None,
    ):
        self.frameworks = frameworks or Frameworks({})
        self.store = store
        self.fs = fs
        self.machine_types = machine_types
        self.engine = engine

    def submit(self, spec: RunSpec) -> Run:
        machine_type = self.machine_types.canonical(spec.machine_type)
        spec = spec.model_copy(update={"machine_type": machine_type})
        if not spec.docker_image:
            self.frameworks.get(spec.framework)  # unknown ones are refused with the known list
        self.engine.backend.check_submission(
            gpus=self.machine_types.types[machine_type].gpus,
            wants_environment=spec.wants_environment,
        )
        run = self.store.create_run(spec, f"Run created -- waiting for a {machine_type} machine.")
        self.engine.wake()
        return run

    def get(self, run_id: int) -> Run:
        return self.store.get_run(run_id)

    def list(
        self,
        *,
        statuses: list[Status] | None = None,
        labels: list[str] | None = None,
        kinds: list[RunKind] | None = None,
        archived: bool | None = False,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        return self.store.list_runs(
            statuses=statuses or (),
            labels=labels or (),
            kinds=kinds or (),
            archived=archived,
            limit=limit,
            offset=offset,
        )

    def stop(self, run_id: int) -> Run:
        return self._request(run_id, RunAction.STOP)

    def kill(self, run_id: int) -> Run:
        return self._request(run_id, RunAction.KILL)

    def add_label(self, run_id: int, label: str) -> Run:
        try:
            label = check_label(label)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return self.store.add_label(run_id, label)

    def remove_label(self, run_id: int, label: str) -> Run:
        return self.store.remove_label(run_id, label)

    def archive(self, run_id: int) -> Run:
        return self.store.archive(run_id)

    def logs(self, run_id: int, offset: int = 0, limit: int = 1000) -> list[LogEntry]:
        self.store.status_of(run_id)  # 404 for unknown runs
        return self.store.logs(run_id, offset, limit)

    def log_count(self, run_id: int) -> int:
        return self.store.log_count(run_id)

    def machine_types_report(self) -> dict:
        """The host's capacity and, per machine type, how many more runs fit now."""
        held = [
            self.engine.allocation_of(r)
            for r in self.store.active_runs()
            if r.status != Status.MACHINE_REQUESTED
        ]
        host = self.machine_types.host
        return {
            "host": {
                "cpus": host.cpus,
                "memory_mib": host.memory_mib,
                "gpus": [{"index": g.index, "model": g.model} for g in host.gpus],
            },
            "machine_types": self.machine_types.describe(held),
        }

    def stats(self, run_id: int) -> dict:
        """CPU, memory, network and block I/O of a running run (and its GPUs where present)."""
        run = self.store.get_run(run_id)
        if run.status != Status.RUNNING:
            raise Conflict(f"run {run_id} is {run.status.value}: statistics exist while it runs")
        stats = self.engine.backend.stats(self.store.handle_of(run_id) or {})
        gpus = (run.allocation or {}).get("gpus") or []
        return {"run_id": run_id, **stats, "gpus": gpu_usage(gpus) if gpus else []}

    def status_of(self, run_id: int) -> Status:
        return self.store.status_of(run_id)

    def ls(self, path: str) -> list[FileInfo]:
        return self.fs.ls(path)

    def check_path(self, path: str) -> None:
        """Raise InvalidInput/NotFound before a streamed response starts."""
        self.fs.info(path)

    def write_tar(self, path: str, out: BinaryIO) -> None:
        self.fs.write_tar(path, out)

    def _request(self, run_id: int, action: RunAction) -> Run:
        run = self.store.request_action(run_id, action)
        self.engine.wake()
        return run
