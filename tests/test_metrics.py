"""Code inside a run uses Spell (its own token over the server's socket), sends metrics that
clients read and follow, and stop conditions stop runs. Real servers, real runs."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest
from conftest import SPELL_ARGV, docker_env
from helpers import notes, user_lines, wait_for_line

from spell_jupyter.backends.run_api import socket_url
from spell_jupyter.client.errors import APIError
from spell_jupyter.client.transport import Transport
from spell_jupyter.paths import run_api_dir
from spell_jupyter.store import RunStore, connect_database


def script(body: str) -> str:
    """A shell command that writes `body` to s.py and runs it with the run's Python."""
    return f"cat > s.py <<'EOF'\n{textwrap.dedent(body)}\nEOF\npython3 s.py"


def run_token(home, run_id: int, scope: str = "run") -> str:
    """A token issued as the engine issues one, for a test that speaks REST as a run."""
    store = RunStore(connect_database(f"sqlite:///{home.path / 'spell.db'}"))
    return store.issue_token(run_id, scope)


def as_run(home, token: str) -> Transport:
    return Transport(socket_url(run_api_dir(home.path)), token)


SELF = """
    import os, spell.client
    client = spell.client.from_environment()
    me = client.runs.get(int(os.environ["SPELL_RUN_ID"]))
    print("me", me.id, me.status, flush=True)
    try:
        client.runs.list()
    except Exception as exc:
        print("list refused:", exc)
    open("token.txt", "w").write(os.environ["SPELL_TOKEN"])
"""


def test_code_inside_a_run_reaches_its_server_with_a_token_of_its_own(any_backend, tmp_path):
    home = any_backend
    client = home.client()
    run = client.runs.new(command=script(SELF))
    run.wait_status("complete", timeout=120)
    lines = user_lines(run)
    assert f"me {run.id} running" in lines
    assert any(
        line.startswith("list refused:") and "only a workflow's master run" in line
        for line in lines
    )
    client.resources.cp(f"runs/{run.id}/token.txt", str(tmp_path))
    token = (tmp_path / "token.txt").read_text()
    assert token.startswith(f"spellrun-{run.id}-")
    # The run has ended: its token is dead; it was never the server's own either.
    with pytest.raises(APIError) as refused:
        as_run(home, token).json("GET", f"runs/{run.id}")
    assert refused.value.status_code == 403 and "has ended" in str(refused.value)
    server = home.server_info()
    with pytest.raises(APIError) as tcp:
        Transport(server["url"], token).json("GET", f"runs/{run.id}")
    assert tcp.value.status_code == 403


def test_a_runs_token_may_touch_its_own_run_alone(served):
    client = served.client()
    first = client.runs.new(command="echo ready; sleep 60")
    other = client.runs.new(command="echo ready; sleep 60")
    wait_for_line(first, "ready")
    wait_for_line(other, "ready")
    try:
        api = as_run(served, run_token(served, first.id))
        assert api.json("GET", f"runs/{first.id}")["id"] == first.id
        assert api.json("GET", "")["version"]  # the API's description: any run may read it
        for method, path, status in [
            ("GET", f"runs/{other.id}", 404),  # another run is not there for it
            ("POST", f"runs/{other.id}/metrics", 403),
            ("POST", f"runs/{first.id}/stop", 403),  # only a workflow's master acts on runs
            ("POST", "runs", 403),
            ("GET", "resources", 403),
            ("PUT", "links/x", 403),
            ("DELETE", f"resources/runs/{first.id}", 403),
        ]:
            with pytest.raises(APIError) as refused:
                api.json(method, path, json={"metrics": [{"name": "x", "value": 1}]})
            assert refused.value.status_code == status, (method, path, refused.value)
        with pytest.raises(APIError) as bad:
            as_run(served, "spellrun-1-forged").json("GET", f"runs/{first.id}")
        assert bad.value.status_code == 403
    finally:
        first.kill()
        other.kill()


SENDER = """
    import time
    from spell.metrics import send_metric
    for i in range(10000):
        send_metric("loss", 1000.0 / (i + 1))
    send_metric("phase", "trained")
    print("sent", flush=True)
    while True:
        time.sleep(0.05)
"""


def test_ten_thousand_values_arrive_complete_in_order_and_are_followed_live(any_backend):
    home = any_backend
    client = home.client()
    run = client.runs.new(command=script(SENDER))
    seen = []
    for _, index, value in run.metrics("loss", follow=True):
        seen.append((index, value))
        if len(seen) == 10000:
            break
    run.refresh()
    assert run.status == "running"  # followed while it runs
    assert [i for i, _ in seen] == list(range(10000))
    assert seen[-1][1] == pytest.approx(0.1)
    cli = subprocess.Popen(
        [*SPELL_ARGV, "metrics", "-f", str(run.id), "phase"],
        env=home.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout.readline().split()[-2:] == ["0", "trained"]
    run.stop()
    assert cli.wait(timeout=60) == 0  # -f ends with the run
    summary = {m["name"]: m for m in run.metric_names()}
    assert summary["loss"]["count"] == 10000 and summary["loss"]["index"] == 9999
    table = home.spell("metrics", str(run.id))
    assert "loss" in table.stdout and "10000" in table.stdout and "trained" in table.stdout
    csv_out = home.spell("metrics", "--csv", str(run.id), "loss").stdout.splitlines()
    assert csv_out[0] == "run_id,metric_name,timestamp,index,value"
    assert len(csv_out) == 10001 and csv_out[1].startswith(f"{run.id},loss,")


def test_send_metric_outside_a_run_does_nothing(monkeypatch):
    from spell_jupyter.client import metrics

    for name in ("SPELL_RUN_ID", "SPELL_BASE_URL", "SPELL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(metrics, "_sender", None)
    metrics.send_metric("loss", 1.0)
    assert metrics._sender is None


BAD_VALUES = """
    import warnings
    from spell.metrics import send_metric
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        send_metric("", 1)
        send_metric("x" * 200, 1)
        send_metric("nan", float("nan"))
        send_metric("inf", float("inf"))
        send_metric("list", [1, 2])
        send_metric("spell/cpu_percent", 5)
        send_metric("ok", 2.5)
        send_metric("ok", "a text", index=7)
    print("warnings", len(caught))
    for w in caught:
        print("warned:", w.message)
"""


def test_bad_values_are_warnings_never_exceptions(served):
    client = served.client()
    run = client.runs.new(command=script(BAD_VALUES))
    run.wait_status("complete", timeout=60)
    lines = user_lines(run)
    assert "warnings 6" in lines
    assert any("must be finite" in line for line in lines)
    assert any("a list is not sent" in line for line in lines)
    values = list(run.metrics("ok"))
    assert [(i, v) for _, i, v in values] == [(0, 2.5), (7, "a text")]
    assert {m["name"] for m in run.metric_names()} == {"ok"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metrics": [{"name": "", "value": 1}]}, "metric name is empty"),
        ({"metrics": [{"name": "x" * 129, "value": 1}]}, "at most 128"),
        ({"metrics": [{"name": "a", "value": True}]}, "a number or a text"),
        ({"metrics": [{"name": "a", "value": [1]}]}, "a number or a text"),
        ({"metrics": [{"name": "a", "value": None}]}, "a number or a text"),
        ({"metrics": [{"name": "a", "value": 1, "index": -1}]}, "greater than or equal"),
        ({"metrics": [{"name": "spell/x", "value": 1}]}, "the server's own"),
        ({"metrics": [{"name": "a", "value": "x" * 5000}]}, "at most 4096"),
        ({"metrics": [{"name": "a", "value": 1, "extra": 1}]}, "unknown field"),
        ({"metrics": [{"name": "a", "value": 1}] * 10001}, "at most 10000"),
    ],
)
def test_bad_metric_bodies_are_refused_and_store_nothing(served, body, message):
    client = served.client()
    run = client.runs.new(command="echo ready; sleep 60")
    try:
        with pytest.raises(APIError) as refused:
            client.transport.json("POST", f"runs/{run.id}/metrics", json=body)
        assert refused.value.status_code == 400
        assert message in str(refused.value)
        assert run.metric_names() == []
    finally:
        run.kill()


def test_nan_in_json_is_refused(served):
    client = served.client()
    run = client.runs.new(command="echo ready; sleep 60")
    try:
        raw = b'{"metrics": [{"name": "a", "value": NaN}]}'
        with pytest.raises(APIError) as refused:
            client.transport.request(
                "POST",
                f"runs/{run.id}/metrics",
                content=raw,
                headers={"Content-Type": "application/json"},
            )
        assert refused.value.status_code == 400 and "finite" in str(refused.value)
    finally:
        run.kill()


def test_metrics_of_an_ended_run_are_refused(served):
    client = served.client()
    run = client.runs.new(command="true")
    run.wait_status("complete")
    with pytest.raises(APIError) as refused:
        client.transport.json(
            "POST", f"runs/{run.id}/metrics", json={"metrics": [{"name": "a", "value": 1}]}
        )
    assert refused.value.status_code == 409


FALLING = """
    import time
    from spell.metrics import send_metric
    open("model.txt", "w").write("weights")
    for i in range(100000):
        send_metric("loss", 100.0 / (i + 1))
        time.sleep(0.001)
"""


def test_a_stop_condition_stops_the_run_with_its_outputs_saved(any_backend):
    home = any_backend
    client = home.client()
    run = client.runs.new(command=script(FALLING), stop_conditions=["loss < 2:10"])
    run.wait_status("stopped", timeout=120)
    fired = [n for n in notes(run) if n.startswith("Stop condition")]
    assert len(fired) == 1 and "'loss < 2:10' met" in fired[0]
    assert [e["name"] for e in client.resources.ls(f"runs/{run.id}")] == ["model.txt", "s.py"]
    last = [v for _, _, v in run.metrics("loss")]
    assert any(v < 2 for v in last)


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (["loss <"], "malformed stop condition"),
        (["loss < abc"], "'abc' is not a number"),
        (["loss ~ 1"], "malformed stop condition"),
        (["loss < nan"], "must be finite"),
        (["a < 1"] * 6, "at most 5"),
    ],
)
def test_malformed_stop_conditions_create_no_run(served, conditions, message):
    client = served.client()
    before = client.transport.json("GET", "runs")["total"]
    with pytest.raises(APIError) as refused:
        client.transport.json(
            "POST", "runs", json={"command": "true", "stop_conditions": conditions}
        )
    assert refused.value.status_code == 400 and message in str(refused.value)
    flags = [arg for c in conditions for arg in ("--stop-condition", c)]
    result = served.spell("run", "-f", *flags, "true")
    assert result.returncode == 2 and message in result.stderr
    assert client.transport.json("GET", "runs")["total"] == before


@pytest.mark.docker
def test_container_runs_record_hardware_metrics(serve, tmp_path):
    config = tmp_path / "jupyter-config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"RunEngine": {"hardware_interval": 0.5}})
    )
    home = serve(JUPYTER_CONFIG_DIR=str(config), **docker_env())
    client = home.client()
    run = client.runs.new(command="echo ready; while true; do :; done")  # one busy CPU
    wait_for_line(run, "ready")
    busy = []
    for _, _, value in run.metrics("spell/cpu_percent", follow=True):
        busy.append(value)
        if len(busy) == 3:
            break
    run.kill()
    assert max(busy) > 20
    memory = [v for _, _, v in run.metrics("spell/memory_mib")]
    assert memory and all(0 < v < 1024 for v in memory)


@pytest.mark.docker
def test_an_images_own_pythonpath_is_kept_beside_the_client(docker_served, tmp_path):
    import docker
    from conftest import BASE_IMAGE

    context = tmp_path / "image"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "RUN mkdir -p /opt/app && echo 'ANSWER = 42' > /opt/app/mymod.py\n"
        "ENV PYTHONPATH=/opt/app\n"
    )
    engine = docker.from_env()
    tag = "spell-test/pythonpath:latest"
    engine.images.build(path=str(context), tag=tag, rm=True)
    try:
        client = docker_served.client()
        run = client.runs.new(
            command="python3 -c 'import mymod, spell.client; print(\"answer\", mymod.ANSWER)'",
            docker_image=tag,
        )
        run.wait_status("complete", timeout=120)
        assert "answer 42" in user_lines(run)
    finally:
        engine.images.remove(tag, force=True)


STEADY = """
    import time
    from spell.metrics import send_metric
    print("sending", flush=True)
    for i in range(300):
        send_metric("step", i)
        time.sleep(0.02)
    print("sent all", flush=True)
"""


def test_metrics_sent_across_a_kill_9_of_the_server_all_arrive(any_backend):
    """The socket's folder is mounted, not the socket: a restarted leader binds it again and
    the run's sender delivers what it kept meanwhile."""
    home = any_backend
    client = home.client()
    run = client.runs.new(command=script(STEADY))
    for _, index, _ in run.metrics("step", follow=True):
        if index >= 20:
            break
    home.kill_server()
    home.start_server()
    client = home.client()
    run = client.runs.get(run.id)
    run.wait_status("complete", timeout=120)
    assert [index for _, index, _ in run.metrics("step")] == list(range(300))
