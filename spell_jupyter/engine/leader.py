"""One engine drives lifecycles per store: whoever holds its leader lock.

On SQLite (one host) the lock is an flock beside the data; on PostgreSQL (a team's store that
servers on several hosts share) it is a session-level advisory lock, held by one connection
of the leader: PostgreSQL releases it when that connection ends, so a standby takes over when
the leader dies, wherever it ran.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from ..store.database import LEADER_LOCK_KEY


def leader_lock_path(home: Path) -> Path:
    return home / "engine.lock"


class LeaderLock(ABC):
    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if no one holds it; True when this process holds it now."""

    @property
    @abstractmethod
    def held(self) -> bool: ...

    def still_held(self) -> bool:
        """Whether the lock is still ours (a database lock is lost with its connection)."""
        return self.held

    @abstractmethod
    def release(self) -> None: ...


class FileLeaderLock(LeaderLock):
    """An flock on SPELL_HOME/engine.lock; the kernel releases it when its holder dies."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = FileLock(str(path), thread_local=False)

    def try_acquire(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class DatabaseLeaderLock(LeaderLock):
    """pg_try_advisory_lock on a connection of its own (outside the store's pool, which may
    recycle connections)."""

    def __init__(self, store_engine: Engine):
        self._engine = create_engine(
            store_engine.url, poolclass=NullPool, connect_args={"connect_timeout": 5}
        )
        self._connection = None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            return self.still_held()
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception:  # the database is down: no one can lead now
            return False
        try:
            got = connection.exec_driver_sql(
                f"SELECT pg_try_advisory_lock({LEADER_LOCK_KEY})"
            ).scalar()
        except Exception:
            got = False
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    @property
    def held(self) -> bool:
        return self._connection is not None

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # the connection ended, and the lock with it
            self._drop()
            return False

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
                connection.close()

    def release(self) -> None:
        if self._connection is None:
            return
        with contextlib.suppress(Exception):  # a lost connection released it already
            self._connection.exec_driver_sql(f"SELECT pg_advisory_unlock({LEADER_LOCK_KEY})")
        self._drop()


def leader_lock_for(store_engine: Engine, home: Path) -> LeaderLock:
    """The database's lock when the store is shared (PostgreSQL), else the data directory's."""
    if store_engine.dialect.name == "postgresql":
        return DatabaseLeaderLock(store_engine)
    return FileLeaderLock(leader_lock_path(home))
