"""WorkspaceManager: workspaces are runs of kind workspace that serve Jupyter (JupyterLab, or
Notebook 7) from their working folder, reached through this server at
`<base_url>spell/workspaces/<name>/`. A workspace's name stands for its runs: starting it
again resumes with the files its newest run saved (its outputs), on any machine type."""

from __future__ import annotations

import shlex
import threading

from ..engine.service_tokens import ServiceTokens
from ..engine.workspace_status import answers
from ..errors import Conflict, NotFound
from ..models import NewWorkspace, Run, RunKind, RunSpec, Status, Workspace
from ..store import RunStore
from .runs import RunManager
from .upstreams import NotServing, Upstream

WORKSPACE_PATH = "spell/workspaces/"  # under the Jupyter server's base_url
MAX_WORKSPACE_RUNS = 100_000
IDENTITY_PROVIDER = "spell_jupyter.workspace_identity.WorkspaceIdentityProvider"


def jupyter_command(base_url: str, notebook: bool) -> str:
    """The workspace's Jupyter: bound and published by the backend ($SPELL_BIND:$SPELL_PORT),
    its token from $SPELL_SERVICE_TOKEN, serving the run's working folder under `base_url`."""
    app = "notebook" if notebook else "lab"  # its own script: `jupyter` may not be installed
    return (
        f"exec jupyter-{app} --no-browser --allow-root"
        ' --ServerApp.ip="$SPELL_BIND" --ServerApp.port="$SPELL_PORT"'
        " --ServerApp.port_retries=0"
        f" --ServerApp.identity_provider_class={IDENTITY_PROVIDER}"
        f" --ServerApp.base_url={shlex.quote(base_url)} --ServerApp.root_dir=."
        " --ServerApp.allow_remote_access=True"
        # where Jupyter is this server's own environment (the local backend): not a second Spell
        " --ServerApp.jpserver_extensions=spell_jupyter=False"
    )


class WorkspaceManager:
    """Start, resume, list, stop and remove workspaces; tell the proxy where one is."""

    def __init__(
        self, runs: RunManager, store: RunStore, tokens: ServiceTokens, base_url: str = "/"
    ):
        self.runs = runs
        self.store = store
        self.tokens = tokens
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._starting = threading.Lock()  # one start of a name at a time in this server

    def url_of(self, name: str) -> str:
        return f"{self.base_url}{WORKSPACE_PATH}{name}/"

    def start(self, request: NewWorkspace, owner: str | None = None) -> Run:
        """A new run of the workspace: refused while one runs (its URL given); else resuming
        the newest run's files. `owner`: the user starting it."""
        with self._starting:
            history = self._runs_of(request.name)
            if history and not history[0].status.is_final:
                live = history[0]
                raise Conflict(
                    f"workspace {request.name} is {live.status.value} already (run {live.id}): "
                    f"open {self.url_of(request.name)}, or stop it first "
                    f"(`spell workspaces stop {request.name}`)"
                )
            base_url = self.url_of(request.name)
            fields = {
                **request.spec,
                "kind": RunKind.WORKSPACE.value,
                "command": jupyter_command(base_url, request.notebook),
                "workspace": {
                    "name": request.name,
                    "notebook": request.notebook,
                    "idle_timeout_minutes": request.idle_timeout_minutes,
                    "resumes": _saved_files(history),
                    "base_url": base_url,
                },
            }
            return self.runs.submit_any(RunSpec.model_validate(fields), owner=owner)

    def list(self) -> list[Workspace]:
        """Every workspace (not removed), by name."""
        by_name: dict[str, list[Run]] = {}
        for run in self._workspace_runs():
            by_name.setdefault(run.spec.workspace.name, []).append(run)
        return [self._model(name, runs) for name, runs in sorted(by_name.items())]

    def get(self, name: str) -> Workspace:
        return self._model(name, self._existing(name))

    def stop(self, name: str) -> Run:
        """Stop its live run (files saved, to be resumed)."""
        live = self._existing(name)[0]
        if live.status.is_final:
            raise Conflict(
                f"workspace {name} is not running (its run {live.id} is {live.status.value})"
            )
        return self.runs.stop(live.id)

    def remove(self, name: str) -> list[int]:
        """Forget a workspace that is not running: its runs are archived (their outputs stay
        in SpellFS under runs/<id>), and `start` of the name begins with no files."""
        history = self._existing(name)
        if not history[0].status.is_final:
            raise Conflict(
                f"workspace {name} is {history[0].status.value}: stop it first "
                f"(`spell workspaces stop {name}`)"
            )
        for run in history:
            self.runs.archive(run.id)
        return [r.id for r in history]

    def upstream(self, name: str) -> Upstream:
        """Where its Jupyter listens (NotFound: no such workspace; NotServing: not running)."""
        live = self._existing(name)[0]
        handle = self.store.handle_of(live.id) or {}
        if live.status != Status.RUNNING or "address" not in handle:
            raise NotServing(live)
        return Upstream(handle["address"], self.tokens.token(live.id), live)

    def _model(self, name: str, history: list[Run]) -> Workspace:
        return Workspace(
            name=name,
            run=history[0],
            url=self.url_of(name),
            runs=[r.id for r in history],
            ready=self._ready(history[0]),
        )

    def _ready(self, run: Run) -> bool:
        if run.status != Status.RUNNING:
            return False
        address = (self.store.handle_of(run.id) or {}).get("address")
        workspace = run.spec.workspace
        return bool(address) and answers(address, workspace.base_url, self.tokens.token(run.id))

    def _existing(self, name: str) -> list[Run]:
        history = self._runs_of(name)
        if not history:
            raise NotFound(f"no workspace is named {name!r} (start one: `spell jupyter {name}`)")
        return history

    def _runs_of(self, name: str) -> list[Run]:
        """The workspace's runs, newest first (removed ones left out)."""
        return [r for r in self._workspace_runs() if r.spec.workspace.name == name]

    def _workspace_runs(self) -> list[Run]:
        page = self.store.list_runs(kinds=[RunKind.WORKSPACE], limit=MAX_WORKSPACE_RUNS)
        return [r for r in page.runs if r.spec.workspace is not None]


def _saved_files(history: list[Run]) -> int | None:
    """The newest run of a workspace that ran and saved its files (a killed run, or one that
    never started, saved none)."""
    unsaved = (Status.KILLED, Status.BUILD_FAILED, Status.MOUNT_FAILED)
    return next(
        (r.id for r in history if r.started_at is not None and r.status not in unsaved), None
    )
