"""Workspaces in the Python API: JupyterLab (or Notebook 7) served from a run on a machine type,
reached through the Spell server at `<server>/spell/workspaces/<name>/`.

`ws = client.workspaces.new("ws1", machine_type="CPU", pip_packages=["torch"])` starts one (as
`spell jupyter ws1`); `ws.wait_ready()` waits until its Jupyter answers; `ws.stop()` saves its
files, and `new("ws1")` again resumes with them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import InvalidArgument, WaitError
from .runs import Run
from .transport import quote_segment

if TYPE_CHECKING:
    from . import SpellClient


class Workspace:
    """A workspace: its name, its URL on the server, its newest run (and the runs before)."""

    def __init__(self, client: SpellClient, data: dict):
        self._client = client
        self._update(data)

    def _update(self, data: dict) -> None:
        self.name: str = data["name"]
        self.path: str = data["url"]  # on the server, e.g. /spell/workspaces/ws1/
        self.run = Run(self._client, data["run"])
        self.run_ids: list[int] = list(data["runs"])
        self.ready: bool = bool(data.get("ready"))

    @property
    def url(self) -> str:
        """The workspace's address in a browser logged in to the server."""
        return self._client.base_url.rstrip("/") + self.path

    @property
    def status(self) -> str:
        return self.run.status

    def __repr__(self) -> str:
        return f"<Workspace {self.name} run {self.run.id} {self.status}>"

    def refresh(self) -> None:
        self._update(self._client.transport.json("GET", f"workspaces/{quote_segment(self.name)}"))

    def wait_ready(self, timeout: float | None = 600.0, on_status=None) -> None:
        """Wait until its Jupyter answers (the server asks it) (`on_status(status)` at each
        change of its run's status); WaitError if its run ends first or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            self.refresh()
            if self.status != seen:
                seen = self.status
                if on_status is not None:
                    on_status(seen)
            if self.run.status in self._client.runs.FINAL:
                raise WaitError(
                    f"workspace {self.name} ended {self.status} before it served "
                    f"(`spell logs {self.run.id}` says why)"
                )
            if self.ready:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise WaitError(f"workspace {self.name} did not answer within {timeout:g} s")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop it: its files are saved, and starting it again resumes with them."""
        self._update(
            self._client.transport.json("POST", f"workspaces/{quote_segment(self.name)}/stop")
        )

    def remove(self) -> list[int]:
        """Forget it (not while it runs): its runs are archived, its name starts afresh."""
        return self._client.transport.json("DELETE", f"workspaces/{quote_segment(self.name)}")[
            "archived_runs"
        ]


class WorkspacesService:
    """`client.workspaces`: start, find, list, stop and remove workspaces."""

    def __init__(self, client: SpellClient):
        self._client = client

    def new(
        self,
        name: str,
        *,
        notebook: bool = False,
        idle_timeout: float | None = None,
        **kwargs,
    ) -> Workspace:
        """Start workspace `name` (resuming with the files its last run saved): JupyterLab, or
        Notebook 7 with `notebook=True`, stopped after `idle_timeout` minutes with no kernel
        activity and no open client. Everything else is `runs.new`'s (machine type,
        environment, mounts, code), but the command."""
        if "command" in kwargs:
            raise InvalidArgument("a workspace's command is Jupyter: leave command out")
        body, warnings = self._client.runs.body("jupyter", **kwargs)
        del body["command"]
        workspace = Workspace(
            self._client,
            self._client.transport.json(
                "POST",
                "workspaces",
                json={
                    "name": name,
                    "notebook": notebook,
                    "idle_timeout_minutes": idle_timeout,
                    "spec": body,
                },
            ),
        )
        workspace.run.code_warnings = warnings
        return workspace

    def get(self, name: str) -> Workspace:
        return Workspace(
            self._client, self._client.transport.json("GET", f"workspaces/{quote_segment(name)}")
        )

    def list(self) -> list[Workspace]:
        found = self._client.transport.json("GET", "workspaces")["workspaces"]
        return [Workspace(self._client, w) for w in found]

    def stop(self, name: str) -> Workspace:
        workspace = self.get(name)
        workspace.stop()
        return workspace

    def remove(self, name: str) -> list[int]:
        return self.get(name).remove()
