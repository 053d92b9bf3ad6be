"""How a run's values of one metric make its score (a search's `metric_agg`). Standard library
only: the engine, the client and the CLI share it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda values: values[-1],
    "min": min,
    "max": max,
    "avg": lambda values: sum(values) / len(values),
}


def score(values: Sequence[float], how: str) -> float | None:
    """The values (in index order) aggregated by `how`; None when there are none."""
    return AGGREGATIONS[how](values) if values else None
