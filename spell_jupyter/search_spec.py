"""Hyperparameter searches: what a search asks for (pydantic) and the points of a grid or a
random search. A search is a run of kind `hyper` whose spec carries a SearchSpec; each point
becomes a run of its own, with `:NAME:` in the command replaced by the point's values."""

from __future__ import annotations

import itertools
import math
import random
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

MAX_GRID_RUNS = 1000  # a larger grid needs confirming (`--yes`, confirm_large=True)
MAX_SEARCH_RUNS = 10_000
PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*):")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Value = StrictInt | float | StrictStr


class ParamSpec(BaseModel):
    """One parameter: a list of `values`, or a range min..max (linear, log or reverse_log
    scaling; int or float)."""

    model_config = ConfigDict(extra="forbid")

    values: list[Value] | None = None
    min: float | None = None
    max: float | None = None
    scaling: Literal["linear", "log", "reverse_log"] = "linear"
    type: Literal["int", "float"] = "float"

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.values is not None:
            if self.min is not None or self.max is not None:
                raise ValueError("a parameter has values or a min..max range, not both")
            if not self.values:
                raise ValueError("a parameter needs at least one value")
            if any(isinstance(v, float) and not math.isfinite(v) for v in self.values):
                raise ValueError("parameter values must be finite")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a parameter needs values, or both min and max")
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("a range's min and max must be finite")
        if self.min > self.max:
            raise ValueError(f"a range's min ({self.min:g}) is above its max ({self.max:g})")
        if self.scaling != "linear" and self.min <= 0:
            raise ValueError(f"{self.scaling} scaling needs a min above 0, not {self.min:g}")
        if self.type == "int" and math.floor(self.max) < math.ceil(self.min):
            raise ValueError(f"no whole number lies in {self.min:g}..{self.max:g}")
        return self

    @property
    def is_range(self) -> bool:
        return self.values is None

    def sample(self, rng: random.Random) -> Value:
        if self.values is not None:
            return rng.choice(self.values)
        low, high = self.min, self.max
        if self.scaling == "log":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif self.scaling == "reverse_log":  # dense near max
            value = low + high - math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return self.cast(value)

    def cast(self, value: float) -> Value:
        if self.type == "int":
            return int(min(max(round(value), math.ceil(self.min)), math.floor(self.max)))
        return float(min(max(value, self.min), self.max))


class SearchSpec(BaseModel):
    """What a search runs: its kind, parameters, how many runs (and how many at once), and
    for a bayesian search the metric it optimises."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["grid", "random", "bayesian"]
    params: dict[str, ParamSpec] = Field(min_length=1)
    num_runs: StrictInt | None = Field(default=None, ge=1, le=MAX_SEARCH_RUNS)
    parallel_runs: StrictInt | None = Field(default=None, ge=1, le=100)
    metric: str | None = Field(default=None, min_length=1, max_length=128)
    metric_agg: Literal["last", "min", "max", "avg"] = "last"
    maximize: bool = False
    confirm_large: bool = Field(
        default=False, description=f"Allow a grid of more than {MAX_GRID_RUNS} runs"
    )

    @model_validator(mode="after")
    def _shape(self) -> SearchSpec:
        for name in self.params:
            if not PARAM_NAME.fullmatch(name):
                raise ValueError(
                    f"parameter name {name!r}: letters, digits and _ (it fills :{name}:)"
                )
        if self.type == "grid":
            ranged = [n for n, p in self.params.items() if p.is_range]
            if ranged:
                raise ValueError(
                    f"a grid search takes lists of values: {ranged[0]} is a range (give "
                    "values a,b,c, or use a random or bayesian search)"
                )
            size = self.size
            if size > MAX_SEARCH_RUNS:
                raise ValueError(f"this grid makes {size} runs: at most {MAX_SEARCH_RUNS}")
            if size > MAX_GRID_RUNS and not self.confirm_large:
                raise ValueError(
                    f"this grid makes {size} runs: more than {MAX_GRID_RUNS} need confirming "
                    "(--yes)"
                )
        elif self.num_runs is None:
            raise ValueError(f"a {self.type} search needs num_runs (-n)")
        if self.type == "bayesian" and not self.metric:
            raise ValueError("a bayesian search needs the metric to optimise (--metric)")
        return self

    @property
    def size(self) -> int:
        """How many runs the search makes."""
        if self.type == "grid":
            return math.prod(len(p.values or ()) for p in self.params.values())
        return self.num_runs or 0

    def grid_points(self) -> list[dict[str, Value]]:
        names = list(self.params)
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(self.params[n].values or () for n in names))
        ]

    def random_point(self, seed: int) -> dict[str, Value]:
        rng = random.Random(seed)
        return {name: spec.sample(rng) for name, spec in self.params.items()}


def substitute(command: str, point: dict[str, Value]) -> str:
    """The command with each :NAME: replaced by the point's value."""
    return PLACEHOLDER.sub(
        lambda m: str(point[m.group(1)]) if m.group(1) in point else m.group(0), command
    )


def check_placeholders(command: str, params: dict) -> list[str]:
    """Refuse a :NAME: without a parameter; warnings for parameters the command never uses."""
    used = set(PLACEHOLDER.findall(command))
    missing = sorted(used - set(params))
    if missing:
        raise ValueError(
            f"the command uses :{missing[0]}: but no parameter is named {missing[0]!r}: add "
            f"--param {missing[0]}=..."
        )
    return [
        f"parameter {name!r} is not used by the command (write :{name}: where it goes)"
        for name in params
        if name not in used
    ]
