"""MetricStore: the values runs send (`spell.metrics.send_metric`) and the hardware samples
the engine records, per run and metric name, in arrival order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from .orm import MetricRow, RunRow
from .repository import ACTIVE_VALUES, RunStore, insert_statements, storable_text, stored_time

MetricListener = Callable[[int], None]


@dataclass(frozen=True)
class MetricPoint:
    """One value to store: a number or text; index None counts on from the metric's last."""

    name: str
    value: float | str
    index: int | None
    timestamp: datetime


class MetricStore:
    """Reads and writes metrics through the RunStore's sessions (and its write turns)."""

    def __init__(self, store: RunStore):
        self.store = store
        self.listeners: list[MetricListener] = []  # told a run's ID after each commit

    def append(self, run_id: int, points: Iterable[MetricPoint]) -> list[dict]:
        """Store points (a value sent again with the same name and index is kept once, so a
        client may retry a batch); returns the rows stored, in order."""
        stored: list[dict] = []
        with self.store._writing() as session:
            self.store._row(session, run_id)  # 404 for an unknown run
            seq = session.scalar(select(func.max(MetricRow.seq)).where(MetricRow.run_id == run_id))
            seq = -1 if seq is None else seq
            next_index: dict[str, int] = {}
            for point in points:
                index = point.index
                if index is None:
                    if point.name not in next_index:
                        last = session.scalar(
                            select(func.max(MetricRow.index)).where(
                                MetricRow.run_id == run_id, MetricRow.name == point.name
                            )
                        )
                        next_index[point.name] = 0 if last is None else last + 1
                    index = next_index[point.name]
                next_index[point.name] = index + 1
                seq += 1
                is_text = isinstance(point.value, str)
                stored.append(
                    {
                        "run_id": run_id,
                        "name": point.name,
                        "index": index,
                        "timestamp": point.timestamp,
                        "value": None if is_text else float(point.value),
                        "text": point.value if is_text else None,
                        "seq": seq,
                    }
                )
            if stored:
                _insert_new(session, stored)
        for listener in self.listeners:
            listener(run_id)
        return stored

    def rows(
        self,
        run_id: int,
        name: str | None = None,
        *,
        after_seq: int = -1,
        start_index: int = 0,
        since: datetime | None = None,
        limit: int = 10_000,
    ) -> list[dict]:
        """Rows in arrival order after `after_seq`, of one metric or all."""
        conditions = [MetricRow.run_id == run_id, MetricRow.seq > after_seq]
        if name is not None:
            conditions.append(MetricRow.name == name)
        if start_index:
            conditions.append(MetricRow.index >= start_index)
        if since is not None:
            conditions.append(MetricRow.timestamp >= since)
        columns = [c for c in MetricRow.__table__.columns]
        with self.store._read() as session:
            result = session.execute(
                select(*columns).where(*conditions).order_by(MetricRow.seq).limit(limit)
            )
            return [dict(row._mapping) for row in result]

    def newest_of_live_runs(self) -> dict[int, int]:
        """{run ID: its newest metric's arrival number} for the runs not final yet: what
        another process compares to see that a run's metrics grew."""
        with self.store._read() as session:
            rows = session.execute(
                select(MetricRow.run_id, func.max(MetricRow.seq))
                .join(RunRow, RunRow.id == MetricRow.run_id)
                .where(RunRow.status.in_(ACTIVE_VALUES))
                .group_by(MetricRow.run_id)
            ).all()
        return dict(rows)

    def summary(self, run_id: int) -> list[dict]:
        """Per metric name: its count and its last value (by index)."""
        with self.store._read() as session:
            counts = session.execute(
                select(MetricRow.name, func.count(), func.max(MetricRow.index))
                .where(MetricRow.run_id == run_id)
                .group_by(MetricRow.name)
                .order_by(MetricRow.name)
            ).all()
            out = []
            for name, count, last_index in counts:
                row = session.execute(
                    select(MetricRow.timestamp, MetricRow.value, MetricRow.text).where(
                        MetricRow.run_id == run_id,
                        MetricRow.name == name,
                        MetricRow.index == last_index,
                    )
                ).one()
                out.append(
                    {
                        "name": name,
                        "count": count,
                        "index": last_index,
                        "timestamp": row.timestamp,
                        "value": row.text if row.value is None else row.value,
                    }
                )
            return out

    def latest(self, run_id: int, names: Iterable[str]) -> dict[str, tuple[int, float]]:
        """The latest numeric (index, value) of each named metric that has one."""
        out: dict[str, tuple[int, float]] = {}
        with self.store._read() as session:
            for name in names:
                row = session.execute(
                    select(MetricRow.index, MetricRow.value)
                    .where(
                        MetricRow.run_id == run_id,
                        MetricRow.name == name,
                        MetricRow.value.is_not(None),
                    )
                    .order_by(MetricRow.index.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    out[name] = (row.index, row.value)
        return out


# SQLite and PostgreSQL both skip a row whose key is taken with ON CONFLICT DO NOTHING.
INSERT_NEW = insert_statements(
    "metrics",
    ["run_id", "name", "index", "timestamp", "value", "text", "seq"],
    " ON CONFLICT DO NOTHING",
)


def _insert_new(session, rows: list[dict]) -> None:
    """Insert in one statement, skipping rows whose (run, name, index) is stored already. The
    rows go to the driver as they are, with timestamps as UTCDateTime stores them (SQLAlchemy's
    per-value processing would cost more than the insert)."""
    connection = session.connection()
    as_text = connection.dialect.name == "sqlite"
    params = [
        (
            r["run_id"],
            r["name"],
            r["index"],
            stored_time(r["timestamp"], as_text),
            r["value"],
            None if r["text"] is None else storable_text(r["text"], connection.dialect.name),
            r["seq"],
        )
        for r in rows
    ]
    connection.exec_driver_sql(INSERT_NEW[connection.dialect.paramstyle], params)
