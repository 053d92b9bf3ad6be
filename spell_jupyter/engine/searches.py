"""SearchDriver: the engine's step for a search (a run of kind `hyper`, which holds no machine).

Each pass it looks at the search's runs in the store and creates what is missing: every point
of a grid or a random search at once, and for a bayesian search the next points while fewer
than `parallel_runs` run, each proposed by Optuna's TPE from the finished runs' metric. All of
its state is in the store (its runs, their parameters and metrics), so a search goes on after
a server restart with its full count of runs.
"""

from __future__ import annotations

import contextlib
import logging
import math

from ..errors import Conflict
from ..metric_scores import score
from ..models import Run, RunAction, RunKind, RunSpec, Status
from ..search_spec import ParamSpec, SearchSpec, Value, substitute
from ..store.metrics import MetricStore
from ..store.repository import ActiveRun, RunStore

log = logging.getLogger(__name__)


class SearchDriver:
    def __init__(self, store: RunStore, metrics: MetricStore | None):
        self.store = store
        self.metrics = metrics

    def step(self, search: ActiveRun) -> int:
        """Take the search as far as it goes now; returns how many runs it created."""
        spec = search.spec.search
        assert spec is not None
        runs = self.runs_of(search.id)
        if search.status == Status.MACHINE_REQUESTED:
            self.store.set_status(
                search.id,
                Status.RUNNING,
                f"Search running: a {spec.type} search of {spec.size} runs",
            )
        created = 0
        if search.requested_action is None:
            for point in self._next_points(search, spec, runs):
                runs.append(self._create(search, point))
                created += 1
        active = [r for r in runs if not r.status.is_final]
        if search.requested_action is not None:
            for run in active:  # a stop or kill of the search is one of its runs too
                if run.requested_action is None:
                    with contextlib.suppress(Conflict):
                        self.store.request_action(run.id, search.requested_action)
        if active:
            return created
        if search.requested_action is not None:
            final = Status.KILLED if search.requested_action == RunAction.KILL else Status.STOPPED
            self.store.set_status(search.id, final, f"Search {final.value}")
        elif len(runs) >= spec.size:
            self.store.set_status(search.id, Status.COMPLETE, self._summary(spec, runs))
        return created

    def runs_of(self, search_id: int) -> list[Run]:
        page = self.store.list_runs(search_id=search_id, archived=None, limit=100_000)
        return sorted(page.runs, key=lambda r: r.id)

    def _next_points(self, search: ActiveRun, spec: SearchSpec, runs: list[Run]):
        made = len(runs)
        if spec.type == "grid":
            return spec.grid_points()[made:]
        if spec.type == "random":
            return [spec.random_point(search.id * 100_003 + i) for i in range(made, spec.size)]
        running = sum(1 for r in runs if not r.status.is_final)
        room = min((spec.parallel_runs or 1) - running, spec.size - made)
        return [self._propose(search.id, spec, runs, made + i) for i in range(max(room, 0))]

    def _create(self, search: ActiveRun, point: dict[str, Value]) -> Run:
        base = search.spec.model_dump(mode="json", exclude={"search", "kind", "hyper_params"})
        spec = RunSpec.model_validate(
            {**base, "command": substitute(search.spec.command, point), "hyper_params": point}
        )
        run = self.store.create_run(
            spec,
            f"Run created by search {search.id} -- waiting for a {spec.machine_type} machine.",
            workflow_id=self.store.workflow_of(search.id),
            search_id=search.id,
            owner=self.store.owner_of(search.id),
        )
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        self.store.add_status_note(search.id, f"Run {run.id}: {shown}")
        return run

    def objective(self, spec: SearchSpec, run: Run) -> float | None:
        """The run's aggregated metric (None when it failed or sent none)."""
        if self.metrics is None or run.status != Status.COMPLETE or not spec.metric:
            return None
        rows = self.metrics.rows(run.id, spec.metric)
        values = [
            r["value"] for r in sorted(rows, key=lambda r: r["index"]) if r["value"] is not None
        ]
        return score(values, spec.metric_agg)

    def _propose(self, search_id: int, spec: SearchSpec, runs: list[Run], number: int):
        """The next point of a bayesian search: Optuna's TPE told every finished run (its
        parameters and objective, or a failure), asked once. Seeded by the point's number,
        so the same store gives the same proposals."""
        import optuna
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = {}
        for name, param in spec.params.items():
            logged = param.scaling != "linear"  # reverse_log: log-scaled, mirrored (flip)
            if param.values is not None:
                distributions[name] = CategoricalDistribution(param.values)
            elif param.type == "int":
                distributions[name] = IntDistribution(
                    math.ceil(param.min), math.floor(param.max), log=logged
                )
            else:
                distributions[name] = FloatDistribution(param.min, param.max, log=logged)
        study = optuna.create_study(
            direction="maximize" if spec.maximize else "minimize",
            sampler=optuna.samplers.TPESampler(
                seed=search_id * 1009 + number, n_startup_trials=min(4, spec.size)
            ),
        )
        for run in runs:
            if not run.status.is_final:
                continue
            params = {
                k: flip(spec.params[k], v)
                for k, v in run.spec.hyper_params.items()
                if k in distributions
            }
            if set(params) != set(distributions):
                continue
            value = self.objective(spec, run)
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            study.add_trial(
                create_trial(
                    params=params,
                    distributions=distributions,
                    value=value,
                    state=state,
                )
            )
        trial = study.ask(distributions)
        return {
            name: spec.params[name].cast(flip(spec.params[name], trial.params[name]))
            if spec.params[name].values is None
            else trial.params[name]
            for name in spec.params
        }

    def _summary(self, spec: SearchSpec, runs: list[Run]) -> str:
        done = sum(1 for r in runs if r.status == Status.COMPLETE)
        text = f"Search complete: {done} of {len(runs)} runs complete"
        if spec.metric:
            scored = [(v, r) for r in runs if (v := self.objective(spec, r)) is not None]
            if scored:
                value, best = (max if spec.maximize else min)(scored, key=lambda s: s[0])
                shown = ", ".join(f"{k}={v}" for k, v in best.spec.hyper_params.items())
                text += f"; best: run {best.id} ({spec.metric} {value:g}; {shown})"
        return text


def flip(param: ParamSpec, value: Value) -> Value:
    """A reverse_log range is searched as a log range mirrored end to end (dense near max):
    a value and its mirror, one way or the other."""
    if param.scaling != "reverse_log" or param.values is not None:
        return value
    if param.type == "int":
        return math.ceil(param.min) + math.floor(param.max) - int(value)
    return param.min + param.max - float(value)


def is_search(run: ActiveRun) -> bool:
    return run.spec.kind == RunKind.HYPER
