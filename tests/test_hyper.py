"""Hyperparameter searches: a grid from Spell's Python API, a bayesian search that beats random
points on a toy objective and survives kill -9 of its server, and the bad inputs."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
from helpers import configured_server

import spell.client
from spell.api.models import RangeSpec, ValueSpec

# A toy objective with its minimum at x = 3 (and y = 1): the run sends it as "loss".
OBJECTIVE = (
    'python3 -c "from spell.metrics import send_metric; '
    "send_metric('loss', (:x: - 3.0) ** 2 + (:y: - 1.0) ** 2)\""
)
ROOMY = {"host_capacity": {"cpus": 8, "memory": "32GiB"}}


def test_a_grid_search_from_the_api_makes_a_run_per_point(served):
    client = spell.client.from_environment(served.path)
    search = client.hyper.new_grid_search(
        {"rate": ValueSpec([0.1, 0.2, 0.3]), "layers": ValueSpec([2, 4])},
        command="echo rate=:rate: layers=:layers:",
        labels=["sweep"],
    )
    search.wait(timeout=120)
    assert search.status == "complete"
    assert len(search.runs) == 6
    assert sorted(r.command for r in search.runs) == sorted(
        f"echo rate={r} layers={n}" for r in (0.1, 0.2, 0.3) for n in (2, 4)
    )
    assert all(r.status == "complete" and r.labels == ["sweep"] for r in search.runs)
    assert all(r.search_id == search.id for r in search.runs)
    described = served.spell("hyper", "describe", str(search.id)).stdout
    assert all(f"{r.id}" in described for r in search.runs)
    assert "rate" in described and "layers" in described


def test_a_bayesian_search_beats_random_points_and_survives_kill_9(serve, tmp_path):
    served = configured_server(serve, tmp_path, **ROOMY)
    client = served.client()
    params = {"x": RangeSpec(-10, 10), "y": RangeSpec(-10, 10)}
    search = client.hyper.new_bayesian_search(
        params, num_runs=8, parallel_runs=2, metric="loss", metric_agg="last", command=OBJECTIVE
    )
    search.search_run.wait_status("running")
    for entry in search.search_run.logs(follow=True):  # a few runs made, then kill -9
        if entry.text.startswith("Run ") and "x=" in entry.text:
            break
    served.kill_server()
    served.start_server()
    client = served.client()
    search = client.hyper.get(search.id)
    search.wait(timeout=300)
    assert search.status == "complete"
    assert len(search.runs) == 8 and all(r.status == "complete" for r in search.runs)
    points = [r.raw["spec"]["hyper_params"] for r in search.runs]
    assert len({(p["x"], p["y"]) for p in points}) == 8  # no point proposed twice

    random_search = client.hyper.new_random_search(params, 8, command=OBJECTIVE)
    random_search.wait(timeout=300)

    def distance(point) -> float:
        return ((point["x"] - 3) ** 2 + (point["y"] - 1) ** 2) ** 0.5

    best = min(distance(p) for p in points)
    median_random = statistics.median(
        distance(r.raw["spec"]["hyper_params"]) for r in random_search.runs
    )
    assert best < median_random
    assert "best: run" in search.search_run.status_message
    exported = served.spell("hyper", "download-metrics", str(search.id)).stdout
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[0] == ["run_id", "metric_name", "timestamp", "index", "value"]
    assert {int(r[0]) for r in rows[1:]} == {r.id for r in search.runs}


def test_stop_of_a_search_stops_its_runs_and_makes_no_more(serve, tmp_path):
    served = configured_server(serve, tmp_path, **ROOMY)
    client = served.client()
    search = client.hyper.new_random_search(
        {"x": RangeSpec(0, 1)}, 20, command="echo :x:; sleep 60"
    )
    first = client.runs.list(number=1, kinds=["run"])
    while not first:
        search.search_run.wait_status("running")
        first = client.runs.list(number=1, kinds=["run"])
    result = served.spell("hyper", "stop", str(search.id))
    assert result.returncode == 0, result.stderr
    search.wait(timeout=120)
    assert search.status == "stopped"
    assert all(r.status.startswith(("stopped", "killed")) for r in search.runs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grid", "--param", "a=", "echo :a:"], "a has no values"),
        (["grid", "--param", "a=1", "echo :a: :b:"], "no --param b="),
        (["random", "-n", "2", "--param", "lr=0.1:0.01", "echo :lr:"], "above its max"),
        (["random", "-n", "2", "--param", "lr=0:1:log", "echo :lr:"], "needs a min above 0"),
        (["random", "-n", "2", "--param", "lr=0:1:cubic", "echo :lr:"], "scaling is one of"),
        (["bayesian", "-n", "2", "--param", "x=0:1", "echo :x:"], "--metric"),
        (
            [
                "grid",
                "--param",
                "a=" + ",".join(map(str, range(40))),
                "--param",
                "b=" + ",".join(map(str, range(30))),
                "echo :a: :b:",
            ],
            "more than 1000 need confirming (--yes)",
        ),
    ],
)
def test_bad_searches_create_nothing(served, args, message):
    client = served.client()
    before = client.transport.json("GET", "runs")["total"]
    result = served.spell("hyper", *args[:1], "-f", *args[1:])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert client.transport.json("GET", "runs")["total"] == before


def test_a_parameter_the_command_never_uses_is_a_warning(served):
    result = served.spell("hyper", "grid", "-f", "--param", "a=1", "--param", "b=2", "echo :a:")
    assert result.returncode == 0, result.stderr
    assert "--param b is not used by the command" in result.stderr
