"""Opening the database: WAL-mode SQLite by default, PostgreSQL for a team's shared store.

Schema changes go through Alembic; `connect_database` upgrades a database to the newest
schema under a lock (a file lock beside SQLite, an advisory lock on PostgreSQL), so a user who
upgrades keeps every run.

Writers take turns on both: SQLite's BEGIN IMMEDIATE, PostgreSQL's transaction-level advisory
lock. The change feed and the log offsets rely on it: what a writer numbers is committed before
the next writer numbers anything, so a reader that saw ID n never misses an ID below it.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def default_db_url(home: Path) -> str:
    return f"sqlite:///{home / 'spell.db'}"


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a generous busy timeout, and BEGIN IMMEDIATE for writers (no upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below open transactions
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("spell_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# Advisory lock keys on PostgreSQL (one namespace per database): writers' turns, the engine's
# leader, migrations.
WRITER_LOCK_KEY = 0x5E11_0001
LEADER_LOCK_KEY = 0x5E11_0002
MIGRATION_LOCK_KEY = 0x5E11_0003


def _configure_postgresql(engine: Engine) -> None:
    """Writers (connections opened with `spell_write`) wait for their turn at BEGIN."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("spell_write", False):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def schema_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def schema_version(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, lock_path: Path | None = None) -> None:
    """Bring the schema to the newest revision (idempotent, one migrator at a time)."""
    from alembic import command

    def upgrade() -> None:
        if schema_version(engine) == schema_head():
            return
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # servers of a team starting together: one migrates
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                upgrade()
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                conn.commit()
    elif lock_path is None:
        upgrade()
    else:
        with FileLock(str(lock_path)):
            upgrade()


def connect_database(url: str, migrate_schema: bool = True) -> Engine:
    """An Engine for `url`, its schema migrated to the newest revision."""
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    lock_path = None
    if is_sqlite:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        if parsed.database and parsed.database != ":memory:":
            db_path = Path(parsed.database)
            db_path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = db_path.with_suffix(".migrate.lock")
    else:
        if parsed.drivername == "postgresql":
            # a plain postgresql:// means psycopg 3 here (what the postgres extra installs)
            url = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        if engine.dialect.name == "postgresql":
            _configure_postgresql(engine)
    if migrate_schema:
        migrate(engine, lock_path)
    return engine


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())
