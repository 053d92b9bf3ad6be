"""What the proxy of services runs serve (workspaces, TensorBoards) asks the services for."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Run


@dataclass(frozen=True)
class Upstream:
    """Where this host reaches what a run serves ("127.0.0.1:PORT"), the token it takes (None:
    none), and the run."""

    address: str
    token: str | None
    run: Run


class NotServing(Exception):
    """The run exists but serves nothing now (starting, or ended); its run says which."""

    def __init__(self, run: Run):
        super().__init__(run.status.value)
        self.run = run
