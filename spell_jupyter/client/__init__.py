"""The Python API of spell-jupyter, with Spell's names:

import spell.client
client = spell.client.from_environment()
run = client.runs.new(command="python train.py")
run.wait_status(*client.runs.FINAL)
"""

from __future__ import annotations

from pathlib import Path

from ..paths import spell_home
from .connection import ServerInfo, environment_server_info, running_server
from .errors import (
    APIError,
    ServerAlreadyRunning,
    ServerUnavailable,
    SpellClientError,
    UnsupportedArgument,
    WaitError,
)
from .hyper import HyperSearch, HyperService, RangeSpec, ValueSpec
from .resources import ResourcesService
from .runs import LogEntry, Run, RunsService
from .transport import Transport
from .workflows import Workflow, WorkflowsService
from .workspaces import Workspace, WorkspacesService

__all__ = [
    "APIError",
    "HyperSearch",
    "HyperService",
    "LogEntry",
    "RangeSpec",
    "Run",
    "RunsService",
    "ServerAlreadyRunning",
    "ServerUnavailable",
    "SpellClient",
    "SpellClientError",
    "UnsupportedArgument",
    "ValueSpec",
    "WaitError",
    "Workflow",
    "WorkflowsService",
    "Workspace",
    "WorkspacesService",
    "from_environment",
]


class SpellClient:
    """A connection to one Spell server: `.runs` and `.resources`."""

    def __init__(self, token: str = "", owner: str | None = None, base_url: str | None = None):
        """Spell's signature: `SpellClient(token=..., base_url=...)`; without base_url, the
        server is found as `from_environment()` finds it. `owner` (Spell's organisation) is
        kept for scripts that pass it: one server has one owner."""
        if base_url is None:
            found = from_environment()
            base_url, token = found.base_url, token or found.transport.token
        self.base_url = base_url
        self.owner = owner
        self.transport = Transport(base_url, token)
        self.runs = RunsService(self)
        self.resources = ResourcesService(self)
        self.workflows = WorkflowsService(self)
        self.hyper = HyperService(self)
        self.workspaces = WorkspacesService(self)
        self._active_workflow: list[Workflow | None] = []
        self._gpus: dict[str, str | None] | None = None

    @property
    def active_workflow(self) -> Workflow | None:
        """The workflow this script is the master of (inside `spell workflow`); else None."""
        if not self._active_workflow:
            self._active_workflow.append(self.workflows.active())
        return self._active_workflow[0]

    def __repr__(self) -> str:
        return f"<SpellClient {self.base_url}>"

    def machine_types(self) -> dict:
        """The host's capacity and each machine type with how many more runs of it fit now."""
        return self.transport.json("GET", "machine-types")

    def machine_type_gpus(self) -> dict[str, str | None]:
        """Each machine type's GPU model (None without GPUs), asked once."""
        if self._gpus is None:
            self._gpus = {t["name"]: t["gpu"] for t in self.machine_types()["machine_types"]}
        return self._gpus


def from_environment(spell_home_dir: str | Path | None = None) -> SpellClient:
    """A client for `$SPELL_BASE_URL`/`$SPELL_TOKEN`, else the server of SPELL_HOME: its
    `spell server`, or the JupyterLab (any Jupyter server) whose Spell extension serves it."""
    info: ServerInfo | None = environment_server_info()
    if info is None:
        home = spell_home(spell_home_dir)
        info = running_server(home)
        if info is None:
            raise ServerUnavailable(
                f"no Spell server is running for {home}: start one with `spell server`, or "
                "start JupyterLab"
            )
    return SpellClient(token=info.token, base_url=info.url)
