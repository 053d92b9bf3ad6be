"""REST handlers of workspaces (thin, over WorkspaceManager). Not for runs' tokens: code in a
run does not start workspaces."""

from __future__ import annotations

import json

from ..models import NewWorkspace
from ..services.workspaces import WorkspaceManager
from .base import SpellHandler, api


class WorkspaceHandlerBase(SpellHandler):
    @property
    def workspaces(self) -> WorkspaceManager:
        return self.settings["spell_workspaces"]


class WorkspacesHandler(WorkspaceHandlerBase):
    @api
    async def get(self):
        found = await self.call(self.workspaces.list)
        self.finish(
            json.dumps(
                {"workspaces": [w.model_dump(mode="json") for w in found]}, ensure_ascii=True
            )
        )

    @api(action="execute")  # a workspace executes what its users type
    async def post(self):
        request = NewWorkspace.model_validate(self.json_body())
        run = await self.call(self.workspaces.start, request, await self.owner())
        self.send(await self.call(self.workspaces.get, run.spec.workspace.name), status=201)


class WorkspaceHandler(WorkspaceHandlerBase):
    @api
    async def get(self, name: str):
        self.send(await self.call(self.workspaces.get, name))

    @api
    async def delete(self, name: str):
        removed = await self.call(self.workspaces.remove, name)
        self.finish({"name": name, "archived_runs": removed})


class WorkspaceStopHandler(WorkspaceHandlerBase):
    @api
    async def post(self, name: str):
        await self.call(self.workspaces.stop, name)
        self.send(await self.call(self.workspaces.get, name))
