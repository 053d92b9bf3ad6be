"""Run lifecycles against real server processes: stop vs kill, surviving a kill -9 of the
server, and concurrent submission under a concurrency limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone

from helpers import user_lines, wait_for_line


def test_stop_saves_outputs_and_kill_saves_nothing(any_backend):
    served = any_backend
    client = served.client()
    trap = (
        "trap 'echo caught >> stopped.txt; exit 0' TERM; echo partial > work.txt; "
        "echo ready; while true; do sleep 0.05; done"
    )
    stopped = client.runs.new(command=trap)
    killed = client.runs.new(command=trap)
    wait_for_line(stopped, "ready")
    wait_for_line(killed, "ready")

    stopped.stop()
    killed.kill()
    stopped.wait_status("stopped")
    killed.wait_status("killed")

    assert {e["name"] for e in client.resources.ls(f"runs/{stopped.id}")} == {
        "stopped.txt",
        "work.txt",
    }
    saved = [e.text for e in stopped.logs() if e.status_event]
    assert "Retrieving modified or new files from the run" in saved
    assert [s["status"] for s in stopped.status_history][-3:] == ["saving", "pushing", "stopped"]

    killed.refresh()
    assert killed.user_exit_code == 137
    assert "saving" not in [s["status"] for s in killed.status_history]
    try:
        client.resources.ls(f"runs/{killed.id}")
        raise AssertionError("a killed run must have no outputs")
    except Exception as exc:
        assert getattr(exc, "status_code", None) == 404
    # its working directory is gone too
    assert not (served.path / "work" / str(killed.id)).exists()


def test_stop_escalates_to_sigkill_after_the_grace_period(serve):
    home = serve(SPELL_STOP_GRACE_PERIOD="0.5")
    client = home.client()
    run = client.runs.new(command="trap '' TERM; echo ready; while true; do sleep 0.05; done")
    wait_for_line(run, "ready")
    run.stop()
    run.wait_status("stopped", timeout=30)
    assert run.user_exit_code == 137


def test_stop_of_a_queued_run_never_starts_it(serve):
    home = serve(SPELL_CONCURRENCY_LIMIT="1")
    client = home.client()
    blocker = client.runs.new(command="echo ready; while true; do sleep 0.05; done")
    wait_for_line(blocker, "ready")
    queued = client.runs.new(command="echo should-not-run > x.txt")
    assert queued.status == "machine_requested"
    notes = (e.text for e in queued.logs(follow=True) if e.status_event)
    assert any("the concurrency limit is 1" in text for text in notes)
    queued.kill()
    queued.wait_status("killed")
    blocker.kill()
    blocker.wait_status("killed")
    assert [s["status"] for s in queued.status_history] == ["machine_requested", "killed"]
    assert user_lines(queued) == []


def test_runs_survive_kill_9_of_their_server(any_backend):
    served = any_backend
    client = served.client()
    script = (
        "echo start; for i in $(seq 1 25); do echo line $i; sleep 0.1; done; "
        "echo done > out-$SPELL_RUN_ID.txt"
    )
    runs = [client.runs.new(command=script) for _ in range(3)]
    for run in runs:
        wait_for_line(run, "line 2")

    served.kill_server()
    killed_at = datetime.now(timezone.utc)
    served.start_server()  # a fresh process on the same data directory
    restarted_at = datetime.now(timezone.utc)

    client = served.client()
    expected = ["start"] + [f"line {i}" for i in range(1, 26)]
    during_outage = 0
    for old in runs:
        run = client.runs.get(old.id)
        run.wait_status("complete", timeout=60)
        assert user_lines(run) == expected  # every line exactly once, in order
        offsets = [e.offset for e in run.logs()]
        assert offsets == list(range(len(offsets)))
        during_outage += sum(
            1 for e in run.logs() if not e.status_event and killed_at < e.timestamp < restarted_at
        )
        assert [e["name"] for e in client.resources.ls(f"runs/{run.id}")] == [f"out-{run.id}.txt"]
    assert during_outage > 0, "no line was printed while the server was down"


SUBMITTER = textwrap.dedent(
    """
    import spell.client
    client = spell.client.from_environment()
    ids = [client.runs.new(command="sleep 0.1").id for _ in range(10)]
    print(" ".join(map(str, ids)))
    """
)


def test_concurrent_submissions_get_unique_ascending_ids_and_respect_the_limit(serve):
    home = serve(SPELL_CONCURRENCY_LIMIT="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER], env=home.env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    per_process = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        per_process.append([int(x) for x in out.split()])

    all_ids = [i for ids in per_process for i in ids]
    assert len(all_ids) == 40 and sorted(all_ids) == list(range(1, 41))
    for ids in per_process:
        assert ids == sorted(ids)  # each process saw ascending IDs

    client = home.client()
    runs = []
    for run_id in range(1, 41):
        run = client.runs.get(run_id)
        run.wait_status("complete", timeout=120)
        runs.append(run)
    # IDs ascend in the order the server accepted the runs
    assert [r.created_at for r in runs] == sorted(r.created_at for r in runs)

    # occupancy: from leaving machine_requested to the final status
    events = []
    starts = []
    for run in runs:
        left_queue = next(s["at"] for s in run.status_history if s["status"] != "machine_requested")
        starts.append((left_queue, run.id))
        events += [(left_queue, 1), (run.status_history[-1]["at"], -1)]
    busy = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        busy += delta
        peak = max(peak, busy)
    assert peak == 2
    assert [run_id for _, run_id in sorted(starts)] == list(range(1, 41))  # FIFO
