"""Runs in Docker containers against a real dockerd and the locally built base image:
environments built once and reused, limits, OOM, timeouts, stats, and the bad inputs."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import BASE_IMAGE, docker_env
from helpers import build_lines, configured_server, notes, user_lines, wait_for_line

pytestmark = pytest.mark.docker


@pytest.fixture
def engine():
    import docker

    client = docker.from_env()
    yield client
    client.close()


def containers_of(engine, home) -> list:
    from spell_jupyter.backends.docker import LABEL_HOME, home_key

    key = home_key(home.path / "docker")
    return engine.containers.list(all=True, filters={"label": f"{LABEL_HOME}={key}"})


def test_pip_and_apt_environment_is_built_once_and_reused(docker_served, engine):
    home = docker_served
    # A version floor no other test run uses (six is far past it): a spec never built before.
    six = f"six>=0.0.{uuid.uuid4().int % 10**9}"
    command = "python3 -c 'import six' && jq --version"
    first = home.spell("run", "--pip", six, "--apt", "jq", command)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Building environment spell-env:" in first.stdout
    assert "Successfully tagged spell-env:" in first.stdout  # the build's own output
    assert "jq-1." in first.stdout and "Run 1 complete" in first.stdout

    again = home.spell("run", "--pip", six, "--apt", "jq", command)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Retrieving cached environment spell-env:" in again.stdout
    assert "Step 1/" not in again.stdout and "Building environment" not in again.stdout
    client = home.client()
    images = {
        next(n for n in notes(client.runs.get(i)) if "spell-env:" in n).split()[-1] for i in (1, 2)
    }
    assert len(images) == 1

    changed = home.spell("run", "--pip", six, "--apt", "jq", "--apt", "tree", "tree --version")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "Building environment spell-env:" in changed.stdout
    assert images.pop() not in changed.stdout
    assert containers_of(engine, home) == []  # each container went with its run


def build_containers(engine) -> set[str]:
    """Containers of environment builds (they carry the environment label), on any server."""
    from spell_jupyter.engine.environments import ENVIRONMENT_LABEL

    return {c.id for c in engine.containers.list(all=True, filters={"label": ENVIRONMENT_LABEL})}


def test_a_failed_build_ends_build_failed_and_leaves_no_containers(docker_served, engine):
    before = build_containers(engine)
    result = docker_served.spell("run", "--pip", "spell-no-such-package-xyz==0.0.1", "true")
    assert result.returncode == 1
    run = docker_served.client().runs.get(1)
    assert run.status == "build_failed"
    assert "No matching distribution found for spell-no-such-package-xyz" in "\n".join(
        build_lines(run)
    )
    assert any(n.startswith("Build failed:") for n in notes(run))
    assert build_containers(engine) == before


def test_container_gets_its_machine_type_limits_and_workdir(serve, tmp_path):
    home = configured_server(
        serve,
        tmp_path,
        env=docker_env(),
        machine_types={"small": {"cpus": 0.5, "memory": "96MiB"}},
    )
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us; pwd; echo saved > here.txt; "
        "echo unbuffered=$PYTHONUNBUFFERED run=$SPELL_RUN_ID"
    )
    result = home.spell("run", "-t", "small", script)
    assert result.returncode == 0, result.stdout + result.stderr
    client = home.client()
    limit, quota, period, cwd, env = user_lines(client.runs.get(1))
    assert int(limit) == 96 << 20 and int(quota) / int(period) == 0.5
    assert cwd == "/spell" and env == "unbuffered=1 run=1"
    assert [e["name"] for e in client.resources.ls("runs/1")] == ["here.txt"]


def test_a_run_over_its_memory_limit_fails_out_of_memory(serve, tmp_path):
    home = configured_server(
        serve, tmp_path, env=docker_env(), machine_types={"tiny": {"cpus": 1, "memory": "64MiB"}}
    )
    result = home.spell("run", "-t", "tiny", "python3 -c 'x = bytearray(512 << 20)'")
    assert result.returncode != 0
    run = home.client().runs.get(1)
    assert run.status == "failed" and run.user_exit_code == 137
    assert any("out of memory" in n for n in notes(run))
    assert "out of memory" in result.stdout


def test_timeout_stops_the_run_and_saves_its_outputs(docker_served):
    script = "trap 'echo caught > stopped.txt; exit 0' TERM; while true; do sleep 0.05; done"
    result = docker_served.spell("run", "--timeout", "0.03", script)  # 1.8 seconds
    run = docker_served.client().runs.get(1)
    assert run.status == "stopped", result.stdout
    assert any("Run timed out after 0.03 minutes" in n for n in notes(run))
    assert [e["name"] for e in docker_served.client().resources.ls("runs/1")] == ["stopped.txt"]


def test_stats_of_a_running_container(docker_served, tmp_path):
    client = docker_served.client()
    run = client.runs.new(command="echo up; while true; do :; done")
    wait_for_line(run, "up")
    sample = run.stats()
    assert sample["run_id"] == run.id and sample["memory_limit_bytes"] == 2 << 30
    assert sample["cpu_percent"] > 0 and sample["gpus"] == []
    printed = docker_served.spell("stats", str(run.id))
    assert printed.returncode == 0 and "CPU %" in printed.stdout
    run.kill()
    run.wait_status("killed")
    refused = docker_served.spell("stats", str(run.id))
    assert refused.returncode == 1 and "statistics exist while it runs" in refused.stderr


def test_a_custom_image_runs_as_it_is(docker_served):
    result = docker_served.spell("run", "--from", BASE_IMAGE, "cat /etc/debian_version")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"image {BASE_IMAGE})" in result.stdout
    assert "Building environment" not in result.stdout


def test_conda_file_on_an_image_without_conda_fails_the_build_saying_so(docker_served, tmp_path):
    env_file = tmp_path / "environment.yml"
    env_file.write_text("name: base\ndependencies:\n  - python=3.11\n")
    result = docker_served.spell("run", "--conda-file", str(env_file), "true")
    run = docker_served.client().runs.get(1)
    assert run.status == "build_failed", result.stdout
    assert "needs conda, mamba or micromamba in the image" in result.stdout


def test_bad_environments_are_refused_before_anything_is_built(docker_served, tmp_path):
    home = docker_served
    cases = [
        (["--docker-image", BASE_IMAGE, "--pip", "six"], "cannot be combined with --pip"),
        (["--framework", "jax"], "unknown framework 'jax'; known frameworks: default, pytorch"),
        (["-t", "K80"], "known machine types are"),
        (["--pip-req", str(tmp_path / "missing.txt")], "does not exist"),
        (["--conda-file", str(tmp_path / "nope.yml")], "does not exist"),
        (["--pip", "six; rm -rf /"], "invalid pip package 'six; rm -rf /'"),
        (["--pip", "$(id)"], "invalid pip package '$(id)'"),
        (["--pip", "six\nos"], "invalid pip package"),
        (["--apt", "jq && curl evil"], "invalid apt package"),
        (["--docker-image", "Bad Image!"], "invalid Docker image"),
    ]
    for flags, message in cases:
        result = home.spell("run", *flags, "true")
        assert result.returncode == 1, flags
        assert message in result.stderr, (flags, result.stderr)
    assert home.client().runs.list() == []


def test_gpu_type_without_the_nvidia_runtime_is_refused_at_submit(serve, tmp_path):
    home = configured_server(
        serve,
        tmp_path,
        env=docker_env(),
        host_capacity={"cpus": 8, "memory": "32GiB", "gpus": [{"index": 0, "model": "Tesla T4"}]},
    )
    import docker

    if "nvidia" in (docker.from_env().info().get("Runtimes") or {}):
        pytest.skip("this Docker Engine has the NVIDIA runtime")
    result = home.spell("run", "-t", "T4", "nvidia-smi")
    assert result.returncode == 1
    assert "the Docker Engine has no NVIDIA runtime" in result.stderr
    assert home.client().runs.list() == []


def test_forced_docker_that_does_not_answer_says_how_to_start_it(serve, tmp_path):
    home = serve(
        SPELL_BACKEND="docker",
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
        SPELL_FRAMEWORKS=json.dumps({"default": BASE_IMAGE}),
    )
    result = home.spell("run", "true")
    assert result.returncode == 1
    assert "Docker is not answering" in result.stderr and "dockerd" in result.stderr
    assert home.client().runs.list() == []


def test_an_image_that_cannot_be_pulled_ends_build_failed_with_a_hint(docker_served):
    result = docker_served.spell("run", "--from", "registry.invalid/spell/none:1", "true")
    assert result.returncode == 1
    run = docker_served.client().runs.get(1)
    assert run.status == "build_failed"
    assert "could not pull registry.invalid/spell/none:1" in result.stdout
    assert "spell images build-base --set-default" in result.stdout
    # the hint fits a JupyterLab user as well as a `spell server` one
    assert "config.json" in result.stdout and "restart JupyterLab" in result.stdout


def test_gpu_runs_ask_docker_for_exactly_their_gpus(tmp_path):
    from spell_jupyter.backends.base import LaunchRequest
    from spell_jupyter.backends.docker import DockerBackend
    from spell_jupyter.fs.spellfs import SpellFileSystem

    backend = DockerBackend(fs=SpellFileSystem(str(tmp_path / "fs")), home=tmp_path)
    request = LaunchRequest(
        run_id=7, command="nvidia-smi", gpu_indices=(1, 3), cpus=4, memory_mib=512
    )
    host = backend._host_config(request)
    (device,) = host["DeviceRequests"]
    assert device["Driver"] == "nvidia" and device["DeviceIDs"] == ["1", "3"]
    assert device["Capabilities"] == [["gpu"]]
    assert host["NanoCpus"] == 4_000_000_000 and host["Memory"] == 512 << 20
    assert backend._environment(request)["NVIDIA_VISIBLE_DEVICES"] == "1,3"
    cpu_only = LaunchRequest(run_id=8, command="true")
    assert "DeviceRequests" not in backend._host_config(cpu_only)
    assert backend._environment(cpu_only)["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_a_container_removed_behind_the_engines_back_ends_interrupted(docker_served, engine):
    client = docker_served.client()
    run = client.runs.new(command="echo up; sleep 600")
    wait_for_line(run, "up")
    # With the server down, so the engine cannot catch the container exited mid-removal
    # (that is an ordinary exit, 137); it finds only that the container is gone.
    docker_served.kill_server()
    (container,) = containers_of(engine, docker_served)
    container.remove(force=True)
    docker_served.start_server()
    client = docker_served.client()
    run = client.runs.get(run.id)
    run.wait_status("interrupted", timeout=60)
    assert any("its container is gone" in n for n in notes(run))


def test_python_and_pip_are_on_path_in_the_default_image(docker_served):
    """Every Spell example runs `python ...`: the base image and images built on it have it."""
    for extra in ([], ["--pip", "six"]):
        result = docker_served.spell("run", *extra, "python --version && pip --version")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Python 3." in result.stdout and "pip " in result.stdout


def test_a_cached_environment_is_announced_once_while_the_code_unpacks(docker_served, tmp_path):
    import git

    root = tmp_path / "big"
    root.mkdir()
    for i in range(40):  # enough code that unpacking it takes many engine passes
        (root / f"blob{i}.bin").write_bytes(uuid.uuid4().bytes * 65536)
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.git.commit("-m", "data", author="T <t@e.com>")
    for _ in range(2):  # the second finds the environment (CA files + code) built
        result = docker_served.spell("run", "--pip", "six", "true", cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr
    said = [n for n in notes(docker_served.client().runs.get(2)) if "cached environment" in n]
    assert len(said) == 1, said


def test_a_line_read_while_it_is_still_being_written_is_not_cut(docker_served):
    """A long line arrives in 16 KiB pieces: a read between two pieces must not take the
    pieces so far as the whole line (the rest would then be lost)."""
    command = (
        "for i in $(seq 40); do printf '%01000d' 0; sleep 0.02; done; echo; "
        "printf 'no newline at the end'"
    )
    result = docker_served.spell("run", command)
    assert result.returncode == 0, result.stdout[-2000:]
    lines = user_lines(docker_served.client().runs.get(1))
    assert lines == ["0" * 40000, "no newline at the end"], [len(x) for x in lines]


def test_the_log_of_a_container_that_ends_right_after_a_huge_line_is_read_whole(tmp_path):
    """A followed `docker logs` stream can end at the container's exit before its last
    entries (after a 1 MB line: 1 try in 3 on a busy 2-core machine, 1 in 18 on an idle one):
    the backend reads once more, unfollowed, from the oldest line not taken. Straight through
    the backend, ten times."""
    import threading

    from spell_jupyter.backends.docker import DockerBackend
    from spell_jupyter.fs.spellfs import SpellFileSystem

    backend = DockerBackend(fs=SpellFileSystem(str(tmp_path / "fs")), home=tmp_path)
    command = "head -c 1048000 /dev/zero | tr '\\0' '\\1'; echo; echo after"
    for _ in range(10):
        container = backend.client.containers.run(
            BASE_IMAGE, ["/bin/sh", "-c", command], detach=True
        )
        try:
            handle = {"container": container.id}
            lines = [
                line.text
                for batch, _ in backend.follow_output(handle, "", threading.Event())
                for line in batch
            ]
        finally:
            container.remove(force=True)
        assert [len(text) for text in lines] == [1048000, 5] and lines[-1] == "after"
