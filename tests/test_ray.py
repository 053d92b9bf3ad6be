"""The Ray backend: runs placed by Ray's scheduler on the nodes of a local two-node cluster
(started by the tests), SpellFS on a local S3 server, and for a team two spell servers on one
PostgreSQL store."""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
import time
import uuid

import pytest
from conftest import make_home
from helpers import notes, wait_for_line, wait_for_note

pytestmark = pytest.mark.timeout(600)

CLUSTER_TYPES = {
    "CPU": {"cpus": 1, "memory": "128MiB"},
    "A": {"cpus": 1, "memory": "128MiB"},  # node a declares spell-A
    "T4": {"cpus": 1, "memory": "128MiB", "gpu": "T4", "gpus": 1},  # node b declares spell-T4
    "Huge": {"cpus": 64, "memory": "1GiB"},
    "Lab": {"cpus": 1, "memory": "1GiB"},  # room for a JupyterLab and its kernel, on any node
}


def cluster_home(
    tmp_path, ray_cluster, s3_server, name: str = "spell-home", containers=False, **env: str
):
    """A data directory whose server places runs on the cluster, SpellFS in a fresh bucket;
    runs are local processes of the nodes, or with `containers` Docker containers there."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    bucket = s3_server.new_bucket(f"spell-{uuid.uuid4().hex[:12]}")
    env = {**ray_cluster.env(), **s3_server.env, "SPELL_FS_ROOT": f"s3://{bucket}/fs", **env}
    home = make_home(folder, **env)
    home.path.mkdir(parents=True, exist_ok=True)
    (home.path / "config.json").write_text(
        json.dumps(
            {
                "SpellJupyter": {"machine_types": CLUSTER_TYPES},
                "RayBackend": {"node_containers": containers},
            }
        )
    )
    return home


@pytest.fixture
def on_cluster(tmp_path, ray_cluster, s3_server):
    home = cluster_home(tmp_path, ray_cluster, s3_server)
    home.start_server()
    yield home
    home.spell("server", "stop")


def node_of(run, ray_cluster) -> str:
    run.refresh()
    return ray_cluster.node_named(run.raw["allocation"]["node"])


def test_runs_land_on_both_nodes_and_a_t4_run_waits_for_the_t4_node(
    on_cluster, ray_cluster, tmp_path
):
    spell = on_cluster.client()
    go = tmp_path / "go"
    hold = f"echo started; while [ ! -f {go} ]; do sleep 0.05; done"
    # four runs of one CPU on two nodes of two CPUs: Ray's scheduler fills both
    cpu_runs = [spell.runs.new(command=hold) for _ in range(4)]
    for run in cpu_runs:
        wait_for_line(run, "started")
    assert sorted(node_of(r, ray_cluster) for r in cpu_runs) == ["a", "a", "b", "b"]
    go.touch()
    for run in cpu_runs:
        run.wait_status("complete", timeout=60)
    go.unlink()

    first = spell.runs.new(command=f"echo gpus=$CUDA_VISIBLE_DEVICES; {hold}", machine_type="T4")
    assert wait_for_line(first, "gpus=") == "gpus=0"  # the node's (fake) GPU, as Ray gave it
    assert node_of(first, ray_cluster) == "b"
    second = spell.runs.new(command="echo second", machine_type="t4")
    wait_for_note(second, "waiting for a T4 machine")
    second.refresh()
    assert second.status == "machine_requested"  # node b's only T4 is taken
    go.touch()
    second.wait_status("complete", timeout=60)
    assert node_of(second, ray_cluster) == "b"
    assert any("Running on Ray node" in n for n in notes(second))


def test_outputs_of_a_run_on_node_a_mount_into_a_run_on_node_b(on_cluster, ray_cluster):
    spell = on_cluster.client()
    writer = spell.runs.new(command="mkdir out && echo made on a > out/data.txt", machine_type="A")
    writer.wait_status("complete", timeout=60)
    assert node_of(writer, ray_cluster) == "a"
    reader = spell.runs.new(
        command="cat in/data.txt",
        machine_type="T4",
        attached_resources={f"runs/{writer.id}/out": "in"},
    )
    reader.wait_status("complete", timeout=60)
    assert node_of(reader, ray_cluster) == "b"
    assert "made on a" in [e.text for e in reader.logs() if not e.status_event]


def test_a_machine_type_no_node_holds_is_refused_listing_the_cluster(on_cluster):
    result = on_cluster.spell("run", "-f", "-t", "huge", "true")
    assert result.returncode != 0
    assert "no node holds 64 CPUs" in result.stderr and "spell-T4" not in result.stderr
    assert "The cluster has" in result.stderr and "T4" in result.stderr
    assert on_cluster.client().runs.list() == []  # no run was made
    listing = on_cluster.spell("machine-types").stdout
    assert "Node 127.0.0.1" in listing and "types: T4" in listing


def test_an_unreachable_cluster_answers_503_with_how_to_start_one(tmp_path, s3_server):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = make_home(tmp_path, SPELL_BACKEND="ray", RAY_ADDRESS=f"127.0.0.1:{port}")
    home.start_server()
    try:
        result = home.spell("run", "-f", "true")
        assert result.returncode != 0
        assert "does not answer" in result.stderr and "ray start --head" in result.stderr
        assert home.client().runs.list() == []
    finally:
        home.spell("server", "stop")


@pytest.mark.timeout(300)
def test_the_server_outlives_its_cluster_and_keeps_the_runs_waiting(tmp_path, s3_server):
    """The head of the cluster dies: the server (a Jupyter server: a user's Lab) lives on,
    submissions answer 503 with how to start a cluster, and the queued run is still queued."""
    from ray_cluster import RayCluster

    cluster = RayCluster.start({"num_cpus": 1})
    try:
        home = cluster_home(tmp_path, cluster, s3_server)
        home.start_server()
        spell = home.client()
        holder = spell.runs.new(command="echo up; sleep 300")
        queued = spell.runs.new(command="echo later")
        wait_for_line(holder, "up")
        wait_for_note(queued, "waiting for a CPU machine")
    finally:
        cluster.shutdown()
    try:
        late = home.spell("run", "-f", "true", timeout=120)
        assert late.returncode != 0 and "does not answer" in late.stderr, late.stderr
        assert spell.transport.json("GET", "")["leader"]  # the same server, alive
        queued.refresh()
        assert queued.status == "machine_requested"
        assert [r.id for r in spell.runs.list()] == [queued.id, holder.id]
    finally:
        home.spell("server", "stop")


def test_a_node_dying_mid_run_ends_it_interrupted_keeping_what_was_pushed(on_cluster, ray_cluster):
    from spell_jupyter.client.spellfs import SpellApiFileSystem

    node = ray_cluster.add("c", num_cpus=1, resources={"spell-Doomed": 1})
    try:
        home = on_cluster
        config = json.loads((home.path / "config.json").read_text())
        config["SpellJupyter"]["machine_types"]["Doomed"] = {"cpus": 1, "memory": "64MiB"}
        config["RayBackend"]["output_push_interval"] = 0.5
        (home.path / "config.json").write_text(json.dumps(config))
        home.spell("server", "stop")
        home.start_server()
        spell = home.client()
        command = "echo first > kept.txt; echo alive; sleep 300"
        run = spell.runs.new(command=command, machine_type="Doomed")
        wait_for_line(run, "alive")
        assert node_of(run, ray_cluster) == "c"
        fs = SpellApiFileSystem(spell)
        deadline = time.monotonic() + 60
        while not fs.exists(f"runs/{run.id}/kept.txt"):  # pushed while it runs
            assert time.monotonic() < deadline, "the run's output was never pushed"
            time.sleep(0.2)
    finally:
        ray_cluster.remove("c")
    run.wait_status("interrupted", timeout=120)
    said = " ".join(notes(run))
    assert "was lost" in said and node.node_id[:12] in said
    assert fs.cat_file(f"runs/{run.id}/kept.txt") == b"first\n"  # what was pushed stays


# A run that tells where its node's relay listens, then writes a file once labelled "go".
AFTER_RESTART = """
import os, time, urllib.parse, spell.client
url = os.environ["SPELL_BASE_URL"]
print("relay", urllib.parse.unquote(url.split("//", 1)[1].rstrip("/")), flush=True)
client = spell.client.from_environment()


def labels():
    while True:
        try:
            return client.runs.get(int(os.environ["SPELL_RUN_ID"])).labels
        except Exception:
            time.sleep(0.2)  # its agent is being started again


while "go" not in labels():
    time.sleep(0.2)
open("after.txt", "w").write("after")
print("written", flush=True)
while "done" not in labels():
    time.sleep(0.2)
"""


def test_an_agent_killed_mid_run_is_started_again_and_carries_its_run_on(
    tmp_path, ray_cluster, s3_server
):
    import psutil

    from spell_jupyter.client.spellfs import SpellApiFileSystem

    home = cluster_home(tmp_path, ray_cluster, s3_server)
    config = json.loads((home.path / "config.json").read_text())
    config["RayBackend"]["output_push_interval"] = 0.5
    (home.path / "config.json").write_text(json.dumps(config))
    home.start_server()
    try:
        spell = home.client()
        run = spell.runs.new(command=f"python -c {shlex.quote(AFTER_RESTART)}")
        relay = wait_for_line(run, "relay ").split(" ", 1)[1]
        agent = {c.pid for c in psutil.net_connections(kind="unix") if c.laddr == relay}
        assert len(agent) == 1, agent
        os.kill(agent.pop(), signal.SIGKILL)  # Ray starts it again on its node
        run.add_label("go")
        assert wait_for_line(run, "written") == "written"  # through the relay started again
        fs = SpellApiFileSystem(spell)
        deadline = time.monotonic() + 60
        while not fs.exists(f"runs/{run.id}/after.txt"):  # pushed by the new agent
            assert time.monotonic() < deadline, "the new agent never pushed the run's output"
            time.sleep(0.2)
        run.refresh()
        assert run.status == "running"
        run.add_label("done")
        run.wait_status("complete", timeout=120)
        lines = [e.text for e in run.logs() if not e.status_event]
        assert lines == [f"relay {relay}", "written"]  # nothing lost, nothing doubled
    finally:
        home.spell("server", "stop")


def test_the_workflow_example_runs_unchanged_on_the_cluster(on_cluster, tmp_path):
    from test_workflows import PIPELINE, SEND_LOSS, git_repo

    pipe = git_repo(tmp_path / "pipe", {"pipeline.py": PIPELINE})
    git_repo(tmp_path / "model", {"send_loss.py": SEND_LOSS})
    result = on_cluster.spell(
        "workflow", "--repo", "model=../model", "python3 pipeline.py", cwd=pipe, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run 2 says: hello from run 1" in result.stdout
    assert "finished: ['complete', 'complete', 'complete']" in result.stdout
    assert "Running on Ray node" in result.stdout


def test_a_server_restart_reattaches_to_runs_on_the_cluster(on_cluster):
    spell = on_cluster.client()
    run = spell.runs.new(command="for i in $(seq 1 8); do echo line $i; sleep 0.25; done")
    wait_for_line(run, "line 2")
    on_cluster.kill_server()
    on_cluster.start_server()
    run = on_cluster.client().runs.get(run.id)
    run.wait_status("complete", timeout=60)
    lines = [e.text for e in run.logs() if not e.status_event]
    assert lines == [f"line {i}" for i in range(1, 9)]  # nothing lost, nothing doubled


def test_stop_and_kill_of_runs_on_the_cluster(on_cluster):
    spell = on_cluster.client()
    stopped = spell.runs.new(command="trap 'echo bye; exit 0' TERM; echo up; sleep 300 & wait")
    holder = spell.runs.new(command="echo up; sleep 300", machine_type="T4")
    waiting = spell.runs.new(command="echo never", machine_type="T4")
    wait_for_line(stopped, "up")
    wait_for_line(holder, "up")
    wait_for_note(waiting, "waiting for a T4 machine")
    waiting.stop()  # stopped in the queue: its actor never gets the node
    waiting.wait_status("stopped", timeout=60)
    stopped.stop()
    holder.kill()
    stopped.wait_status("stopped", timeout=60)
    holder.wait_status("killed", timeout=60)
    assert "bye" in [e.text for e in stopped.logs() if not e.status_event]
    assert "never" not in [e.text for e in waiting.logs()]
    after = spell.runs.new(command="echo next", machine_type="T4")  # the T4 is free again
    after.wait_status("complete", timeout=60)


# A run that reaches the API from its node before and after a change of leader.
AFTER_GO = """
import os, time, spell.client
from spell.metrics import send_metric
run = spell.client.from_environment().runs.get(int(os.environ["SPELL_RUN_ID"]))
print("waiting for go", flush=True)
while "go" not in run.labels:
    time.sleep(0.2)
    try:
        run.refresh()
    except Exception:
        pass  # no leader for a moment
send_metric("after", 1)
"""


@pytest.mark.timeout(900)
def test_two_servers_on_one_store_and_the_cluster_survive_the_leader_killed(
    tmp_path, ray_cluster, s3_server, postgres_url
):
    """Alice's and Bob's servers share one PostgreSQL store, one S3 SpellFS and the cluster:
    the leader is killed (-9) while runs run; the standby leads within seconds and every run
    finishes with each of its lines once."""
    bucket = s3_server.new_bucket(f"team-{uuid.uuid4().hex[:12]}")
    team = {"SPELL_DB_URL": postgres_url, "SPELL_FS_ROOT": f"s3://{bucket}/fs"}
    homes = [
        cluster_home(tmp_path, ray_cluster, s3_server, user, SPELL_USER=user, **team)
        for user in ("alice", "bob")
    ]
    for h in homes:
        h.start_server()
    try:
        clients = [h.client() for h in homes]
        leader = next(i for i, c in enumerate(clients) if c.transport.json("GET", "")["leader"])
        standby = 1 - leader
        command = "for i in $(seq 1 10); do echo line $i; sleep 0.3; done"
        runs = [clients[i % 2].runs.new(command=command) for i in range(4)]
        talker = clients[leader].runs.new(command=f"python -c {shlex.quote(AFTER_GO)}")
        wait_for_line(talker, "waiting for go")
        wait_for_line(runs[0], "line 2")
        os.kill(homes[leader].server_info()["pid"], signal.SIGKILL)
        took_over = threading.Event()

        def watch() -> None:
            while not took_over.is_set():
                if clients[standby].transport.json("GET", "")["leader"]:
                    took_over.set()
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        began = time.monotonic()
        watcher.start()
        assert took_over.wait(30), "the standby did not take over"
        assert time.monotonic() - began < 30
        for run in runs:
            run = clients[standby].runs.get(run.id)
            run.wait_status("complete", timeout=120)
            lines = [e.text for e in run.logs() if not e.status_event]
            assert lines == [f"line {i}" for i in range(1, 11)]
        talker = clients[standby].runs.get(talker.id)
        talker.add_label("go")  # it asks, then sends, through its node's relay to the new leader
        talker.wait_status("complete", timeout=120)
        assert [value for _, _, value in talker.metrics("after")] == [1]
        owners = sorted(r.owner for r in clients[standby].runs.list())
        assert owners == ["alice"] * (2 + (leader == 0)) + ["bob"] * (2 + (leader == 1))
    finally:
        for h in homes:
            h.spell("server", "stop")


def test_a_workspace_on_the_t4_node_is_reached_through_the_hosts_proxy(on_cluster, ray_cluster):
    from test_workspaces import execute_over_websocket, proxied, start, workspace_run

    out = start(on_cluster, "gpu-ws", "-t", "T4")
    assert "/spell/workspaces/gpu-ws/lab?token=" in out
    run = workspace_run(on_cluster, "gpu-ws")
    assert node_of(run, ray_cluster) == "b"
    status, text = proxied(on_cluster, "gpu-ws/api/kernels", "POST", {"name": "python3"})
    assert status == 201, text
    kernel = json.loads(text)["id"]
    seen = execute_over_websocket(
        on_cluster, "gpu-ws", kernel, "import os; os.environ['CUDA_VISIBLE_DEVICES']"
    )
    assert seen == "'0'"  # the T4 node's GPU, in the workspace's kernel
    assert on_cluster.spell("workspaces", "stop", "gpu-ws").returncode == 0
    spell = on_cluster.client()
    spell.runs.get(run.id).wait_status("stopped", timeout=120)


def test_environment_flags_are_refused_by_name_without_containers_on_the_nodes(on_cluster):
    result = on_cluster.spell("run", "-f", "--pip", "six", "true")
    assert result.returncode != 0 and "node_containers is off" in result.stderr
    assert "--pip" in result.stderr
    assert on_cluster.client().runs.list() == []


@pytest.fixture
def containers_on_cluster(tmp_path, ray_cluster, s3_server):
    """Runs in Docker containers of the nodes (the test base image as the default
    framework); node b's (fake) GPU has no NVIDIA runtime, so T4 runs there are processes."""
    from conftest import docker_env

    frameworks = docker_env()["SPELL_FRAMEWORKS"]
    home = cluster_home(
        tmp_path, ray_cluster, s3_server, containers=True, SPELL_FRAMEWORKS=frameworks
    )
    home.start_server()
    yield home
    home.spell("server", "stop")


@pytest.mark.docker
def test_runs_on_nodes_with_docker_are_containers_of_their_environment_built_there(
    containers_on_cluster, ray_cluster
):
    import docker

    spell = containers_on_cluster.client()
    script = (
        "import six; from spell.metrics import send_metric; send_metric('loss', 0.25); "
        "print('six', six.__version__)"
    )
    command = f'test -f /.dockerenv && echo in a container; python -c "{script}"; echo x > out.txt'
    six = f"six!=0.0.{time.time_ns()}"  # a spec of its own: built now, on node a
    built = spell.runs.new(command=command, machine_type="A", pip_packages=[six])
    built.wait_status("complete", timeout=600)
    said = notes(built)
    assert node_of(built, ray_cluster) == "a"
    assert any(n.startswith("Building environment spell-env:") for n in said), said
    assert any("in Docker container" in n and "Running on Ray node" in n for n in said), said
    lines = [e.text for e in built.logs() if not e.status_event]
    assert "in a container" in lines and any(line.startswith("six ") for line in lines)
    assert [v for _, _, v in built.metrics("loss")] == [0.25]  # the API over TCP, from inside
    assert "out.txt" in [f.path.rsplit("/", 1)[-1] for f in spell.resources.ls(f"runs/{built.id}")]

    again = spell.runs.new(command="python -c 'import six'", machine_type="A", pip_packages=[six])
    again.wait_status("complete", timeout=120)
    assert any(n.startswith("Retrieving cached environment spell-env:") for n in notes(again))
    image = next(n for n in said if n.startswith("Building environment")).split()[-1]
    docker.from_env().images.remove(image, force=True)

    plain = spell.runs.new(command="test -f /.dockerenv && echo plain in a container; sleep 300")
    wait_for_line(plain, "plain in a container")  # the default framework's image
    stats = plain.stats()  # the container's, asked of its node's Docker Engine
    assert stats["memory_limit_bytes"] == 128 << 20 and stats["gpus"] == []
    plain.stop()
    plain.wait_status("stopped", timeout=60)

    # node b runs its GPU type as processes (no NVIDIA runtime): no environment for a GPU run
    before = len(spell.runs.list())
    refused = containers_on_cluster.spell("run", "-f", "-t", "T4", "--pip", "six", "true")
    assert refused.returncode != 0 and "with the NVIDIA runtime" in refused.stderr
    assert len(spell.runs.list()) == before  # no run was made
    gpu = spell.runs.new(command="echo gpus=$CUDA_VISIBLE_DEVICES", machine_type="T4")
    assert wait_for_line(gpu, "gpus=") == "gpus=0"


def test_a_timeout_stops_a_run_on_the_cluster(on_cluster):
    spell = on_cluster.client()
    run = spell.runs.new(
        command="trap 'echo timed out; exit 0' TERM; echo up; sleep 300 & wait", timeout=0.02
    )
    run.wait_status("stopped", timeout=120)
    said = notes(run)
    assert any("Run timed out after 0.02 minutes" in n for n in said), said
    assert "timed out" in [e.text for e in run.logs() if not e.status_event]


@pytest.mark.docker
def test_a_workspace_in_a_container_on_a_node_is_reached_through_the_hosts_proxy(
    containers_on_cluster, ray_cluster
):
    from test_workspaces import execute_over_websocket, proxied, start, workspace_run

    start(containers_on_cluster, "box-ws", "-t", "Lab")
    run = workspace_run(containers_on_cluster, "box-ws")
    assert node_of(run, ray_cluster) in ("a", "b")
    assert any("in Docker container" in n for n in notes(run))
    status, text = proxied(containers_on_cluster, "box-ws/api/kernels", "POST", {"name": "python3"})
    assert status == 201, text
    kernel = json.loads(text)["id"]
    seen = execute_over_websocket(
        containers_on_cluster, "box-ws", kernel, "import os; os.path.exists('/.dockerenv')"
    )
    assert seen == "True"
    assert containers_on_cluster.spell("workspaces", "stop", "box-ws").returncode == 0
    containers_on_cluster.client().runs.get(run.id).wait_status("stopped", timeout=120)


def test_a_remote_kernel_on_the_t4_node_through_the_hosts_kernel_api(
    tmp_path, ray_cluster, s3_server
):
    from helpers import LAB_TOKEN, Lab, kernel_execute
    from test_kernels import api, channels

    home = cluster_home(tmp_path, ray_cluster, s3_server)
    assert home.spell("kernelspec", "add", "gpu", "-t", "T4").returncode == 0
    lab = Lab(home)
    try:
        body = {"path": "nb.ipynb", "type": "notebook", "kernel": {"name": "spell-gpu"}}
        status, session = api(lab, "POST", "api/sessions", body)
        assert status == 201, session
        client = home.client()
        (run,) = client.runs.list(kinds=["kernel"])
        assert node_of(run, ray_cluster) == "b"
        found = kernel_execute(
            channels(lab, session["kernel"]["id"]),
            LAB_TOKEN,
            "import os; os.environ['CUDA_VISIBLE_DEVICES'], os.path.basename(os.getcwd())",
        )
        assert eval(found["result"]) == ("0", str(run.id))  # the T4's GPU, in its run's folder
        status, _ = api(lab, "DELETE", f"api/sessions/{session['id']}")
        assert status == 204
        run.wait_status(*client.runs.FINAL, timeout=120)
    finally:
        lab.stop()
