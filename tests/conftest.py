"""Fixtures: real `spell server` processes in throw-away data directories, the `spell` CLI as a
subprocess, and in-process Jupyter servers (pytest-jupyter) for handler tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server", "lab_pages"]  # lab_pages: the UI fixtures

SPELL_SCRIPT = Path(sys.executable).with_name("spell")
SPELL_ARGV = (
    [str(SPELL_SCRIPT)] if SPELL_SCRIPT.exists() else [sys.executable, "-m", "spell_jupyter.cli"]
)


@dataclass
class SpellHome:
    """A data directory with the environment the CLI and servers need for it."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)

    def spell(self, *args: str, timeout: float = 120, cwd: Path | None = None):
        """Run the `spell` CLI; returns the CompletedProcess (stdout/stderr as text)."""
        return subprocess.run(
            [*SPELL_ARGV, *args],
            env=self.env,
            cwd=cwd or self.path.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def server_info(self) -> dict:
        return json.loads((self.path / "server.json").read_text())

    def client(self):
        """A client found as a kernel finds it: this home's server, in this home's runtime."""
        from unittest import mock

        from spell_jupyter.client import from_environment

        runtime = {"JUPYTER_RUNTIME_DIR": self.env["JUPYTER_RUNTIME_DIR"]}
        with mock.patch.dict(os.environ, runtime):
            return from_environment(self.path)

    def start_server(self) -> dict:
        result = self.spell("server")
        assert result.returncode == 0, result.stderr
        return self.server_info()

    def kill_server(self) -> None:
        os.kill(self.server_info()["pid"], signal.SIGKILL)


def make_home(tmp_path: Path, **env: str) -> SpellHome:
    path = tmp_path / "spell-home"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
    full_env.update(
        {
            "SPELL_HOME": str(path),
            "SPELL_STOP_GRACE_PERIOD": "5",
            "SPELL_BACKEND": "local",
            # Jupyter servers this test starts, and only those, are found by discovery
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
            # the kernel specs a Lab writes (Spell's) go here, not into the user's folder
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
            **env,
        }
    )
    return SpellHome(path=path, env=full_env)


@pytest.fixture
def home(tmp_path):
    """A fresh data directory; its server (if a test starts one) is stopped afterwards."""
    h = make_home(tmp_path)
    yield h
    h.spell("server", "stop")


@pytest.fixture
def served(home):
    """A data directory with a running `spell server`."""
    home.start_server()
    return home


@pytest.fixture
def serve(tmp_path):
    """A factory: `serve(**env)` starts a `spell server` on a fresh data directory with extra
    environment; every server it started is stopped afterwards."""
    started: list[SpellHome] = []

    def start(**env: str) -> SpellHome:
        h = make_home(tmp_path, **env)
        h.start_server()
        started.append(h)
        return h

    yield start
    for h in started:
        h.spell("server", "stop")


BASE_IMAGE = os.environ.get("SPELL_TEST_BASE_IMAGE", "spell/base:bookworm-py311")
_docker_problem: list[str] = []


def docker_problem() -> str:
    """Why the Docker tests cannot run here ('' when they can): no engine, or no base image."""
    if not _docker_problem:
        try:
            import docker

            engine = docker.from_env(timeout=5)
            engine.ping()
            engine.images.get(BASE_IMAGE)
            _docker_problem.append("")
        except Exception as exc:
            _docker_problem.append(
                f"Docker tests need a Docker Engine and the base image {BASE_IMAGE} "
                f"(`spell images build-base`): {type(exc).__name__}: {exc}"
            )
    return _docker_problem[0]


def require_docker() -> None:
    """Skip without Docker, unless SPELL_REQUIRE_DOCKER=1 (CI), where that is a failure."""
    problem = docker_problem()
    if problem:
        if os.environ.get("SPELL_REQUIRE_DOCKER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


def docker_env() -> dict[str, str]:
    """Environment of a server whose runs are containers of the test base image."""
    require_docker()
    from spell_jupyter.backends.debian_image import PYTHON_PACKAGES

    framework = {"image": BASE_IMAGE, "packages": list(PYTHON_PACKAGES)}
    return {"SPELL_BACKEND": "docker", "SPELL_FRAMEWORKS": json.dumps({"default": framework})}


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def any_backend(request, serve) -> SpellHome:
    """A running server on each backend in turn."""
    return serve(**(docker_env() if request.param == "docker" else {}))


@pytest.fixture
def docker_served(serve) -> SpellHome:
    """A running server whose runs are Docker containers."""
    return serve(**docker_env())


@pytest.fixture
def jp_server_config(tmp_path):
    """An in-process Jupyter server with the Spell extension on a fresh data directory."""
    return {
        "ServerApp": {"jpserver_extensions": {"spell_jupyter": True}},
        "SpellJupyter": {"spell_home": str(tmp_path / "spell-home"), "backend": "local"},
    }


@dataclass
class S3Server:
    """A local S3-compatible server (moto), as s3fs's own tests use."""

    endpoint: str
    options: dict = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a `spell server` needs to reach it (fsspec reads FSSPEC_S3_*)."""
        return {
            "FSSPEC_S3_ENDPOINT_URL": self.endpoint,
            "FSSPEC_S3_KEY": "testing",
            "FSSPEC_S3_SECRET": "testing",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def new_bucket(self, name: str) -> str:
        import s3fs

        fs = s3fs.S3FileSystem(**self.options)
        fs.mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free port for the whole session; in-process fsspec is pointed at
    it too, so `s3://` URLs in tests reach it."""
    import socket

    import fsspec.config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:  # it says when it listens
        if "Running on" in line:
            break
    else:
        raise RuntimeError(f"moto_server exited with {proc.wait()}")
    # it logs every request: keep reading, or a full pipe would stall it
    threading.Thread(target=lambda: all(proc.stdout), daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    server = S3Server(endpoint, {"key": "testing", "secret": "testing", "endpoint_url": endpoint})
    saved = dict(fsspec.config.conf.get("s3", {}))
    fsspec.config.conf["s3"] = dict(server.options)
    os.environ.update({k: v for k, v in server.env.items() if k.startswith("AWS_")})
    yield server
    fsspec.config.conf["s3"] = saved
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def lab(home):
    from helpers import Lab

    started: list[Lab] = []

    def start(*args: str) -> Lab:
        started.append(Lab(home, *args))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture(autouse=True)
def _environment_restored():
    """In-process servers export SPELL_HOME (and PYTHONSTARTUP) for their kernels: no test
    sees what an earlier one left."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of Debian's `postgresql` package for the session (skipped where it
    is not installed; `.ci/run` installs it, so CI runs these tests)."""
    from postgres import PostgresServer, postgres_bin

    binaries = postgres_bin()
    if binaries is None:
        problem = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("SPELL_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    server = PostgresServer(binaries)
    server.init()
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def ray_cluster():
    """Two Ray nodes for the session: `a` (the head: 2 CPUs, machine type A) and `b` (2 CPUs
    and a fake GPU that is a T4 to Spell: `spell-T4`)."""
    from ray_cluster import RayCluster

    cluster = RayCluster.start(
        {"num_cpus": 2, "resources": {"node-a": 1, "spell-A": 1}},
        b={"num_cpus": 2, "num_gpus": 1, "resources": {"spell-T4": 1}},
    )
    yield cluster
    cluster.shutdown()
