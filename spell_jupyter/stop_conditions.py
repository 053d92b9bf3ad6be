"""Stop conditions (`--stop-condition "loss < 0.1:100"`): parsed and checked here, standard
library only, so the CLI refuses a malformed one before a run exists and the server applies it.

A condition is clauses joined by `&&` (all must hold); a run takes up to five conditions (any
one stops it). A clause is `METRIC OP NUMBER[:MIN_INDEX]`: it holds once the metric's latest
value compares so and, with MIN_INDEX, that value's index is at least MIN_INDEX.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

MAX_CONDITIONS = 5
OPERATORS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_CLAUSE = re.compile(
    r"^\s*(?P<name>[^\s<>=!&]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[^\s:]+)"
    r"(?:\s*:\s*(?P<min_index>\d{1,18}))?\s*$"
)


@dataclass(frozen=True)
class Clause:
    metric: str
    op: str
    value: float
    min_index: int = 0

    def holds(self, value: float, index: int) -> bool:
        return index >= self.min_index and OPERATORS[self.op](value, self.value)

    def __str__(self) -> str:
        text = f"{self.metric} {self.op} {self.value:g}"
        return f"{text}:{self.min_index}" if self.min_index else text


@dataclass(frozen=True)
class StopCondition:
    clauses: tuple[Clause, ...]

    @property
    def metrics(self) -> set[str]:
        return {c.metric for c in self.clauses}

    def holds(self, latest: dict[str, tuple[int, float]]) -> bool:
        """Whether every clause holds for the latest (index, value) of each metric."""
        return all(
            c.metric in latest and c.holds(latest[c.metric][1], latest[c.metric][0])
            for c in self.clauses
        )

    def __str__(self) -> str:
        return " && ".join(map(str, self.clauses))


def parse_stop_condition(text: str) -> StopCondition:
    """A condition from its text; ValueError with the reason when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a stop condition is empty: write it as 'METRIC < NUMBER[:MIN_INDEX]'")
    clauses = []
    for part in text.split("&&"):
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(
                f"malformed stop condition {text!r}: write 'METRIC OP NUMBER[:MIN_INDEX]' with "
                "OP one of < <= > >= ==, joined by && (e.g. 'loss < 0.1:100 && acc > 0.9')"
            )
        try:
            value = float(match["value"])
        except ValueError:
            raise ValueError(
                f"stop condition {text!r}: {match['value']!r} is not a number"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"stop condition {text!r}: the number must be finite")
        clauses.append(Clause(match["name"], match["op"], value, int(match["min_index"] or 0)))
    return StopCondition(tuple(clauses))


def parse_stop_conditions(texts: list[str]) -> list[StopCondition]:
    if len(texts) > MAX_CONDITIONS:
        raise ValueError(
            f"{len(texts)} stop conditions: at most {MAX_CONDITIONS} (join clauses that must all "
            "hold with && inside one)"
        )
    return [parse_stop_condition(t) for t in texts]
