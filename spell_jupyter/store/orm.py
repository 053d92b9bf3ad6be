"""SQLAlchemy 2 ORM tables. Changing them needs a migration in `migrations/versions`."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite stores it naive)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status", "status"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    command: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str] = mapped_column(Text, default="")
    user_exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    machine_type: Mapped[str] = mapped_column(String(64))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    handle: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    allocation: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    output_cursor: Mapped[str] = mapped_column(String(200), default="")
    next_log_offset: Mapped[int] = mapped_column(Integer, default=0)
    # The workflow (its master run's ID) and the hyperparameter search (its run's ID) a run
    # belongs to; a master's workflow_id is its own ID.
    workflow_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    search_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    project: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)


class RunLabelRow(Base):
    __tablename__ = "run_labels"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class StatusChangeRow(Base):
    __tablename__ = "status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text, default="")


class RunChangeRow(Base):
    """One change of a run that panels show (created, status, labels, archived), in one
    ascending sequence: the event stream's IDs."""

    __tablename__ = "run_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # an ID is never given twice

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)


class LogEntryRow(Base):
    __tablename__ = "log_entries"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    offset: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(32))
    status_event: Mapped[bool] = mapped_column(Boolean, default=False)
    level: Mapped[str] = mapped_column(String(16), default="info")
    stream: Mapped[str | None] = mapped_column(String(16), nullable=True)
    text: Mapped[str] = mapped_column(Text)


class RunTokenRow(Base):
    """A credential handed to one run (its SHA-256 only): valid while that run is active."""

    __tablename__ = "run_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # "run" or "workflow"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SecretRow(Base):
    """A secret every server of one store shares (hex), such as the key of workspace tokens."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class MetricRow(Base):
    """One value of a run's metric: a number, or text (then `value` is null)."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_seq", "run_id", "seq"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)  # arrival order within the run
