"""What a Spell user does out of habit: the runs document's chain from inside a repository,
Spell's flags (refused by name when not built, never glued onto the command), Spell's client
keywords, `ps` label filters matching any label, and output for scripts (--json)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import git
import pytest
from helpers import user_lines

from spell_jupyter.client import UnsupportedArgument
from spell_jupyter.client.errors import InvalidArgument
from spell_jupyter.client.runs import NOT_YET_SUPPORTED, RunsService


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('hi')\n")
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    who = git.Actor("Test", "test@example.com")
    repo.index.commit("first", author=who, committer=who)
    return root


def spell_ok(home, *args: str, cwd: Path | None = None) -> str:
    result = home.spell(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_runs_documents_chain_from_a_repositorys_root_and_subfolder(any_backend, repo):
    """Files saved in /spell/<repo> land in runs/<id>; a subfolder keeps its name."""
    home = any_backend
    spell_ok(home, "run", "echo hello world! > foo.txt", cwd=repo)
    docker = home.env["SPELL_BACKEND"] == "docker"
    # in a container /spell/foo.txt is that path; a local process sees /spell as its workdir
    cat = "cat /spell/foo.txt" if docker else "cat ../foo.txt"
    out = spell_ok(home, "run", "--mount", "runs/1/foo.txt:/spell/foo.txt", cat, cwd=repo)
    assert "hello world!" in out.splitlines()
    client = home.client()
    assert client.runs.get(2).status == "complete"
    assert [e["path"] for e in client.resources.ls("runs/1")] == ["runs/1/foo.txt"]

    spell_ok(home, "run", "echo sub > out.txt", cwd=repo / "src")
    assert [e["path"] for e in client.resources.ls("runs/3")] == ["runs/3/src"]
    assert client.resources.ls("runs/3/src")[0]["path"] == "runs/3/src/out.txt"


@pytest.mark.parametrize(
    "flags",
    [
        ["--distributed", "2"],
        ["--auto-resume"],
        ["--no-auto-resume"],
        ["--idempotent"],
        ["--provider", "aws"],
    ],
)
def test_spell_options_not_built_yet_are_refused_by_name(served, flags):
    result = served.spell("run", *flags, "python x.py")
    assert result.returncode == 2, result.stdout
    assert f"`{flags[0]}` is not supported yet" in result.stderr
    assert served.client().runs.list() == []


def test_unknown_options_before_the_command_are_usage_errors(served):
    for flag in ("--no-such-flag", "-Z", "--gpus=2"):
        result = served.spell("run", flag, "echo hi")
        assert result.returncode == 2 and "No such option" in result.stderr, result.stderr
        assert flag.split("=")[0] in result.stderr
    assert served.client().runs.list() == []


def test_options_after_the_command_belong_to_it(served):
    out = spell_ok(served, "run", "-l", "x", "echo", "--epochs", "3", "-v")
    assert "--epochs 3 -v" in out.splitlines()
    assert served.client().runs.get(1).command == "echo --epochs 3 -v"


def test_params_fill_the_command_as_spell_did(served):
    out = spell_ok(served, "run", "--param", "lr=0.1", "--param", "epochs=3", "echo :LR: :EPOCHS:")
    assert "0.1 3" in out.splitlines()
    client = served.client()
    run = client.runs.new(command="echo :SEED:", params={"seed": 7})
    run.wait_status(client.runs.COMPLETE)
    assert user_lines(run) == ["7"]
    with pytest.raises(InvalidArgument, match="has no :missing:"):
        client.runs.new(command="echo", params={"missing": 1})
    with pytest.raises(InvalidArgument, match="letters, digits"):
        client.runs.new(command="echo :A B:", params={"a b": 1})
    bad = served.spell("run", "--param", "novalue", "echo")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    assert [r.id for r in client.runs.list()] == [2, 1]


# Every keyword Spell's documentation gives runs.new (its client, 2019-2022).
SPELL_KEYWORDS = [
    "command",
    "machine_type",
    "workspace_id",
    "commit_hash",
    "commit_label",
    "github_url",
    "github_ref",
    "pip_packages",
    "requirements_file",
    "apt_packages",
    "docker_image",
    "framework",
    "tensorboard_directory",
    "envvars",
    "attached_resources",
    "conda_file",
    "description",
    "idempotent",
    "provider",
    "run_type",
    "cwd",
    "distributed",
    "stop_conditions",
    "labels",
    "project",
    "params",
    "timeout",
    "auto_resume",
    "workflow_id",
]


def test_every_spell_keyword_is_accepted_or_refused_by_name(served):
    accepted = set(inspect.signature(RunsService.body).parameters)
    assert set(SPELL_KEYWORDS) - accepted == set(NOT_YET_SUPPORTED)
    client = served.client()
    for keyword in NOT_YET_SUPPORTED:
        with pytest.raises(UnsupportedArgument, match=rf"runs.new\({keyword}=\.\.\.\) .* yet"):
            client.runs.new(command="true", **{keyword: 1})
    with pytest.raises(UnsupportedArgument, match="unknown keyword argument 'colour'"):
        client.runs.new(command="true", colour="red")
    assert client.runs.list() == []


def test_ps_labels_match_any_and_filters_say_when_nothing_matches(served):
    spell_ok(served, "run", "-l", "a", "echo one")
    spell_ok(served, "run", "-l", "b", "echo two")
    spell_ok(served, "run", "echo three")
    rows = served.spell("ps", "-l", "a", "-l", "b").stdout.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["1", "2"]
    nothing = served.spell("ps", "-s", "killed")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "No runs match these filters"


def test_json_output_for_scripts(served):
    spell_ok(served, "run", "-l", "x", "echo hi; echo x > out.txt")
    runs = json.loads(spell_ok(served, "ps", "--json"))
    assert [(r["id"], r["status"], r["labels"]) for r in runs] == [(1, "complete", ["x"])]
    assert json.loads(spell_ok(served, "ps", "--json", "-s", "failed")) == []

    entries = [json.loads(line) for line in spell_ok(served, "logs", "--json", "1").splitlines()]
    assert [e["offset"] for e in entries] == list(range(len(entries)))
    printed = [e for e in entries if not e["status_event"]]
    assert [(e["text"], e["status"], e["stream"]) for e in printed] == [("hi", "running", "stdout")]
    assert entries[-1]["status"] == "complete"

    listing = json.loads(spell_ok(served, "ls", "--json", "runs/1"))
    assert [(e["path"], e["size"]) for e in listing] == [("runs/1/out.txt", 2)]


def test_logs_verbose_shows_times_and_statuses(served):
    spell_ok(served, "run", "echo hello")
    lines = spell_ok(served, "logs", "-v", "1").splitlines()
    hello = next(line for line in lines if line.endswith(" hello"))
    date, time_, status, _ = hello.split(maxsplit=3)
    assert len(date) == 10 and date[4] == "-" and time_[2] == ":" and status == "running"
    assert spell_ok(served, "logs", "--timestamps", "1").splitlines() == lines


def test_a_wrong_token_or_url_says_which_server_and_what_to_do(served):
    info = served.server_info()
    env = {**served.env, "SPELL_BASE_URL": info["url"], "SPELL_TOKEN": "wrong"}
    result = _spell_with(served, env, "ps")
    assert result.returncode == 1
    assert info["url"] in result.stderr and "refused the token" in result.stderr
    assert "SPELL_TOKEN" in result.stderr

    # a Jupyter server's page that is not the Spell API: a short message, not the HTML
    env = {**served.env, "SPELL_BASE_URL": info["url"] + "no/such/prefix/"}
    result = _spell_with(served, env, "ps")
    assert result.returncode == 1 and "<html" not in result.stderr.lower()
    assert len(result.stderr) < 400 and "not a Spell server's" in result.stderr


def _spell_with(home, env: dict, *args: str):
    import subprocess

    from conftest import SPELL_ARGV

    return subprocess.run([*SPELL_ARGV, *args], env=env, capture_output=True, text=True, timeout=60)
