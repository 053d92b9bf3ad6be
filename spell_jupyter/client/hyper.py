"""Hyperparameter searches in the Python API, with Spell's names: `client.hyper.new_grid_search`,
`new_random_search`, `new_bayesian_search`, and the `HyperSearch` they return."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..metric_scores import AGGREGATIONS
from ..status import RunKind
from .errors import InvalidArgument
from .runs import Run

if TYPE_CHECKING:
    from . import SpellClient

LINEAR, LOG, REVERSE_LOG = "linear", "log", "reverse_log"
INT, FLOAT = "int", "float"


class ValueSpec:
    """A parameter taking each of `values` (a grid), or one of them at random."""

    def __init__(self, values):
        if isinstance(values, str) or not hasattr(values, "__iter__"):
            raise InvalidArgument(f"ValueSpec takes a list of values, not {values!r}")
        self.values = list(values)

    def as_json(self) -> dict:
        return {"values": self.values}

    def __repr__(self) -> str:
        return f"ValueSpec({self.values!r})"


class RangeSpec:
    """A parameter in [min, max], scaled LINEAR, LOG or REVERSE_LOG, of type FLOAT or INT."""

    def __init__(self, min, max, scaling: str = LINEAR, type: str = FLOAT):
        self.min, self.max, self.scaling, self.type = min, max, scaling, type

    def as_json(self) -> dict:
        return {"min": self.min, "max": self.max, "scaling": self.scaling, "type": self.type}

    def __repr__(self) -> str:
        return f"RangeSpec({self.min!r}, {self.max!r}, {self.scaling!r}, {self.type!r})"


def param_json(params: dict) -> dict:
    if not isinstance(params, dict) or not params:
        raise InvalidArgument("params is a dict of {name: ValueSpec(...) or RangeSpec(...)}")
    out = {}
    for name, spec in params.items():
        if isinstance(spec, ValueSpec | RangeSpec):
            out[name] = spec.as_json()
        elif isinstance(spec, dict):
            out[name] = spec
        elif isinstance(spec, list | tuple):
            out[name] = {"values": list(spec)}
        else:
            raise InvalidArgument(f"parameter {name!r}: give a ValueSpec or a RangeSpec")
    return out


class HyperSearch:
    """A search (a run of kind `hyper`): `.id`, `.runs`, `refresh()`, `stop()`, `kill()`."""

    def __init__(self, client: SpellClient, search: Run):
        self._client = client
        self.search_run = search
        self.id: int = search.id
        self.runs: list[Run] = []
        self._load_runs()

    @property
    def status(self) -> str:
        return self.search_run.status

    def _load_runs(self) -> None:
        page = self._client.transport.json(
            "GET", "runs", params={"search": self.id, "limit": 1000, "archived": "any"}
        )
        self.runs = [Run(self._client, r) for r in reversed(page["runs"])]

    def refresh(self) -> None:
        self.search_run.refresh()
        self._load_runs()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the search is final (all its runs ended)."""
        from .runs import RunsService

        self.search_run.wait_status(*RunsService.FINAL, timeout=timeout)
        self._load_runs()

    def stop(self) -> None:
        self._client.transport.json("POST", f"searches/{self.id}/stop")
        self.refresh()

    def kill(self) -> None:
        self._client.transport.json("POST", f"searches/{self.id}/kill")
        self.refresh()

    @property
    def spec(self) -> dict:
        return self.search_run.raw["spec"].get("search") or {}

    def __repr__(self) -> str:
        return f"<HyperSearch {self.id} {self.status}>"

    def __str__(self) -> str:
        spec = self.spec
        return (
            f"Search {self.id} ({self.status}): {spec.get('type')} search, {len(self.runs)} runs "
            f"of {self.search_run.command}"
        )


class HyperService:
    """`client.hyper`: start and find hyperparameter searches."""

    LINEAR, LOG, REVERSE_LOG = LINEAR, LOG, REVERSE_LOG
    FLOAT, INT = FLOAT, INT

    def __init__(self, client: SpellClient):
        self._client = client

    def new_grid_search(self, params: dict, confirm_large: bool = False, **kwargs) -> HyperSearch:
        """A run for every combination of the ValueSpecs' values."""
        search = {"type": "grid", "params": param_json(params), "confirm_large": confirm_large}
        return self._new(search, kwargs)

    def new_random_search(self, params: dict, num_runs: int, **kwargs) -> HyperSearch:
        """`num_runs` runs, each with a random point of the parameters."""
        return self._new(
            {"type": "random", "params": param_json(params), "num_runs": num_runs}, kwargs
        )

    def new_bayesian_search(
        self,
        params: dict,
        num_runs: int,
        parallel_runs: int,
        metric: str,
        metric_agg: str = "last",
        maximize: bool = False,
        **kwargs,
    ) -> HyperSearch:
        """`num_runs` runs, `parallel_runs` at a time, each next point proposed (Optuna's TPE)
        from the finished runs' `metric` (aggregated by `metric_agg`: last, min, max, avg),
        minimised unless `maximize`."""
        if metric_agg not in AGGREGATIONS:
            raise InvalidArgument(
                f"metric_agg {metric_agg!r}: use one of {', '.join(AGGREGATIONS)}"
            )
        search = {
            "type": "bayesian",
            "params": param_json(params),
            "num_runs": num_runs,
            "parallel_runs": parallel_runs,
            "metric": metric,
            "metric_agg": metric_agg,
            "maximize": maximize,
        }
        return self._new(search, kwargs)

    def _new(self, search: dict, kwargs: dict) -> HyperSearch:
        command = kwargs.pop("command", None)
        if not command:
            raise InvalidArgument("give the command of the search's runs (command=...)")
        body, warnings = self._client.runs.body(command, **kwargs)
        body["kind"] = RunKind.HYPER.value
        body["search"] = search
        run = self._client.runs._create(body, warnings)
        return HyperSearch(self._client, run)

    def get(self, search_id: int) -> HyperSearch:
        run = self._client.runs.get(search_id)
        if run.kind != RunKind.HYPER.value:
            raise InvalidArgument(f"run {search_id} is not a hyperparameter search")
        return HyperSearch(self._client, run)

    def list(self, number: int = 50) -> list[HyperSearch]:
        return [
            HyperSearch(self._client, r)
            for r in self._client.runs.list(number=number, kinds=[RunKind.HYPER.value])
        ]
