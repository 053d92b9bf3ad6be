"""Workflows in the Python API: a master run whose script starts worker runs.

`client.workflows.new(command, repos={"model": "../model"})` starts one (as `spell workflow`);
inside the master, `client.active_workflow` is it and every `client.runs.new` joins it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..client_library import link_client_packages
from ..status import RunKind
from ..status import Status as RunStatus
from .errors import InvalidArgument, SpellClientError
from .runs import Run

if TYPE_CHECKING:
    from . import SpellClient


class Workflow:
    """A workflow: its master run (whose ID is the workflow's) and the runs it started."""

    def __init__(self, client: SpellClient, master: Run):
        self._client = client
        self.master_run = master
        self.id: int = master.id

    @property
    def status(self) -> str:
        return self.master_run.status

    @property
    def runs(self) -> list[Run]:
        """The workflow's worker runs, oldest first."""
        page = self._client.transport.json(
            "GET", "runs", params={"workflow": self.id, "limit": 1000, "archived": "any"}
        )
        return [Run(self._client, r) for r in reversed(page["runs"]) if r["id"] != self.id]

    def refresh(self) -> None:
        self.master_run.refresh()

    def stop(self) -> None:
        """Stop the master and every active worker (outputs saved)."""
        self._client.transport.json("POST", f"workflows/{self.id}/stop")
        self.refresh()

    def kill(self) -> None:
        self._client.transport.json("POST", f"workflows/{self.id}/kill")
        self.refresh()

    def __repr__(self) -> str:
        return f"<Workflow {self.id} {self.status}>"

    def __str__(self) -> str:
        return f"Workflow {self.id} ({self.status}): {self.master_run.command}"


def parse_repo(text: str) -> tuple[str, str, str | None]:
    """`LABEL=PATH[:COMMIT]` (or `LABEL=URL[:REF]`) as (label, path or URL, commit or ref)."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise InvalidArgument(f"a repository is given as LABEL=PATH[:COMMIT], not {text!r}")
    head, colon, tail = rest.rpartition(":")
    if colon and head and tail and "/" not in tail and not head.endswith(("http", "https")):
        return label, head, tail
    return label, rest, None


class WorkflowsService:
    """`client.workflows`: start, find and list workflows."""

    def __init__(self, client: SpellClient):
        self._client = client

    def new(
        self,
        command: str,
        *,
        repos: dict[str, str | tuple[str, str | None]] | None = None,
        github_repos: dict[str, str | tuple[str, str | None]] | None = None,
        local: bool = False,
        **run_kwargs,
    ) -> Workflow:
        """Start a workflow whose master runs `command` (with `runs.new`'s keywords).
        `repos` ({label: path or (path, commit)}) are snapshotted now, as `spell run` takes
        code; `github_repos` ({label: url or (url, ref)}) are cloned by the server. Workers
        name them with `commit_label`. With `local`, the master is to run on this machine
        (`run_local`), not as a run of the server's."""
        runs = self._client.runs
        if local:
            run_kwargs = {**run_kwargs, "cwd": None}  # it runs here, in this folder
        body, warnings = runs.body(command, **run_kwargs)
        body["kind"] = RunKind.WORKFLOW.value
        body["local"] = local
        body["repos"] = {}
        for label, source in (repos or {}).items():
            path, commit = source if isinstance(source, tuple) else (source, None)
            if label in body["repos"]:
                raise InvalidArgument(f"repository label {label!r} is given twice")
            if not os.path.isdir(path):
                raise InvalidArgument(f"--repo {label}: {path} is not a folder")
            code, _, notes = runs.code(path, commit, None, None)
            if code is None:
                raise InvalidArgument(f"--repo {label}: {path} is not in a git repository")
            body["repos"][label] = code
            warnings += [f"{label}: {n}" for n in notes]
        for label, source in (github_repos or {}).items():
            url, ref = source if isinstance(source, tuple) else (source, None)
            if label in body["repos"]:
                raise InvalidArgument(f"repository label {label!r} is given twice")
            body["repos"][label] = runs.code(None, None, url, ref)[0]
        master = runs._create(body, warnings)
        return Workflow(self._client, master)

    def run_local(self, workflow: Workflow, heartbeat: float = 5.0) -> int:
        """Run a --local workflow's master command here, in this folder and environment,
        with the master's token (so `spell.client` in it is the workflow's master), reporting
        to the server every `heartbeat` seconds; a stop or kill of the workflow stops it.
        Returns its exit code (128 + N for a signal N), which ends the master there."""
        from .transport import Transport

        workflow.master_run.wait_status(RunStatus.RUNNING, timeout=60)
        path = f"workflows/{workflow.id}/local"
        token = self._client.transport.json("POST", path, json={"token": True})["token"]
        library = Path(tempfile.mkdtemp(prefix="spell-client-"))
        pythonpath = [os.environ.get("PYTHONPATH", ""), str(link_client_packages(library))]
        env = {
            **os.environ,
            "SPELL_BASE_URL": self._client.base_url,
            "SPELL_TOKEN": token,
            "SPELL_RUN_ID": str(workflow.id),
            "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),  # any python finds spell
        }
        child = subprocess.Popen(workflow.master_run.command, shell=True, env=env, process_group=0)
        done = threading.Event()
        reporter = Transport(self._client.base_url, self._client.transport.token)

        def report() -> None:
            asked = None
            while not done.wait(heartbeat):
                try:
                    action = reporter.json("POST", path, json={})["requested_action"]
                except SpellClientError:
                    continue  # the server is away for now: the next beat tries again
                if action and action != asked:
                    asked = action
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL if action == "kill" else signal.SIGTERM)

        beating = threading.Thread(target=report, name="spell-local-master", daemon=True)
        beating.start()
        try:
            code = child.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGINT)
            code = child.wait()
        finally:
            done.set()
            shutil.rmtree(library, ignore_errors=True)
        code = 128 - code if code < 0 else code
        self._client.transport.json("POST", path, json={"exit_code": code})
        workflow.refresh()
        return code

    def get(self, id: int) -> Workflow:
        run = self._client.runs.get(id)
        if run.kind != RunKind.WORKFLOW.value:
            raise InvalidArgument(f"run {id} is not a workflow's master")
        return Workflow(self._client, run)

    def list(self, number: int = 50) -> list[Workflow]:
        return [
            Workflow(self._client, r)
            for r in self._client.runs.list(number=number, kinds=[RunKind.WORKFLOW.value])
        ]

    def active(self) -> Workflow | None:
        """The workflow this code runs in as its master; None anywhere else."""
        run_id = os.environ.get("SPELL_RUN_ID")
        if not run_id or not os.environ.get("SPELL_BASE_URL"):
            return None
        run = self._client.runs.get(int(run_id))
        return Workflow(self._client, run) if run.kind == RunKind.WORKFLOW.value else None
