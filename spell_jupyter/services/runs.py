"""RunManager: what clients may ask of runs. Handlers call this (and SpellFSManager) and
nothing else; it drives the engine through its narrow interface (wake, check_submission,
run_stats, held_allocations), never its backend."""

from __future__ import annotations

import time

from ..engine import RunControl
from ..engine.environments import Frameworks
from ..engine.machine_types import MachineTypes
from ..errors import Conflict, InvalidInput, NotFound
from ..gpus import gpu_usage
from ..models import (
    LocalReport,
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
from .log_feed import LogFeed
from .spellfs import SpellFSManager
from .tensorboards import INSTALL_HINT, tensorboard_installed

# Buckets reached with the server's storage options; never the host's own files by default.
DEFAULT_MOUNT_URLS = ("s3://", "gs://")
SERVED_KINDS = (RunKind.WORKSPACE, RunKind.KERNEL)  # started by their own services, not POST /runs


class RunManager:
    """Submission, queries and requests on runs; the engine carries the requests out."""

    def __init__(
        self,
        *,
        store: RunStore,
        resources: SpellFSManager,
        machine_types: MachineTypes,
        engine: RunControl,
        frameworks: Frameworks | None = None,
        allow_uncommitted_changes: bool = True,
        allowed_mount_urls: tuple[str, ...] = DEFAULT_MOUNT_URLS,
    ):
        self.allow_uncommitted_changes = allow_uncommitted_changes
        self.allowed_mount_urls = tuple(allowed_mount_urls)
        self.frameworks = frameworks or Frameworks({})
        self.store = store
        self.resources = resources
        self.machine_types = machine_types
        self.engine = engine
        self.feed = LogFeed(store, lambda: engine.is_leader)

    def submit(
        self, spec: RunSpec, workflow_id: int | None = None, owner: str | None = None
    ) -> Run:
        """Create a run; `workflow_id` (a workflow master's request) makes it a worker of that
        workflow, where `commit_label` picks one of the workflow's repositories as its code."""
        if spec.kind in SERVED_KINDS:
            raise InvalidInput(
                f"runs of kind {spec.kind.value} are started as such: a workspace with "
                "POST /workspaces (`spell jupyter NAME`), a kernel from a Spell kernel spec "
                "(`spell kernelspec add`)"
            )
        return self.submit_any(spec, workflow_id, owner)

    def submit_any(
        self, spec: RunSpec, workflow_id: int | None = None, owner: str | None = None
    ) -> Run:
        """`submit` for runs of every kind (workspaces: their command is the server's own).
        `owner`: the user creating it; a workflow's runs are its master's owner's."""
        if workflow_id is not None:
            owner = self.store.owner_of(workflow_id)
        machine_type = self.machine_types.canonical(spec.machine_type)
        spec = spec.model_copy(update={"machine_type": machine_type})
        spec = self._with_workflow_code(spec, workflow_id)
        if spec.repos and spec.kind != RunKind.WORKFLOW:
            raise InvalidInput("repos belong to a workflow's master run (kind workflow)")
        if spec.kind == RunKind.WORKFLOW and workflow_id is not None:
            raise InvalidInput("a workflow's runs cannot start workflows of their own")
        if not spec.docker_image:
            self.frameworks.get(spec.framework)  # unknown ones are refused with the known list
        if spec.tensorboard_dir is not None and not tensorboard_installed():
            raise InvalidInput(f"--tensorboard-dir: {INSTALL_HINT}")
        self._check_code_and_mounts(spec)
        self.engine.check_submission(spec)
        run = self.store.create_run(
            spec,
            f"Run created -- waiting for a {machine_type} machine.",
            workflow_id=workflow_id,
            owner=owner,
        )
        self.engine.wake()
        return run

    def _with_workflow_code(self, spec: RunSpec, workflow_id: int | None) -> RunSpec:
        if spec.commit_label is None:
            return spec
        if workflow_id is None:
            raise InvalidInput(
                "commit_label names a repository of a workflow: it works for runs a workflow's "
                "master creates (`spell workflow --repo LABEL=PATH ...`)"
            )
        if spec.code is not None:
            raise InvalidInput("give commit_label or code, not both")
        repos = self.store.get_run(workflow_id).spec.repos
        if spec.commit_label not in repos:
            known = ", ".join(sorted(repos)) or "none"
            raise InvalidInput(
                f"workflow {workflow_id} has no repository labelled {spec.commit_label!r} "
                f"(it has: {known})"
            )
        code = repos[spec.commit_label]
        cwd = spec.cwd or code.repository
        if not (cwd + "/").startswith(code.repository + "/"):
            cwd = f"{code.repository}/{cwd}"
        return RunSpec.model_validate(
            {**spec.model_dump(mode="json"), "code": code.model_dump(mode="json"), "cwd": cwd}
        )

    def _check_code_and_mounts(self, spec: RunSpec) -> None:
        """Refuse, before a run exists, code blobs never sent and what the backend cannot
        mount (missing resources are found while mounting: they may appear before then)."""
        for code in [spec.code, *spec.repos.values()]:
            if code is None:
                continue
            for digest in (code.archive, code.patch):
                if digest and not self.resources.has_code_blob(digest):
                    raise InvalidInput(f"code blob {digest} was never sent (POST /code first)")
            if code.patch and not self.allow_uncommitted_changes:
                raise InvalidInput(
                    "this server refuses runs with uncommitted changes "
                    "(SpellJupyter.allow_uncommitted_changes is False): commit them first"
                )
        for mount in spec.mounts:
            if "://" in mount.resource and not self._mount_url_allowed(mount.resource):
                raise InvalidInput(
                    f"mounting {mount.resource} is not allowed here: mounts are SpellFS paths "
                    f"and URLs under {', '.join(self.allowed_mount_urls) or 'none'} "
                    "(an administrator sets SpellJupyter.allowed_mount_urls)"
                )

    def _mount_url_allowed(self, url: str) -> bool:
        """Whether a bucket URL lies under an allowed prefix (`s3://` is every bucket,
        `file:///data/shared/` that host folder and what is below it)."""
        for prefix in self.allowed_mount_urls:
            if prefix.endswith("://") and url.startswith(prefix):
                return True
            if url == prefix.rstrip("/") or url.startswith(prefix.rstrip("/") + "/"):
                return True
        return False

    def get(self, run_id: int) -> Run:
        return self.store.get_run(run_id)

    def last_change(self) -> int:
        """The newest change's ID (created, status, labels, archived): where a stream starts."""
        return self.store.last_change()

    def changed_since(self, change_id: int) -> tuple[int, list[Run]]:
        """The runs created or changed after change `change_id`, and the new cursor."""
        return self.store.runs_changed_since(change_id)

    def list(
        self,
        *,
        statuses: list[Status] | None = None,
        labels: list[str] | None = None,
        kinds: list[RunKind] | None = None,
        archived: bool | None = False,
        limit: int = 50,
        offset: int = 0,
        workflow_id: int | None = None,
        search_id: int | None = None,
        project: str | None = None,
        owner: str | None = None,
    ) -> RunPage:
        return self.store.list_runs(
            project=project,
            owner=owner,
            statuses=statuses or (),
            labels=labels or (),
            kinds=kinds or (),
            archived=archived,
            limit=limit,
            offset=offset,
            workflow_id=workflow_id,
            search_id=search_id,
        )

    def report_local(self, run_id: int, report: LocalReport) -> dict:
        """What the submitter of a --local workflow master reports: a heartbeat (answered with
        a stop or kill asked meanwhile), a request for the master's token, or its exit code
        (which ends the master: complete, failed, or stopped/killed as asked)."""
        run = self.store.get_run(run_id)
        if not run.spec.local:
            raise NotFound(f"run {run_id} is not a --local workflow master")
        if run.status.is_final:
            raise Conflict(f"workflow {run_id} is {run.status.value}: it takes no more reports")
        if run.status == Status.MACHINE_REQUESTED:
            raise Conflict(f"workflow {run_id} is not running yet: report again in a moment")
        answer: dict = {"requested_action": run.requested_action}
        if report.exit_code is not None:
            requested = run.requested_action
            if requested == RunAction.KILL:
                final, message = Status.KILLED, "Run killed"
            elif requested == RunAction.STOP:
                final, message = Status.STOPPED, "Run stopped"
            elif report.exit_code == 0:
                final, message = Status.COMPLETE, "Run complete"
            else:
                final, message = Status.FAILED, f"Run failed with exit code {report.exit_code}"
            self.store.set_status(run_id, final, message, user_exit_code=report.exit_code)
            self.store.revoke_tokens(run_id)
            self.engine.wake()
            answer["status"] = final
            return answer
        self.store.set_handle(run_id, "submitter", {"heartbeat": time.time()})
        if report.token:
            answer["token"] = self.store.issue_token(run_id, "workflow")
        return answer

    def stop_group(self, run_id: int, action: RunAction, *, workflow: bool) -> list[Run]:
        """Stop or kill a workflow (its master and active workers) or a search (its active
        runs and the search itself); returns the runs asked."""
        head = self.store.get_run(run_id)
        kind = RunKind.WORKFLOW if workflow else RunKind.HYPER
        if head.kind != kind:
            raise NotFound(f"run {run_id} is not a {'workflow' if workflow else 'search'}")
        members = self.store.list_runs(
            workflow_id=run_id if workflow else None,
            search_id=None if workflow else run_id,
            archived=None,
            limit=100_000,
        ).runs
        asked = []
        for run in [head, *[m for m in members if m.id != run_id]]:
            if not run.status.is_final:
                try:
                    asked.append(self.store.request_action(run.id, action))
                except Conflict:
                    continue  # it ended meanwhile
        self.engine.wake()
        return asked

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
        held = self.engine.held_allocations()
        host = self.machine_types.host
        if host is None:  # a cluster places runs: its nodes, as its backend sees them
            return {
                "nodes": self.engine.cluster_capacity(),
                "machine_types": self.machine_types.describe(held),
            }
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
        stats = self.engine.run_stats(self.store.handle_of(run_id) or {})
        if "gpus" not in stats:  # sampled here: the run's GPUs are this host's
            gpus = (run.allocation or {}).get("gpus") or []
            stats["gpus"] = gpu_usage(gpus) if gpus else []
        return {"run_id": run_id, **stats}

    def status_of(self, run_id: int) -> Status:
        return self.store.status_of(run_id)

    def patch_of(self, run_id: int) -> bytes:
        """The uncommitted changes a run's code was made with."""
        run = self.store.get_run(run_id)
        if run.spec.code is None or run.spec.code.patch is None:
            raise NotFound(f"run {run_id} was made with no uncommitted changes")
        return self.resources.read_code_blob(run.spec.code.patch)

    def _request(self, run_id: int, action: RunAction) -> Run:
        run = self.store.request_action(run_id, action)
        self.engine.wake()
        return run
