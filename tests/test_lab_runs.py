"""Runs asked for from a file of the Jupyter server's folder (`POST /lab/prepare-run`, what the
Lab's "Run on Spell" calls): the form has the code `spell run` would take there, a file git does
not hold travels with the run, and bad paths are refused with a message."""

from __future__ import annotations

import json
import os

import git
import pytest
from helpers import write_notebook
from test_rest import call, create, error, ndjson, wait_final

from spell_jupyter.notebook_runs import EXECUTOR


async def prepare(jp_fetch, path: str) -> dict:
    response = await call(jp_fetch, "lab", "prepare-run", method="POST", body={"path": path})
    return json.loads(response.body)


async def run_form(jp_fetch, form: dict) -> tuple[dict, str]:
    """Submit the form as the dialog does; the final run and its output."""
    spec = {k: v for k, v in form.items() if k != "warnings"}
    run = await wait_final(jp_fetch, (await create(jp_fetch, **spec))["id"])
    logs = await call(jp_fetch, "runs", str(run["id"]), "logs")
    text = "\n".join(e["text"] for e in ndjson(logs.body) if not e["status_event"])
    return run, text


def _who() -> git.Actor:
    return git.Actor("Test", "test@example.com")


@pytest.fixture
def project(jp_root_dir):
    """A repository in the server's folder: src/train.py committed, then edited; an untracked
    script beside it."""
    root = jp_root_dir / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('committed')\n")
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.index.commit("first", author=_who(), committer=_who())
    (root / "src" / "train.py").write_text("print('edited, not committed')\n")
    (root / "src" / "scratch.sh").write_text("echo scratch in $(pwd)\n")
    return repo


async def test_a_committed_script_runs_with_the_commit_and_the_edit(jp_fetch, project):
    form = await prepare(jp_fetch, "project/src/train.py")
    assert form["command"] == "python train.py"
    assert form["cwd"] == "project/src"
    assert form["code"]["repository"] == "project"
    assert form["code"]["commit"] == project.head.commit.hexsha
    assert form["code"]["patch"]  # the edit travels as a patch
    assert form["mounts"] == []
    run, output = await run_form(jp_fetch, form)
    assert run["status"] == "complete", output
    assert "edited, not committed" in output


async def test_a_file_git_does_not_hold_travels_with_the_run(jp_fetch, project):
    form = await prepare(jp_fetch, "project/src/scratch.sh")
    assert form["command"] == "bash scratch.sh"
    assert form["code"]["repository"] == "project"
    [mount] = form["mounts"]
    assert mount["path"] == "scratch.sh"
    assert mount["resource"].startswith("uploads/notebook-cells/")
    assert any("not committed or added to git" in w for w in form["warnings"])
    assert (await prepare(jp_fetch, "project/src/scratch.sh"))["mounts"] == [mount]  # sent once
    run, output = await run_form(jp_fetch, form)
    assert run["status"] == "complete", output
    assert "scratch in /" in output and output.strip().endswith("project/src")


async def test_outside_git_the_file_alone_travels(jp_fetch, jp_root_dir):
    (jp_root_dir / "loose").mkdir()
    (jp_root_dir / "loose" / "hello world.py").write_text("print('hello from a loose file')\n")
    form = await prepare(jp_fetch, "loose/hello world.py")
    assert form["code"] is None and form["cwd"] == ""
    assert form["command"] == "python 'hello world.py'"
    assert [m["path"] for m in form["mounts"]] == ["hello world.py"]
    run, output = await run_form(jp_fetch, form)
    assert run["status"] == "complete", output
    assert "hello from a loose file" in output


async def test_a_notebook_becomes_a_notebook_run(jp_fetch, jp_root_dir):
    write_notebook(jp_root_dir / "analysis.ipynb", "print(6 * 7)")
    form = await prepare(jp_fetch, "analysis.ipynb")
    assert form["command"] == f"{EXECUTOR} analysis.ipynb"
    assert [m["path"] for m in form["mounts"]] == ["analysis.ipynb"]


@pytest.mark.parametrize(
    ("path", "code", "needle"),
    [
        ("", 400, "name the file"),
        ("../outside.py", 400, "inside the Jupyter server's folder"),
        ("notes.txt", 400, "not .txt"),
        ("Makefile", 400, "not this"),
        ("missing.py", 404, "no file missing.py"),
        ("folder.py", 404, "no file folder.py"),
        ("escape.py", 400, "inside the Jupyter server's folder"),
        ("broken.ipynb", 400, "is not a notebook"),
        ("a\0b.py", 400, "name the file"),
        (".secret/run.py", 400, "is hidden"),
    ],
)
async def test_bad_paths_are_refused_with_a_message(
    jp_fetch, jp_root_dir, tmp_path, path, code, needle
):
    (jp_root_dir / "folder.py").mkdir()
    (tmp_path / "secret.py").write_text("print('outside')\n")
    os.symlink(tmp_path / "secret.py", jp_root_dir / "escape.py")
    (jp_root_dir / "broken.ipynb").write_text("{not json")
    (jp_root_dir / ".secret").mkdir()
    (jp_root_dir / ".secret" / "run.py").write_text("print('hidden')\n")
    status, message = await error(
        jp_fetch, "lab", "prepare-run", method="POST", body={"path": path}
    )
    assert (status, needle in message) == (code, True), message
    listing = await call(jp_fetch, "resources", "uploads")
    assert json.loads(listing.body)["entries"] == []  # nothing shipped for a refused file


@pytest.mark.parametrize("body", ["not json", json.dumps({"path": 3}), json.dumps({})])
async def test_bad_bodies_are_400(jp_fetch, body):
    status, _ = await error(jp_fetch, "lab", "prepare-run", method="POST", body=body)
    assert status == 400
