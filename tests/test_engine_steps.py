"""The engine's lifecycle rules, in process: a RunEngine over a temporary store and the
FakeBackend, stepped by the test (`tick`, then wait for the engine's next event), no server.
Every status transition, stop/kill/timeout, queueing, and failures in the middle of a step."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from fake_backend import FakeBackend

from spell_jupyter.backends.base import BuildFailed, CodeFailed, MountFailed, OutputFile
from spell_jupyter.backends.local import LocalBackend
from spell_jupyter.engine import RunEngine
from spell_jupyter.engine.environments import Frameworks
from spell_jupyter.engine.machine_types import DEFAULT_MACHINE_TYPES, HostCapacity, MachineTypes
from spell_jupyter.fs.spellfs import SpellFileSystem
from spell_jupyter.models import CodeSpec, Mount, RunAction, RunSpec, Status
from spell_jupyter.store import RunStore, connect_database
from spell_jupyter.store.database import default_db_url

S = Status


class Harness:
    """One engine leading one temporary data directory, driven by the test."""

    def __init__(self, home: Path, backend_class=FakeBackend, **options):
        self.home = home
        self.store = RunStore(connect_database(default_db_url(home)))
        fs = SpellFileSystem(str(home / "fs"))
        self.backend = backend_class(fs=fs, home=home)
        machine_types = MachineTypes(DEFAULT_MACHINE_TYPES, HostCapacity(4, 16384))
        self.engine = RunEngine(
            store=self.store,
            backend=self.backend,
            home=home,
            machine_types=machine_types,
            frameworks=Frameworks({"default": "fake/base"}),
            **{"stop_grace_period": 0.3, "concurrency_limit": 4, **options},
        )
        self.engine.begin_leading()

    def submit(self, command: str = "train", **spec) -> int:
        run = self.store.create_run(RunSpec(command=command, **spec), "waiting")
        self.engine.wake()
        return run.id

    def until(self, predicate, timeout: float = 15.0):
        """Step the engine (a pass, then sleep until its next event or deadline) until
        `predicate()` is true."""
        end = time.monotonic() + timeout
        while True:
            deadline = self.engine.tick()
            value = predicate()
            if value:
                return value
            left = end - time.monotonic()
            assert left > 0, f"gave up waiting; statuses {self.statuses()}"
            self.engine.wait_for_work(min(deadline - time.monotonic(), left, 1.0))

    def status(self, run_id: int) -> Status:
        return self.store.status_of(run_id)

    def reaches(self, run_id: int, *statuses: Status) -> Status:
        return self.until(lambda: self.status(run_id) in statuses and self.status(run_id))

    def statuses(self) -> dict[int, str]:
        return {r.id: r.status.value for r in self.store.list_runs(limit=100).runs}

    def history(self, run_id: int) -> list[Status]:
        return [c.status for c in self.store.get_run(run_id).status_history]

    def notes(self, run_id: int) -> list[str]:
        return [e.text for e in self.store.logs(run_id, 0, 100_000) if e.status_event]

    def output(self, run_id: int) -> list[str]:
        return [e.text for e in self.store.logs(run_id, 0, 100_000) if e.stream == "stdout"]

    def running(self, run_id: int) -> None:
        self.reaches(run_id, S.RUNNING)

    def close(self) -> None:
        self.engine.stop(timeout=1)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(**options) -> Harness:
        made.append(Harness(tmp_path, **options))
        return made[-1]

    yield make
    for h in made:
        h.close()


FULL = [S.MACHINE_REQUESTED, S.BUILDING, S.MOUNTING, S.RUNNING, S.SAVING, S.PUSHING]


def test_a_run_goes_through_every_status_and_its_outputs_are_saved(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.backend.outputs[run] = [OutputFile("/w/model.pt", "model.pt", 10)]
    h.backend.print(run, "epoch 1", "epoch 2")
    h.backend.exit(run, 0)
    assert h.reaches(run, S.COMPLETE) == S.COMPLETE
    assert h.history(run) == [*FULL, S.COMPLETE]
    assert h.output(run) == ["epoch 1", "epoch 2"]
    assert h.backend.saved[run] == h.backend.outputs[run]
    assert "Found 1 file to save (10B)" in h.notes(run)
    assert "Saved 1 file to runs/1" in h.notes(run)
    assert h.store.get_run(run).user_exit_code == 0
    assert h.backend.cleaned == [run]


def test_a_nonzero_exit_fails_the_run_after_saving(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.backend.exit(run, 3)
    assert h.reaches(run, S.FAILED) == S.FAILED
    assert h.history(run) == [*FULL, S.FAILED]
    assert h.store.get_run(run).user_exit_code == 3


def test_a_process_that_vanishes_ends_interrupted(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.backend.vanish(run)
    assert h.reaches(run, S.INTERRUPTED) == S.INTERRUPTED
    assert any("ended without an exit code" in n for n in h.notes(run))


def test_stop_sends_sigterm_and_saves(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.store.request_action(run, RunAction.STOP)
    h.engine.wake()
    assert h.reaches(run, S.STOPPED) == S.STOPPED
    assert h.backend.processes[run].signals == [signal.SIGTERM]
    assert h.history(run) == [*FULL, S.STOPPED]


def test_stop_kills_a_run_that_ignores_sigterm_after_the_grace_period(harness):
    h = harness(stop_grace_period=0.3)
    run = h.submit()
    h.running(run)
    h.backend.processes[run].ignores_sigterm = True
    h.store.request_action(run, RunAction.STOP)
    h.engine.wake()
    assert h.reaches(run, S.STOPPED) == S.STOPPED
    assert h.backend.processes[run].signals == [signal.SIGTERM, signal.SIGKILL]
    assert "Stopping: sent SIGTERM, SIGKILL in 0.3s" in h.notes(run)


def test_kill_skips_saving(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.backend.print(run, "last words")
    h.store.request_action(run, RunAction.KILL)
    h.engine.wake()
    assert h.reaches(run, S.KILLED) == S.KILLED
    assert h.history(run) == [S.MACHINE_REQUESTED, S.BUILDING, S.MOUNTING, S.RUNNING, S.KILLED]
    assert run not in h.backend.saved
    assert h.output(run) == ["last words"]  # every line is stored before the end
    assert h.store.get_run(run).user_exit_code == 128 + signal.SIGKILL


@pytest.mark.parametrize("action, final", [("stop", S.STOPPED), ("kill", S.KILLED)])
def test_a_queued_run_stopped_or_killed_never_starts(harness, action, final):
    h = harness(concurrency_limit=1)
    first, queued = h.submit(), h.submit()
    h.running(first)
    assert h.status(queued) == S.MACHINE_REQUESTED
    h.store.request_action(queued, RunAction(action))
    h.engine.wake()
    assert h.reaches(queued, final) == final
    assert h.history(queued) == [S.MACHINE_REQUESTED, final]
    assert queued not in h.backend.launches


def test_a_run_stopped_while_its_launch_is_in_flight_is_stopped_once_started(harness):
    h = harness()
    gate = h.backend.gate("launch").close()
    run = h.submit()
    h.until(gate.entered.is_set)
    h.store.request_action(run, RunAction.STOP)
    h.engine.wake()
    h.engine.tick()
    assert h.status(run) == S.MOUNTING  # a container being created is not cut off
    gate.opened.set()
    assert h.reaches(run, S.STOPPED) == S.STOPPED
    assert h.backend.processes[run].signals == [signal.SIGTERM]


def test_a_timeout_stops_the_run(harness):
    h = harness()
    run = h.submit(timeout_minutes=0.005)  # 0.3 s
    h.running(run)
    assert h.reaches(run, S.STOPPED) == S.STOPPED
    assert "Run timed out after 0.005 minutes: stopping" in h.notes(run)


def test_runs_queue_under_the_concurrency_limit_and_start_in_order(harness):
    h = harness(concurrency_limit=1)
    first, second = h.submit(), h.submit()
    h.running(first)
    h.engine.tick()
    assert h.status(second) == S.MACHINE_REQUESTED
    assert any("concurrency limit is 1" in n for n in h.notes(second))
    h.backend.exit(first, 0)
    h.running(second)
    assert h.status(first) == S.COMPLETE


def test_a_machine_type_waits_for_free_capacity(harness):
    h = harness()
    big = [h.submit(machine_type="CPU-big")]  # 4 CPUs: the whole host
    h.running(big[0])
    small = h.submit(machine_type="CPU")
    h.engine.tick()
    assert h.status(small) == S.MACHINE_REQUESTED
    assert "waiting for a CPU machine: none is free yet" in h.notes(small)
    h.backend.exit(big[0], 0)
    h.running(small)


CODE = CodeSpec(repository="project", commit="a" * 40, archive="b" * 64)


def test_code_and_mounts_are_staged_before_the_launch(harness):
    h = harness()
    run = h.submit(code=CODE, cwd="project", mounts=[Mount(resource="uploads/data")])
    h.running(run)
    notes = h.notes(run)
    assert "Warning: a warning" in notes
    assert f"Code: project at commit {'a' * 12}" in notes
    assert "Mounting uploads/data at /spell/project/data (fake)" in notes
    request = h.backend.processes[run].request
    assert request.code == CODE and [m.target for m in request.mounts] == ["/spell/project/data"]


@pytest.mark.parametrize(
    "step, error, final, note",
    [
        ("code", CodeFailed("no such commit"), S.BUILD_FAILED, "Code sync failed: no such commit"),
        ("mounts", MountFailed("uploads/x does not exist"), S.MOUNT_FAILED, "Mount failed: "),
        ("build six", BuildFailed("no such package"), S.BUILD_FAILED, "Build failed: no such"),
    ],
)
def test_a_failing_step_ends_the_run_with_its_reason(harness, step, error, final, note):
    h = harness()
    h.backend.failures[step] = error
    run = h.submit(
        code=CODE, cwd="project", mounts=[Mount(resource="uploads/x")], pip_packages=["six"]
    )
    assert h.reaches(run, final) == final
    assert any(n.startswith(note) for n in h.notes(run)), h.notes(run)
    assert run not in h.backend.launches
    assert run in h.backend.cleaned


def test_a_launch_that_keeps_failing_fails_the_run_after_five_tries(harness):
    h = harness()
    h.backend.broken["launch"] = RuntimeError("Docker could not create the container")
    run = h.submit()
    assert h.reaches(run, S.FAILED) == S.FAILED
    assert any("could not advance this run" in n for n in h.notes(run))


def test_a_failed_save_is_tried_again(harness):
    h = harness()
    h.backend.failures["save"] = OSError("the bucket did not answer")
    run = h.submit()
    h.running(run)
    h.backend.outputs[run] = [OutputFile("/w/a", "a", 1)]
    h.backend.exit(run, 0)
    assert h.reaches(run, S.COMPLETE) == S.COMPLETE
    assert h.backend.saved[run] == h.backend.outputs[run]


def test_two_long_builds_do_not_hold_up_another_runs_save(harness):
    h = harness(build_workers=2)
    gates = [h.backend.gate(f"build {p}").close() for p in ("six", "attrs")]
    building = [h.submit(pip_packages=[p]) for p in ("six", "attrs")]
    h.until(lambda: all(g.entered.is_set() for g in gates))  # both builds hold both builders
    saver = h.submit()
    h.running(saver)
    h.backend.outputs[saver] = [OutputFile("/w/out", "out", 1)]
    h.backend.exit(saver, 0)
    assert h.reaches(saver, S.COMPLETE) == S.COMPLETE
    assert [h.status(r) for r in building] == [S.BUILDING, S.BUILDING]
    for gate in gates:
        gate.opened.set()
    for run in building:
        h.running(run)
    assert h.backend.events[0] == f"saved {saver}"  # the save finished before either build


def test_output_is_stored_in_batches_in_order(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    batches = []
    h.store.log_listeners.append(lambda run_id, rows: batches.append(len(rows)))
    lines = [f"line {i}" for i in range(20_000)]
    for start in range(0, len(lines), 1000):
        h.backend.print(run, *lines[start : start + 1000])
    h.backend.exit(run, 0)
    h.reaches(run, S.COMPLETE)
    assert h.output(run) == lines
    assert len(batches) < 200  # transactions, not one per line


def test_a_new_leader_reattaches_and_reads_on_from_the_stored_cursor(harness):
    first = harness()
    run = first.submit()
    first.running(run)
    first.backend.print(run, "before")
    first.until(lambda: first.output(run) == ["before"])
    first.close()  # the server went away; the process runs on
    second = harness()
    second.backend.processes = first.backend.processes  # the same machine
    second.backend.print(run, "after")
    second.backend.exit(run, 0)
    assert second.reaches(run, S.COMPLETE) == S.COMPLETE
    assert second.output(run) == ["before", "after"]  # nothing lost, nothing twice


def test_a_read_of_the_output_that_fails_is_taken_up_from_the_stored_cursor(harness):
    h = harness()
    run = h.submit()
    h.running(run)
    h.backend.print(run, "one")
    h.until(lambda: h.output(run) == ["one"])
    h.backend.failures["follow_output"] = OSError("the node did not answer")
    h.backend.print(run, "two", "three")
    h.backend.exit(run, 0)
    h.reaches(run, S.COMPLETE)
    assert h.output(run) == ["one", "two", "three"]  # nothing lost, nothing twice


def test_a_store_error_during_the_leftover_sweep_deletes_nothing(tmp_path, monkeypatch):
    h = Harness(tmp_path, backend_class=LocalBackend)
    try:
        run = h.submit()
        h.engine.tick()  # it is active: its working folder stays
        kept = h.backend.workdir(run)
        kept.mkdir(parents=True, exist_ok=True)
        ended = h.backend.workdir(99)  # no such run: a leftover
        ended.mkdir(parents=True)

        def store_down():
            raise OSError("database is locked")

        monkeypatch.setattr(h.store, "active_runs", store_down)
        h.engine.sweep_leftovers()
        assert kept.exists() and ended.exists()
        monkeypatch.undo()
        h.engine.sweep_leftovers()
        assert kept.exists() and not ended.exists()
    finally:
        h.close()


def test_the_engine_sleeps_when_nothing_changes(harness):
    """No pass and no status call while runs run quietly: passes come from events."""
    h = harness()
    runs = [h.submit() for _ in range(3)]
    for run in runs:
        h.running(run)
    calls = []
    original = h.backend.status
    h.backend.status = lambda handle: calls.append(handle) or original(handle)
    h.engine.tick()
    h.engine.wait_for_work(0.3)
    h.engine.tick()
    assert calls == []  # nothing was due
    h.backend.exit(runs[0], 0)
    h.reaches(runs[0], S.COMPLETE)
    assert {c["fake"] for c in calls} == {runs[0]}  # only the run its event named


@pytest.mark.parametrize("gap_ms", [0, 300, 2500])
def test_the_docker_log_cursor_is_the_same_read_whole_or_reopened_anywhere(gap_ms):
    """After a restart the Docker backend reopens the log from the stored cursor's `since`
    and skips the entries it counted: wherever the cut falls (bursts within one second
    included), it ends at the cursor of one unbroken read."""
    from spell_jupyter.backends.docker import _Cursor

    entries = [
        (100 * 10**9 + i * gap_ms * 10**6, "stderr" if i % 3 == 0 else "stdout") for i in range(40)
    ]
    whole = _Cursor.parse("")
    for ts, stream in entries:
        whole.add(ts, stream)
    for cut in range(len(entries)):
        before = _Cursor.parse("")
        for ts, stream in entries[:cut]:
            before.add(ts, stream)
        after = _Cursor.parse(before.dumps())
        skip = dict(after.counts)
        taken = []
        for ts, stream in (e for e in entries if e[0] >= after.since * 10**9):
            if skip[stream]:
                skip[stream] -= 1
                after.seen(ts, stream)
            else:
                after.add(ts, stream)
                taken.append((ts, stream))
        assert taken == entries[cut:]  # nothing twice, nothing lost
        assert after.dumps() == whole.dumps()


def test_backends_are_found_by_their_entry_point_name_or_class():
    from spell_jupyter.backends import backend_named, backend_names
    from spell_jupyter.backends.docker import DockerBackend

    assert {"docker", "local"} <= set(backend_names())
    assert backend_named("docker") is DockerBackend
    assert backend_named("local") is LocalBackend
    assert backend_named("fake_backend.FakeBackend") is FakeBackend
    with pytest.raises(ValueError, match=r"no backend named 'k8s' .*known: auto, docker, local"):
        backend_named("k8s")
    with pytest.raises(ValueError, match="is not a Backend class"):
        backend_named("spell_jupyter.models.RunSpec")


def test_a_queued_run_starts_as_soon_as_a_slot_frees(harness):
    """Driven as the engine's loop drives itself (a pass, then asleep until woken or due):
    the end of a run wakes the runs waiting for its slot, with no reconcile to wait for."""
    h = harness(concurrency_limit=1, reconcile_interval=3600)
    runs = [h.submit() for _ in range(3)]
    end = time.monotonic() + 10
    exited: set[int] = set()
    while True:
        deadline = h.engine.tick()
        for run in runs:
            if run not in exited and h.status(run) == S.RUNNING:
                h.backend.exit(run, 0)
                exited.add(run)
        if all(h.status(run) == S.COMPLETE for run in runs):
            break
        assert time.monotonic() < end, f"the engine slept; statuses {h.statuses()}"
        h.engine.wait_for_work(min(deadline, end) - time.monotonic())


def test_a_local_workflow_master_that_stops_reporting_ends_interrupted(harness):
    h = harness(local_master_timeout=0.3)
    master = h.submit("python pipeline.py", kind="workflow", local=True)
    h.reaches(master, S.RUNNING)
    assert h.engine.held_allocations() == []  # it holds no machine
    h.reaches(master, S.INTERRUPTED)
    assert any("stopped reporting" in n for n in h.notes(master))
    assert h.backend.launches == []  # nothing of it ran on this host


def test_a_bayesian_search_proposes_points_inside_every_kind_of_range(harness):
    """Each proposal lies in its range and has its type, reverse_log and int included; the
    search makes its full count of runs, parallel_runs at a time, and holds no machine."""
    from spell_jupyter.search_spec import SearchSpec

    h = harness()
    search = SearchSpec(
        type="bayesian",
        params={
            "lr": {"min": 0.001, "max": 1.0, "scaling": "reverse_log"},
            "layers": {"min": 1, "max": 8, "scaling": "log", "type": "int"},
            "act": {"values": ["relu", "tanh"]},
        },
        num_runs=6,
        parallel_runs=2,
        metric="loss",
    )
    sid = h.submit("train --lr :lr: --layers :layers: --act :act:", kind="hyper", search=search)

    def finish_running() -> bool:
        for run in h.store.list_runs(search_id=sid, limit=100).runs:
            if run.status == S.RUNNING:
                h.backend.exit(run.id, 0)
        active = [
            r for r in h.store.list_runs(search_id=sid, limit=100).runs if not r.status.is_final
        ]
        assert len(active) <= 2
        return h.status(sid) == S.COMPLETE

    h.until(finish_running, timeout=60)
    runs = h.store.list_runs(search_id=sid, limit=100).runs
    assert len(runs) == 6
    for run in runs:
        point = run.spec.hyper_params
        assert 0.001 <= point["lr"] <= 1.0 and isinstance(point["lr"], float)
        assert 1 <= point["layers"] <= 8 and isinstance(point["layers"], int)
        assert point["act"] in ("relu", "tanh")
        assert (
            run.command
            == f"train --lr {point['lr']} --layers {point['layers']} --act {point['act']}"
        )


def test_a_run_another_backend_launched_is_left_for_a_leader_with_that_backend(harness):
    """A server of the same store started with another backend leads: it leaves the run as
    it is (saying why) instead of driving it with the wrong backend."""

    class OtherBackend(FakeBackend):
        name = "other"

    first = harness()
    run = first.submit()
    first.running(run)
    first.close()
    second = harness(backend_class=OtherBackend)
    said = "it was started by the fake backend, and the server leading now runs the other"
    second.until(lambda: any(said in n for n in second.notes(run)))
    second.engine.tick()
    assert second.status(run) == S.RUNNING
    assert second.backend.processes == {}  # nothing asked of the wrong backend
    second.close()
    third = harness()
    third.backend.processes = first.backend.processes  # the same machine
    third.backend.exit(run, 0)
    assert third.reaches(run, S.COMPLETE) == S.COMPLETE


def test_a_run_wanting_an_environment_where_no_images_are_built_fails_saying_so(harness):
    """A cluster's node without a Docker Engine got a run with --pip: it ends build_failed
    with the reason, never runs without its packages."""

    class ProcessesOnly(FakeBackend):
        def images_for(self, placed: dict):
            return None

    h = harness(backend_class=ProcessesOnly)
    run = h.submit(pip_packages=["six"])
    assert h.reaches(run, S.BUILD_FAILED) == S.BUILD_FAILED
    assert any("runs commands as local processes" in n for n in h.notes(run))
    assert run not in h.backend.processes
