"""RunAccess: what the token of code inside a run may do.

Every run gets a token of its own at launch (scope `run`: read itself, send its own metrics); a
workflow's master gets one of scope `workflow` (create runs, which join its workflow; read,
wait on, stop, kill and label the runs of its workflow; read SpellFS and upload). A token dies
with its run. Handlers name, per method, the level a run's token needs (see `Level`).
"""

from __future__ import annotations

from enum import Enum

from ..errors import Forbidden, NotFound
from ..store import RunStore
from ..store.repository import TokenHolder


class Level(str, Enum):
    ANY = "any"  # any run's token (the API's description, machine types)
    RUN = "run"  # the run in the path is the token's own, or of its workflow
    OWN = "own"  # the run in the path is the token's own
    WORKFLOW = "workflow"  # a workflow master's token (and a run in the path is of its workflow)


class RunAccess:
    def __init__(self, store: RunStore):
        self.store = store

    def holder(self, token: str) -> TokenHolder | None:
        """The run a token was issued to, while that run is active (asked of the store at
        every request: a token is refused from the moment its run ends)."""
        return self.store.token_holder(token) if token.startswith("spellrun-") else None

    def check(self, holder: TokenHolder, level: Level | None, run_id: int | None) -> None:
        """Refuse (403) what `holder` may not do; a run it may not see is not found (404)."""
        if level is None:
            raise Forbidden("a run's token may not do this: only the server's own token may")
        if level == Level.WORKFLOW and holder.scope != "workflow":
            raise Forbidden(
                "only a workflow's master run may do this from inside a run "
                "(start it with `spell workflow`)"
            )
        if run_id is None or level == Level.ANY:
            return
        if run_id == holder.run_id:
            return
        if level == Level.OWN:
            raise Forbidden(f"run {holder.run_id}'s token may act on run {holder.run_id} alone")
        workflow = self.store.workflow_of(run_id)
        if holder.scope != "workflow" or workflow != holder.workflow_id:
            raise NotFound(f"no run with ID {run_id} in this run's workflow")
