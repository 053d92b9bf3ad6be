"""The store: migrations from the first release on, and the models' validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from spell_jupyter.models import RunSpec
from spell_jupyter.store import RunStore, connect_database
from spell_jupyter.store.database import migrate, schema_head, schema_version, table_names


def test_new_database_is_at_the_newest_schema(tmp_path):
    engine = connect_database(f"sqlite:///{tmp_path / 'spell.db'}")
    assert schema_version(engine) == schema_head()
    assert {"runs", "run_labels", "status_history", "log_entries"} <= table_names(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_migrations_make_the_tables_the_orm_declares(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from spell_jupyter.store.orm import Base

    engine = connect_database(f"sqlite:///{tmp_path / 'spell.db'}")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_migrating_again_keeps_every_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'spell.db'}"
    store = RunStore(connect_database(url))
    created = [store.create_run(RunSpec(command=f"echo {i}"), "waiting").id for i in range(3)]
    engine = connect_database(url)  # an upgrade opens the same file
    migrate(engine)
    assert [r.id for r in RunStore(engine).list_runs().runs] == created[::-1]


def test_a_database_without_version_table_is_created_from_scratch(tmp_path):
    url = f"sqlite:///{tmp_path / 'spell.db'}"
    engine = connect_database(url, migrate_schema=False)
    assert schema_version(engine) is None
    migrate(engine)
    assert schema_version(engine) == schema_head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0


def database_at(tmp_path, revision: str, *statements: str):
    """A database migrated to `revision` only, with `statements` run in it."""
    from alembic import command

    from spell_jupyter.store.database import alembic_config

    url = f"sqlite:///{tmp_path / 'spell.db'}"
    engine = connect_database(url, migrate_schema=False)
    cfg = alembic_config(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        for statement in statements:
            conn.execute(text(statement))
        conn.commit()
    return engine


def test_upgrade_from_0002_keeps_output_cursors_as_text(tmp_path):
    engine = database_at(
        tmp_path,
        "0002",
        "INSERT INTO runs (kind, command, spec, status, created_at, machine_type, "
        "output_cursor) VALUES ('run', 'true', '{\"command\": \"true\"}', "
        "'running', '2026-11-22 10:00:00.000000', 'CPU', 4096)",
    )
    migrate(engine)
    assert schema_version(engine) == schema_head()
    (active,) = RunStore(engine).active_runs()
    assert active.output_cursor == "4096"


def test_ids_are_never_reused_after_deletion(tmp_path):
    store = RunStore(connect_database(f"sqlite:///{tmp_path / 'spell.db'}"))
    first = store.create_run(RunSpec(command="true"), "waiting").id
    store.delete_run(first)
    assert store.create_run(RunSpec(command="true"), "waiting").id == first + 1


@pytest.mark.parametrize(
    "spec",
    [
        {"command": " "},
        {"command": "a\x00b"},
        {"command": "true", "envvars": {"A-B": "x"}},
        {"command": "true", "labels": [""]},
        {"command": "true", "labels": ["x" * 65]},
        {"command": "true", "cwd": "a/../../b"},
        {"command": "true", "unknown": 1},
    ],
)
def test_run_spec_refuses_bad_input(spec):
    with pytest.raises(ValidationError):
        RunSpec.model_validate(spec)


def test_run_spec_normalises():
    spec = RunSpec(command="true", labels=[" a ", "a", "b"], cwd="./x/./y/")
    assert spec.labels == ["a", "b"] and spec.cwd == "x/y"


def test_upgrade_to_0005_keeps_the_event_ids_handed_out(tmp_path):
    """The event stream's IDs were status-history IDs before run_changes: a panel resuming from
    one after the upgrade misses nothing and sees nothing twice."""
    at = "'2026-11-22 10:00:00.000000'"
    engine = database_at(
        tmp_path,
        "0004",
        "INSERT INTO runs (kind, command, spec, status, created_at, machine_type) VALUES "
        f"('run', 'true', '{{\"command\": \"true\"}}', 'running', {at}, 'CPU')",
        *(
            f"INSERT INTO status_history (run_id, status, at, message) VALUES (1, '{s}', {at}, '')"
            for s in ("machine_requested", "running")
        ),
    )
    migrate(engine)
    store = RunStore(engine)
    assert store.last_change() == 2
    assert store.runs_changed_since(1)[0] == 2
    store.add_label(1, "kept")
    cursor, [run] = store.runs_changed_since(2)
    assert cursor == 3 and run.labels == ["kept"]
