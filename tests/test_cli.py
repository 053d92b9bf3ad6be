"""The `spell` CLI against real server processes."""

from __future__ import annotations

import getpass
import subprocess
import sys

from conftest import SPELL_ARGV

HEAVY = ("sqlalchemy", "tornado", "jupyter_server", "pydantic", "alembic", "docker", "requests")


def imported_modules(home, *args: str) -> set[str]:
    """Top-level modules a `spell` invocation imports (from python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "spell_jupyter.cli", *args],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_run_hello_world_completes(home):
    result = home.spell("run", "echo hello world")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "💫 Casting spell #1…" in out
    assert "hello world\n" in out
    assert "✨ Building… done" in out and "✨ Run is running" in out and "✨ Saving… done" in out
    assert "🎉 Total run time:" in out and "🎉 Run 1 complete" in out
    # the CLI found no server, started one and said so
    assert "started one in the background" in result.stderr
    run = home.client().runs.get(1)
    assert run.status == "complete" and run.user_exit_code == 0


def test_failing_command_ends_failed_and_cli_exits_with_its_code(served):
    result = served.spell("run", "echo about to fail; exit 3")
    assert result.returncode == 3
    assert "about to fail" in result.stdout
    assert "failed with exit code 3" in result.stdout
    run = served.client().runs.get(1)
    assert run.status == "failed" and run.user_exit_code == 3


def test_outputs_are_listed_and_copied(served, tmp_path):
    result = served.spell("run", "mkdir -p sub && echo data > sub/a.txt && echo top > b.txt")
    assert result.returncode == 0, result.stderr
    assert "Found 2 files to save" in result.stdout

    listing = served.spell("ls", "runs/1")
    assert listing.returncode == 0, listing.stderr
    assert "b.txt" in listing.stdout and "sub/" in listing.stdout
    assert "a.txt" in served.spell("ls", "runs/1/sub").stdout

    dest = tmp_path / "fetched"
    copied = served.spell("cp", "runs/1", str(dest))
    assert copied.returncode == 0, copied.stderr
    assert "Copied 2 files" in copied.stdout
    assert (dest / "1" / "sub" / "a.txt").read_text() == "data\n"
    assert (dest / "1" / "b.txt").read_text() == "top\n"

    again = served.spell("cp", "runs/1/b.txt", str(dest / "1"))
    assert again.returncode == 1 and "exists" in again.stderr
    forced = served.spell("cp", "-f", "runs/1/b.txt", str(dest / "1"))
    assert forced.returncode == 0, forced.stderr


def test_background_run_logs_ps_labels_archive(served):
    started = served.spell("run", "-b", "--label", "exp", "-e", "WHO=world", "echo hi $WHO")
    assert started.returncode == 0, started.stderr
    assert "View logs with `spell logs 1`" in started.stdout
    served.client().runs.get(1).wait_status("complete")

    logs = served.spell("logs", "1")
    assert "hi world" in logs.stdout and "🎉 Run 1 complete" in logs.stdout
    tail = served.spell("logs", "-n", "1", "1")
    assert "hi world" not in tail.stdout

    ps = served.spell("ps")
    assert ps.returncode == 0
    header, row = ps.stdout.splitlines()[:2]
    assert header.split() == ["ID", "COMMAND", "STATUS", "CREATED", "CREATOR", "LABELS", "WORKFLOW"]
    assert row.split()[0] == "1" and "Complete" in row and "exp" in row
    assert served.client().runs.get(1).owner == getpass.getuser() in row  # the server's user
    assert "echo hi" not in served.spell("ps", "-l", "other").stdout

    assert served.spell("label", "1", "best").returncode == 0
    assert served.client().runs.get(1).labels == ["best", "exp"]
    assert served.spell("label", "--remove", "1", "exp").returncode == 0
    assert served.client().runs.get(1).labels == ["best"]

    assert served.spell("archive", "1").returncode == 0
    assert "echo hi" not in served.spell("ps").stdout
    assert "echo hi" in served.spell("ps", "--all").stdout


def test_bad_input_is_refused_clearly(served):
    empty = served.spell("run", "  ")
    assert empty.returncode == 1 and "give a command to run" in empty.stderr

    bad_env = served.spell("run", "-e", "NOEQUALS", "true")
    assert bad_env.returncode == 1 and "NAME=VALUE" in bad_env.stderr

    bad_type = served.spell("run", "-t", "TPUv9", "true")
    assert bad_type.returncode == 1 and "known machine types are A100, CPU" in bad_type.stderr

    unknown = served.spell("logs", "99")
    assert unknown.returncode == 1 and "no run with ID 99" in unknown.stderr
    assert served.spell("stop", "99").returncode == 1

    for path in ("../etc", "/etc", "runs/1/../../etc", "runs/notanumber"):
        ls = served.spell("ls", path)
        assert ls.returncode == 1 and "Error:" in ls.stderr, path
        cp = served.spell("cp", path)
        assert cp.returncode == 1 and "Error:" in cp.stderr, path

    # none of the refusals created a run
    assert served.client().runs.list() == []

    assert served.spell("run", "true").returncode == 0
    for verb in ("stop", "kill"):
        late = served.spell(verb, "1")
        assert late.returncode == 1 and "already complete" in late.stderr
    assert served.client().runs.get(1).status == "complete"


def test_second_server_reports_the_running_one(served):
    info = served.server_info()
    second = served.spell("server")
    assert second.returncode == 1
    assert "already running" in second.stderr and info["url"] in second.stderr
    assert served.server_info()["pid"] == info["pid"]  # nothing replaced


def test_server_json_is_private_and_stop_removes_it(served):
    path = served.path / "server.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert served.spell("server", "status").returncode == 0
    stopped = served.spell("server", "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not path.exists()
    assert served.spell("server", "status").returncode == 1


def test_help_and_ps_import_nothing_heavy(served):
    assert not heavy_in(imported_modules(served, "--help"))
    help_text = subprocess.run([*SPELL_ARGV, "--help"], capture_output=True, text=True).stdout
    for command in ("run", "ps", "logs", "stop", "kill", "label", "archive", "ls", "cp", "server"):
        assert f"  {command} " in help_text
    assert not heavy_in(imported_modules(served, "ps"))


def heavy_in(modules: set[str]) -> set[str]:
    return modules & set(HEAVY)


def test_version(home):
    result = home.spell("--version")
    assert result.returncode == 0 and "spell, version" in result.stdout
