"""RunStore: every read and write of runs, labels, status history and logs.

Writers open `BEGIN IMMEDIATE` transactions on SQLite, so concurrent submissions from many
processes serialise cleanly and IDs come out unique and ascending in acceptance order.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import Engine, and_, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import Conflict, NotFound
from ..models import (
    FINAL_STATUSES,
    LogEntry,
    OutputLine,
    Run,
    RunAction,
    RunKind,
    RunPage,
    RunSpec,
    Status,
    StatusChange,
)
from .orm import (
    LogEntryRow,
    RunChangeRow,
    RunLabelRow,
    RunRow,
    RunTokenRow,
    SecretRow,
    StatusChangeRow,
    UTCDateTime,
    utcnow,
)

FINAL_VALUES = tuple(s.value for s in FINAL_STATUSES)
ACTIVE_VALUES = tuple(s.value for s in Status if s not in FINAL_STATUSES)  # by the status index


def insert_statements(table: str, columns: list[str], suffix: str = "") -> dict[str, str]:
    """An INSERT of `columns` into `table` for each DB-API parameter style (for
    exec_driver_sql: rows go to the driver without SQLAlchemy's per-value processing)."""
    names = ", ".join(f'"{c}"' for c in columns)
    return {
        style: f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(columns))}){suffix}"
        for style, mark in (("qmark", "?"), ("format", "%s"), ("pyformat", "%s"), ("numeric", "?"))
    }


INSERT_LOG_ENTRY = insert_statements(
    "log_entries",
    ["run_id", "offset", "timestamp", "status", "status_event", "level", "stream", "text"],
)


_UTC = UTCDateTime()


def storable_text(text: str, dialect: str) -> str:
    """PostgreSQL's text holds no NUL character: there it is stored as U+FFFD, as bytes that
    are not UTF-8 already are; SQLite keeps it."""
    return text.replace("\x00", "\ufffd") if dialect == "postgresql" and "\x00" in text else text


def stored_time(when: datetime, as_text: bool):
    """A timestamp as UTCDateTime stores it: naive UTC (text, SQLAlchemy's format, on
    SQLite)."""
    naive = _UTC.process_bind_param(when, None)
    return naive.isoformat(" ", "microseconds") if as_text else naive


class Turns:
    """The writers of this process take turns in the order they came (a log pump writing
    batch after batch must not starve the engine's status writes, as SQLite's busy waiting
    would let it). Re-entered by its holder freely."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next = 0
        self._serving = 0
        self._holder: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._changed:
            if self._holder == me:
                self._depth += 1
                return
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._changed.wait()
            self._holder, self._depth = me, 1

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._depth -= 1
            if self._depth == 0:
                self._holder = None
                self._serving += 1
                self._changed.notify_all()


# Told of log entries once they are committed: (run ID, entries as column dicts).
LogListener = Callable[[int, list[dict]], None]


@dataclass(frozen=True)
class ActiveRun:
    """What the engine needs of a run that is not final yet."""

    id: int
    status: Status
    spec: RunSpec
    requested_action: RunAction | None
    requested_at: datetime | None
    backend: str | None
    handle: dict | None
    output_cursor: str
    started_at: datetime | None
    allocation: dict | None
    user_exit_code: int | None = None


@dataclass(frozen=True)
class TokenHolder:
    """The run a token was issued to, what it may do (`run` or `workflow`) and its workflow."""

    run_id: int
    scope: str
    workflow_id: int | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class RunStore:
    """The service-layer view of the database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(
            bind=engine.execution_options(spell_write=True), expire_on_commit=False
        )
        self.log_listeners: list[LogListener] = []
        self._turns = Turns()
        self._specs: dict[int, RunSpec] = {}  # active runs' specs, validated (see active_runs)

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        appended: dict[int, list[dict]] = {}
        with self._turns, self._write() as session, session.begin():
            session.connection()  # take the write lock (BEGIN IMMEDIATE on SQLite) now
            session.info["appended"] = appended
            yield session
            self._flush_entries(session)
        for run_id, entries in appended.items():  # committed: tell who follows
            for listener in self.log_listeners:
                listener(run_id, entries)

    @staticmethod
    def _flush_entries(session: Session) -> None:
        """Insert the transaction's log entries in one statement. The rows go to the driver as
        they are (SQLAlchemy's per-value processing costs ten times the insert itself), with
        timestamps as the UTCDateTime column stores them."""
        rows = [row for entries in session.info["appended"].values() for row in entries]
        if not rows:
            return
        connection = session.connection()
        as_text = connection.dialect.name == "sqlite"
        params = [
            (
                r["run_id"],
                r["offset"],
                stored_time(r["timestamp"], as_text),
                r["status"],
                r["status_event"],
                r["level"],
                r["stream"],
                r["text"],
            )
            for r in rows
        ]
        connection.exec_driver_sql(INSERT_LOG_ENTRY[connection.dialect.paramstyle], params)

    # -- creating and reading runs ------------------------------------------------------

    def create_run(
        self,
        spec: RunSpec,
        waiting_message: str,
        *,
        workflow_id: int | None = None,
        search_id: int | None = None,
        owner: str | None = None,
    ) -> Run:
        """Insert a run in `machine_requested`; its ID is the next of one ascending sequence. A
        workflow's master (kind workflow) is its own workflow; other runs join `workflow_id`.
        `owner`: the user who created it."""
        with self._writing() as session:
            now = utcnow()  # under the write lock: creation times ascend with the IDs
            row = RunRow(
                kind=spec.kind.value,
                command=spec.command,
                spec=spec.model_dump(mode="json"),
                status=Status.MACHINE_REQUESTED.value,
                status_message=waiting_message,
                created_at=now,
                description=spec.description,
                machine_type=spec.machine_type,
                archived=False,
                output_cursor="",
                next_log_offset=0,
                workflow_id=workflow_id,
                search_id=search_id,
                project=spec.project,
                owner=owner,
            )
            session.add(row)
            session.flush()
            if spec.kind == RunKind.WORKFLOW:
                row.workflow_id = row.id
            session.add_all(RunLabelRow(run_id=row.id, label=label) for label in spec.labels)
            self._record_status(session, row, Status.MACHINE_REQUESTED, waiting_message, now)
            run_id = row.id
        return self.get_run(run_id)

    def get_run(self, run_id: int) -> Run:
        with self._read() as session:
            row = self._row(session, run_id)
            labels = self._labels(session, [run_id]).get(run_id, [])
            history = session.scalars(
                select(StatusChangeRow)
                .where(StatusChangeRow.run_id == run_id)
                .order_by(StatusChangeRow.id)
            ).all()
            return _to_run(row, labels, history)

    def last_change(self) -> int:
        """The ID of the newest change of any run (0 before the first run)."""
        with self._read() as session:
            return session.scalar(select(func.max(RunChangeRow.id))) or 0

    def runs_changed_since(self, change_id: int, limit: int = 500) -> tuple[int, list[Run]]:
        """Runs that changed (created, status, labels, archived) after change `change_id`, each
        once as it is now, oldest change first; and the newest change ID they cover."""
        with self._read() as session:
            changes = session.execute(
                select(RunChangeRow.id, RunChangeRow.run_id)
                .where(RunChangeRow.id > change_id)
                .order_by(RunChangeRow.id)
                .limit(limit)
            ).all()
        if not changes:
            return change_id, []
        order = list(dict.fromkeys(run_id for _, run_id in changes))
        return changes[-1][0], [self.get_run(run_id) for run_id in order]

    def list_runs(
        self,
        *,
        statuses: Sequence[Status] = (),
        labels: Sequence[str] = (),
        kinds: Sequence[RunKind] = (),
        archived: bool | None = False,
        limit: int = 50,
        offset: int = 0,
        workflow_id: int | None = None,
        search_id: int | None = None,
        project: str | None = None,
        owner: str | None = None,
    ) -> RunPage:
        """Runs newest first, filtered by status, label (any of them), kind, workflow,
        search, project and owner."""
        conditions = []
        if owner is not None:
            conditions.append(RunRow.owner == owner)
        if project is not None:
            conditions.append(RunRow.project == project)
        if workflow_id is not None:
            conditions.append(RunRow.workflow_id == workflow_id)
        if search_id is not None:
            conditions.append(RunRow.search_id == search_id)
        if statuses:
            conditions.append(RunRow.status.in_([s.value for s in statuses]))
        if kinds:
            conditions.append(RunRow.kind.in_([k.value for k in kinds]))
        if archived is not None:
            conditions.append(RunRow.archived == archived)
        if labels:  # any of them, as Spell's `spell ps -l` matched
            conditions.append(
                RunRow.id.in_(select(RunLabelRow.run_id).where(RunLabelRow.label.in_(list(labels))))
            )
        where = and_(True, *conditions)
        with self._read() as session:
            total = session.scalar(select(func.count()).select_from(RunRow).where(where)) or 0
            rows = session.scalars(
                select(RunRow).where(where).order_by(RunRow.id.desc()).limit(limit).offset(offset)
            ).all()
            label_map = self._labels(session, [r.id for r in rows])
            runs = [_to_run(r, label_map.get(r.id, []), []) for r in rows]
        return RunPage(runs=runs, total=total, offset=offset, limit=limit)

    def status_of(self, run_id: int) -> Status:
        with self._read() as session:
            value = session.scalar(select(RunRow.status).where(RunRow.id == run_id))
        if value is None:
            raise NotFound(f"no run with ID {run_id}")
        return Status(value)

    # -- user requests --------------------------------------------------------------------

    def request_action(self, run_id: int, action: RunAction) -> Run:
        """Record a stop or kill for the engine; refused once the run is final."""
        with self._writing() as session:
            row = self._row(session, run_id)
            if row.status in FINAL_VALUES:
                raise Conflict(
                    f"run {run_id} is already {row.status}: there is nothing to {action.value}"
                )
            if row.requested_action != RunAction.KILL.value:  # a kill is never downgraded
                row.requested_action = action.value
                row.requested_at = utcnow()
        return self.get_run(run_id)

    def add_label(self, run_id: int, label: str) -> Run:
        with self._writing() as session:
            self._row(session, run_id)
            if session.get(RunLabelRow, (run_id, label)) is None:
                session.add(RunLabelRow(run_id=run_id, label=label))
                session.add(RunChangeRow(run_id=run_id))
        return self.get_run(run_id)

    def remove_label(self, run_id: int, label: str) -> Run:
        with self._writing() as session:
            self._row(session, run_id)
            found = session.get(RunLabelRow, (run_id, label))
            if found is None:
                raise NotFound(f"run {run_id} has no label {label!r}")
            session.delete(found)
            session.add(RunChangeRow(run_id=run_id))
        return self.get_run(run_id)

    def archive(self, run_id: int) -> Run:
        with self._writing() as session:
            row = self._row(session, run_id)
            if row.status not in FINAL_VALUES:
                raise Conflict(f"run {run_id} is {row.status}: only finished runs can be archived")
            if not row.archived:
                row.archived = True
                session.add(RunChangeRow(run_id=run_id))
        return self.get_run(run_id)

    # -- the engine's side ------------------------------------------------------------------

    def active_runs(self) -> list[ActiveRun]:
        """Runs not final yet, oldest first (the submission order). Specs are read and
        validated once per run while it is active (the engine asks at every pass)."""
        with self._read() as session:
            rows = session.execute(
                select(
                    RunRow.id,
                    RunRow.status,
                    RunRow.requested_action,
                    RunRow.requested_at,
                    RunRow.backend,
                    RunRow.handle,
                    RunRow.output_cursor,
                    RunRow.started_at,
                    RunRow.allocation,
                    RunRow.user_exit_code,
                )
                .where(RunRow.status.in_(ACTIVE_VALUES))
                .order_by(RunRow.id)
            ).all()
            ids = {r.id for r in rows}
            for run_id in [i for i in self._specs if i not in ids]:
                del self._specs[run_id]
            missing = [i for i in ids if i not in self._specs]
            if missing:
                for run_id, data in session.execute(
                    select(RunRow.id, RunRow.spec).where(RunRow.id.in_(missing))
                ):
                    self._specs[run_id] = RunSpec.model_validate(data)
        return [
            ActiveRun(
                id=r.id,
                status=Status(r.status),
                spec=self._specs[r.id],
                requested_action=RunAction(r.requested_action) if r.requested_action else None,
                requested_at=r.requested_at,
                backend=r.backend,
                handle=r.handle,
                output_cursor=r.output_cursor,
                started_at=r.started_at,
                allocation=r.allocation,
                user_exit_code=r.user_exit_code,
            )
            for r in rows
        ]

    def activity_mark(self) -> tuple:
        """Changes anyone may make for the engine to act on (a new run, a stop or kill
        request), as a value that differs once one was made: two indexed lookups."""
        with self._read() as session:
            newest = session.scalar(select(func.max(RunRow.id)))
            requested = session.scalar(
                select(func.max(RunRow.requested_at)).where(RunRow.status.in_(ACTIVE_VALUES))
            )
        return newest, requested

    def set_status(
        self,
        run_id: int,
        status: Status,
        message: str = "",
        *,
        user_exit_code: int | None = None,
        allocation: dict | None = None,
    ) -> None:
        """Move a run to `status`, recording history and a status-event log entry.

        An `allocation` (the resources the scheduler gave the run) is stored in the same
        transaction, so a run never holds resources without having left the queue."""
        now = utcnow()
        with self._writing() as session:
            row = self._row(session, run_id)
            if row.status in FINAL_VALUES:
                return  # a final status is never left
            if status == Status.RUNNING and row.started_at is None:
                row.started_at = now
            if status in FINAL_STATUSES:
                row.ended_at = now
                row.requested_action = None
            if user_exit_code is not None:
                row.user_exit_code = user_exit_code
            if allocation is not None:
                row.allocation = allocation
            self._record_status(session, row, status, message, now)

    def set_handle(self, run_id: int, backend: str, handle: dict) -> None:
        with self._writing() as session:
            row = self._row(session, run_id)
            row.backend = backend
            row.handle = handle

    def record_commit(self, run_id: int, commit: str) -> None:
        """The commit a run's code turned out to be (a git URL's ref, resolved by cloning)."""
        with self._writing() as session:
            row = self._row(session, run_id)
            spec = dict(row.spec)
            spec["code"] = {**spec["code"], "commit": commit}
            row.spec = spec
        self._specs.pop(run_id, None)

    def handle_of(self, run_id: int) -> dict | None:
        """The backend's handle of a run (None before it started)."""
        with self._read() as session:
            return session.scalar(select(RunRow.handle).where(RunRow.id == run_id))

    def add_status_note(self, run_id: int, text: str) -> None:
        """A status-event line within the current status (e.g. what saving found)."""
        with self._writing() as session:
            row = self._row(session, run_id)
            self._append_log(session, row, text, status_event=True, timestamp=utcnow())

    def append_output(
        self, run_id: int, lines: Iterable[OutputLine], cursor: str | None = None
    ) -> int:
        """Store captured output and the backend cursor after it (when given), atomically.
        Returns a count."""
        count = 0
        with self._writing() as session:
            dialect = session.get_bind().dialect.name
            row = self._row(session, run_id)
            entries = session.info["appended"].setdefault(row.id, [])
            offset, status = row.next_log_offset, row.status
            for line in lines:
                entries.append(
                    {
                        "run_id": row.id,
                        "offset": offset + count,
                        "timestamp": line.timestamp,
                        "status": status,
                        "status_event": False,
                        "level": "info",
                        "stream": line.stream,
                        "text": storable_text(line.text, dialect),
                    }
                )
                count += 1
            row.next_log_offset = offset + count
            if cursor is not None:
                row.output_cursor = cursor
        return count

    # -- logs ----------------------------------------------------------------------------------

    def log_rows(self, run_id: int, offset: int = 0, limit: int = 1000) -> list[dict]:
        """Log entries from `offset` as column dicts (what log listeners are told)."""
        columns = [c for c in LogEntryRow.__table__.columns]
        with self._read() as session:
            result = session.execute(
                select(*columns)
                .where(LogEntryRow.run_id == run_id, LogEntryRow.offset >= offset)
                .order_by(LogEntryRow.offset)
                .limit(limit)
            )
            return [dict(row._mapping) for row in result]

    def logs(self, run_id: int, offset: int = 0, limit: int = 1000) -> list[LogEntry]:
        with self._read() as session:
            rows = session.scalars(
                select(LogEntryRow)
                .where(LogEntryRow.run_id == run_id, LogEntryRow.offset >= offset)
                .order_by(LogEntryRow.offset)
                .limit(limit)
            ).all()
            return [
                LogEntry(
                    offset=r.offset,
                    timestamp=r.timestamp,
                    status=Status(r.status),
                    status_event=r.status_event,
                    level=r.level,
                    stream=r.stream,
                    text=r.text,
                )
                for r in rows
            ]

    def log_count(self, run_id: int) -> int:
        with self._read() as session:
            value = session.scalar(select(RunRow.next_log_offset).where(RunRow.id == run_id))
        if value is None:
            raise NotFound(f"no run with ID {run_id}")
        return value

    # -- run tokens ------------------------------------------------------------------------------

    def issue_token(self, run_id: int, scope: str) -> str:
        """A new credential for code inside run `run_id`; only its hash is kept."""
        token = f"spellrun-{run_id}-{secrets.token_urlsafe(24)}"
        with self._writing() as session:
            session.add(
                RunTokenRow(
                    token_hash=token_hash(token), run_id=run_id, scope=scope, created_at=utcnow()
                )
            )
        return token

    def shared_secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The secret `name` that every server of this store shares: made by `make` for the
        first server that asks (another making it at the same moment loses, and takes it)."""
        with self._read() as session:
            found = session.get(SecretRow, name)
        if found is not None:
            return bytes.fromhex(found.value)
        try:
            with self._writing() as session:
                session.add(SecretRow(name=name, value=make().hex()))
        except IntegrityError:
            pass  # made meanwhile by another server
        with self._read() as session:
            return bytes.fromhex(session.get_one(SecretRow, name).value)

    def token_holder(self, token: str) -> TokenHolder | None:
        """Whose `token` is: None when unknown, or when its run has ended (a run's tokens die
        with it)."""
        with self._read() as session:
            found = session.execute(
                select(RunTokenRow.run_id, RunTokenRow.scope, RunRow.workflow_id, RunRow.status)
                .join(RunRow, RunRow.id == RunTokenRow.run_id)
                .where(RunTokenRow.token_hash == token_hash(token))
            ).first()
        if found is None or found.status in FINAL_VALUES:
            return None
        return TokenHolder(found.run_id, found.scope, found.workflow_id)

    def owner_of(self, run_id: int) -> str | None:
        """Who created a run (None: not recorded)."""
        with self._read() as session:
            found = session.execute(select(RunRow.owner).where(RunRow.id == run_id)).first()
        if found is None:
            raise NotFound(f"no run with ID {run_id}")
        return found.owner

    def workflow_of(self, run_id: int) -> int | None:
        """The workflow a run belongs to (None: none)."""
        with self._read() as session:
            found = session.execute(select(RunRow.workflow_id).where(RunRow.id == run_id)).first()
        if found is None:
            raise NotFound(f"no run with ID {run_id}")
        return found.workflow_id

    def revoke_tokens(self, run_id: int) -> None:
        with self._writing() as session:
            session.execute(delete(RunTokenRow).where(RunTokenRow.run_id == run_id))

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything recorded of it (its ID is never handed out again)."""
        with self._writing() as session:
            session.execute(delete(RunRow).where(RunRow.id == run_id))

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, run_id: int) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"no run with ID {run_id}")
        return row

    @staticmethod
    def _labels(session: Session, run_ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if run_ids:
            for run_id, label in session.execute(
                select(RunLabelRow.run_id, RunLabelRow.label)
                .where(RunLabelRow.run_id.in_(run_ids))
                .order_by(RunLabelRow.label)
            ):
                out.setdefault(run_id, []).append(label)
        return out

    def _record_status(
        self, session: Session, row: RunRow, status: Status, message: str, now: datetime
    ) -> None:
        row.status = status.value
        row.status_message = message
        session.add(StatusChangeRow(run_id=row.id, status=status.value, at=now, message=message))
        session.add(RunChangeRow(run_id=row.id))
        self._append_log(session, row, message, status_event=True, timestamp=now)

    @staticmethod
    def _append_log(
        session: Session,
        row: RunRow,
        text: str,
        *,
        status_event: bool,
        timestamp: datetime,
        stream: str | None = None,
    ) -> None:
        """Add a log entry (written in one statement with the others when the transaction
        ends, and told to the log listeners once it is committed)."""
        session.info["appended"].setdefault(row.id, []).append(
            {
                "run_id": row.id,
                "offset": row.next_log_offset,
                "timestamp": timestamp,
                "status": row.status,
                "status_event": status_event,
                "level": "info",
                "stream": stream,
                "text": storable_text(text, session.get_bind().dialect.name),
            }
        )
        row.next_log_offset += 1


def _to_run(row: RunRow, labels: list[str], history: Sequence[StatusChangeRow]) -> Run:
    return Run(
        id=row.id,
        kind=RunKind(row.kind),
        command=row.command,
        spec=_stored_spec(row),
        status=Status(row.status),
        status_message=row.status_message or "",
        status_history=[
            StatusChange(status=Status(h.status), at=h.at, message=h.message) for h in history
        ],
        user_exit_code=row.user_exit_code,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        labels=labels,
        description=row.description or "",
        machine_type=row.machine_type,
        archived=bool(row.archived),
        requested_action=RunAction(row.requested_action) if row.requested_action else None,
        backend=row.backend,
        allocation=row.allocation,
        workflow_id=row.workflow_id,
        search_id=row.search_id,
        owner=row.owner,
    )


def _stored_spec(row: RunRow) -> RunSpec:
    """The run's spec as stored. A row that today's rules refuse (written by an older version,
    or by hand) is still shown as it is: no stored row may make a listing fail."""
    try:
        return RunSpec.model_validate(row.spec)
    except ValidationError:
        pass
    data = row.spec if isinstance(row.spec, dict) else {}
    kept = {"command": row.command or "?"}
    for name, value in data.items():  # every field that is valid on its own is kept
        try:
            RunSpec.model_validate({**kept, name: value})
            kept[name] = value
        except ValidationError:
            continue
    return RunSpec.model_validate(kept)
