"""One data directory is one service: the CLI and kernels use a running Jupyter server
(JupyterLab's stand-in here: `jupyter server` with the extension) that serves SPELL_HOME instead
of starting another; run settings that disagree with the leader's are refused loudly; `spell
server stop` stops only what `spell server` started; the data directory's config.json is read
by every server of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def test_the_cli_and_a_kernel_use_the_lab_that_serves_the_data_directory(home, lab):
    the_lab = lab()
    ps = home.spell("ps")
    assert ps.returncode == 0, ps.stderr
    assert "started one" not in ps.stderr and not (home.path / "server.json").exists()
    run = home.spell("run", "echo from the lab")
    assert run.returncode == 0 and "from the lab" in run.stdout, run.stderr
    # a notebook kernel of that Lab: the same environment, no SPELL_BASE_URL
    kernel = subprocess.run(
        [
            sys.executable,
            "-c",
            "import spell.client; c = spell.client.from_environment(); "
            "print(c.base_url, [r.id for r in c.runs.list()])",
        ],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kernel.returncode == 0, kernel.stderr
    assert kernel.stdout.split() == [the_lab.url, "[1]"]
    # `spell server` does not start a second service for the same data directory
    second = home.spell("server")
    assert second.returncode == 1 and the_lab.url in second.stderr
    # and `spell server stop` leaves the Lab alone
    stop = home.spell("server", "stop")
    assert stop.returncode == 0 and "No Spell server was running" in stop.stdout
    assert the_lab.proc.poll() is None and the_lab.spell_api() == 200


def test_a_lab_with_other_run_settings_is_refused_loudly(served, lab):
    """`spell server` leads with the local backend; a Lab asking for other settings must not
    serve runs that would silently follow the leader's."""
    other = lab("--SpellJupyter.backend=docker", "--RunEngine.concurrency_limit=1")
    # its extension refused to load: the message says what differs and what to do
    deadline = time.monotonic() + 30
    while "another server leads" not in other.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = other.output()
    assert "another server leads the runs of" in log
    assert 'SpellJupyter.backend: "docker" here, "local" there' in log
    assert "RunEngine.concurrency_limit: 1 here" in log and "`spell server stop`" in log
    assert other.spell_api() != 200  # no Spell API there
    # a Lab that agrees serves the same runs as the leader
    same = lab()
    assert same.spell_api() == 200
    assert served.spell("run", "true").returncode == 0


def test_a_lab_may_start_while_spell_server_runs_and_outlives_its_stop(served, lab):
    the_lab = lab()
    assert the_lab.spell_api() == 200
    stopped = served.spell("server", "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert the_lab.proc.poll() is None
    # the Lab's engine takes over as leader; the CLI now finds the Lab
    ps = served.spell("run", "echo still served")
    assert ps.returncode == 0 and "still served" in ps.stdout, ps.stderr
    assert not (served.path / "server.json").exists()


def test_the_data_directorys_config_is_read_by_every_server(home, lab):
    home.path.mkdir(parents=True)
    (home.path / "config.json").write_text(
        json.dumps({"SpellJupyter": {"machine_types": {"tiny": {"cpus": 1, "memory": "1GiB"}}}})
    )
    the_lab = lab()
    assert the_lab.spell_api() == 200
    types = [t["name"] for t in home.client().machine_types()["machine_types"]]
    assert types == ["tiny"]
    # a malformed config.json is an error naming the file, not silently skipped
    the_lab.stop()
    (home.path / "config.json").write_text("{not json")
    result = home.spell("ps")
    assert result.returncode == 1
    assert "could not start: " in result.stderr and "config.json is not valid JSON" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_no_open_browser_warning_and_engine_settings_in_help_all(home):
    env = {**home.env, "PYTHONWARNINGS": "ignore"}
    help_all = subprocess.run(
        [sys.executable, "-m", "spell_jupyter.server", "--help-all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_all.returncode == 0, help_all.stderr
    for trait in (
        "--RunEngine.concurrency_limit",
        "--RunEngine.stop_grace_period",
        "--DockerBackend.docker_host",
        "--SpellJupyter.backend",
    ):
        assert trait in help_all.stdout, trait
    config = subprocess.run(
        [sys.executable, "-m", "spell_jupyter.server", "--generate-config", "-y"],
        env={**env, "JUPYTER_CONFIG_DIR": str(home.path.parent / "cfg")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stderr
    generated = next((home.path.parent / "cfg").glob("*.py")).read_text()
    assert "c.RunEngine.concurrency_limit" in generated
    assert "c.DockerBackend.docker_host" in generated


def test_jupyter_no_browser_gives_no_warning_about_spell(home, lab):
    the_lab = lab()
    assert the_lab.spell_api() == 200
    assert "not recognized by SpellJupyter" not in the_lab.output()
    assert os.path.exists(home.env["JUPYTER_RUNTIME_DIR"])
