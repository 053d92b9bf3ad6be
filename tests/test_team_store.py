"""A team's store: PostgreSQL (a real server started by the tests) shared by several spell
servers, the leader elected by an advisory lock, runs recording their owner."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from spell_jupyter.engine.leader import DatabaseLeaderLock
from spell_jupyter.models import OutputLine, RunSpec
from spell_jupyter.server.owners import names_users, request_owner
from spell_jupyter.store import RunStore, connect_database
from spell_jupyter.store.database import schema_head, schema_version, table_names


def test_a_new_postgresql_database_gets_every_migration(postgres_url):
    engine = connect_database(postgres_url)
    assert engine.dialect.name == "postgresql"
    assert schema_version(engine) == schema_head()
    assert {"runs", "run_labels", "status_history", "log_entries", "run_changes"} <= table_names(
        engine
    )
    again = connect_database(postgres_url)  # a second server migrates nothing
    assert schema_version(again) == schema_head()


def test_a_plain_postgresql_url_uses_psycopg(postgres_url):
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    assert connect_database(plain).dialect.driver == "psycopg"


def test_concurrent_writers_on_two_connections_get_ascending_ids_and_changes(postgres_url):
    """Two servers' stores submitting at once: 40 distinct IDs, ascending in the order they
    were committed, and the change feed (IDs a reader resumes from) never goes back."""
    stores = [RunStore(connect_database(postgres_url)) for _ in range(2)]
    created: list[int] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        store = stores[i % 2]
        run = store.create_run(RunSpec(command=f"echo {i}"), "waiting")
        with lock:
            created.append(run.id)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(created)
    assert ids == list(range(1, 41))
    _, runs = stores[0].runs_changed_since(0, limit=1000)
    assert [r.id for r in runs] == ids  # each run's first change in ID order
    changes = stores[1].engine.connect().execute(text("SELECT id, run_id FROM run_changes"))
    by_change = sorted(changes.all())
    assert [run for _, run in by_change] == sorted(run for _, run in by_change)


def test_log_lines_with_any_bytes_are_kept(postgres_url):
    store = RunStore(connect_database(postgres_url))
    run = store.create_run(RunSpec(command="true"), "waiting")
    lines = ["a\x00b", "é \ufffd 🎉", "x" * 100_000, ""]  # as backends decode output
    now = datetime.now(timezone.utc)
    store.append_output(run.id, [OutputLine(now, "stdout", t) for t in lines], "c1")
    got = [e.text for e in store.logs(run.id) if not e.status_event]
    # PostgreSQL's text has no NUL: it is kept as U+FFFD, as undecodable bytes are
    assert got == ["a\ufffdb", "é \ufffd 🎉", "x" * 100_000, ""]


def test_the_leader_lock_is_one_holder_and_passes_on_when_its_connection_ends(postgres_url):
    engine = connect_database(postgres_url)
    first, second = DatabaseLeaderLock(engine), DatabaseLeaderLock(engine)
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()
    # the leader's connection ends (its process died, or the database dropped it)
    with engine.connect() as admin:
        admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        )
        admin.commit()
    assert not first.still_held()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()
    assert first.try_acquire()
    first.release()


class NamingProvider:
    """Stands for JupyterHub's identity provider: it names users."""


class User:
    def __init__(self, username: str):
        self.username = username


def test_runs_belong_to_the_user_a_naming_provider_names():
    from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

    assert not names_users(IdentityProvider()) and not names_users(PasswordIdentityProvider())
    anonymous = User("Anonymous Io")  # what a shared token gives each request
    assert request_owner(anonymous, IdentityProvider(), "alice") == "alice"
    assert request_owner(User("bob"), NamingProvider(), "alice") == "bob"
    assert request_owner(User(""), NamingProvider(), "alice") == "alice"
    assert len(request_owner(User("b" * 500), NamingProvider(), "alice")) == 128


def test_two_servers_on_one_store_share_runs_and_tell_owners_apart(tmp_path, postgres_url):
    """Alice's and Bob's servers (each its own data directory, one PostgreSQL store and one
    SpellFS): 40 submissions through both at once get 40 distinct ascending IDs; `spell ps`
    shows everyone's runs with their creator, `--mine` one's own; one server leads."""
    from conftest import make_home

    fs_root = str(tmp_path / "team-fs")
    homes = []
    for user in ("alice", "bob"):
        folder = tmp_path / user
        folder.mkdir()
        homes.append(
            make_home(folder, SPELL_DB_URL=postgres_url, SPELL_FS_ROOT=fs_root, SPELL_USER=user)
        )
    try:
        for h in homes:
            h.start_server()
        clients = [h.client() for h in homes]
        made: list[int] = []
        lock = threading.Lock()

        def submit(i: int) -> None:
            run = clients[i % 2].runs.new(command=f"echo {i}")
            with lock:
                made.append(run.id)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(made) == list(range(1, 41))
        for i in (1, 40):
            clients[0].runs.get(i).wait_status("complete", timeout=120)
        ps = homes[1].spell("ps", "-n", "100")
        assert "alice" in ps.stdout and "bob" in ps.stdout
        mine = homes[1].spell("ps", "-n", "100", "--mine").stdout
        assert "bob" in mine and "alice" not in mine
        owners = {r.id: r.owner for r in clients[0].runs.list(number=100)}
        assert sorted(owners.values()) == ["alice"] * 20 + ["bob"] * 20
        leaders = [c.transport.json("GET", "")["leader"] for c in clients]
        assert sorted(leaders) == [False, True]
    finally:
        for h in homes:
            h.spell("server", "stop")


def test_a_workspace_is_reached_through_either_server_of_the_store(tmp_path, postgres_url):
    """A workspace that the leader's engine launched answers through the other server's
    proxy too (their data directories differ; the key of its token is the store's)."""
    from conftest import make_home
    from test_workspaces import proxied, start

    homes = []
    for user in ("alice", "bob"):
        (tmp_path / user).mkdir()
        homes.append(
            make_home(
                tmp_path / user,
                SPELL_DB_URL=postgres_url,
                SPELL_FS_ROOT=str(tmp_path / "team-fs"),
                SPELL_USER=user,
            )
        )
    try:
        for h in homes:
            h.start_server()
        leading = [h.client().transport.json("GET", "")["leader"] for h in homes]
        other = homes[leading.index(False)]
        start(other, "team-ws")  # asked of the server that does not lead
        for home in homes:
            status, text = proxied(home, "team-ws/api/status")
            assert status == 200 and "last_activity" in text, text
        assert other.spell("workspaces", "stop", "team-ws").returncode == 0
    finally:
        for h in homes:
            h.spell("server", "stop")


@pytest.mark.timeout(300)
def test_requests_answer_503_while_postgresql_is_down_and_work_after(
    tmp_path, postgres_server, postgres_url
):
    from conftest import make_home

    h = make_home(tmp_path, SPELL_DB_URL=postgres_url)
    h.start_server()
    try:
        spell = h.client()
        first = spell.runs.new(command="echo before")
        first.wait_status("complete", timeout=60)
        postgres_server.stop()
        try:
            down = h.spell("run", "-b", "echo during")
            assert down.returncode != 0
            assert "database" in down.stderr and "does not answer" in down.stderr
            listing = h.spell("ps")
            assert listing.returncode != 0 and "does not answer" in listing.stderr
        finally:
            postgres_server.start()
        after = spell.runs.new(command="echo after")
        assert after.id == first.id + 1  # nothing half-written while it was down
        after.wait_status("complete", timeout=60)
        assert "after" in "".join(e.text for e in after.logs())
    finally:
        h.spell("server", "stop")


def test_servers_of_one_store_derive_the_same_workspace_tokens(tmp_path, postgres_url):
    """The key of workspace and kernel tokens is the store's: a workspace launched by one
    server's engine is reached through another's proxy (each has its own data directory)."""
    from spell_jupyter.engine.service_tokens import ServiceTokens

    stores = [RunStore(connect_database(postgres_url)) for _ in range(4)]
    tokens = [ServiceTokens(s, tmp_path / name) for s, name in zip(stores, "abcd", strict=True)]
    made = []
    threads = [threading.Thread(target=lambda t=t: made.append(t.token(7))) for t in tokens]
    for thread in threads:  # at the same moment: one key is made, every server takes it
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 4 and len(set(made)) == 1
    assert ServiceTokens(stores[1], tmp_path / "e").token(8) != made[0]  # one token per run


def test_a_data_directorys_former_key_seeds_the_stores(tmp_path):
    """Workspaces launched before the key moved into the store keep their tokens."""
    import hashlib
    import hmac

    from spell_jupyter.engine.service_tokens import ServiceTokens
    from spell_jupyter.store.database import default_db_url

    (tmp_path / "service.key").write_bytes(b"k" * 32)
    store = RunStore(connect_database(default_db_url(tmp_path)))
    expected = hmac.new(b"k" * 32, b"run-7", hashlib.sha256).hexdigest()
    assert ServiceTokens(store, tmp_path).token(7) == expected
    (tmp_path / "service.key").unlink()  # the store keeps it now
    assert ServiceTokens(store, tmp_path).token(7) == expected
