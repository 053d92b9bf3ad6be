"""Notebooks as runs: `spell run nb.ipynb -p NAME VALUE` executes the notebook in the run with
papermill-style parameters and saves the executed notebook and an HTML copy as outputs; a
failing cell fails the run with its traceback in the logs. Also the in-process pieces: parameter
typing and injection, and the checks made before any run exists."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from helpers import write_notebook

from spell_jupyter.client.errors import InvalidArgument
from spell_jupyter.client.notebooks import parse_notebook_command, prepare_notebook
from spell_jupyter.notebook.execute import inject_parameters, parse_value


def executed(home, run_id: int, name: str, tmp_path: Path):
    target = tmp_path / f"out-{run_id}"
    copied = home.spell("cp", f"runs/{run_id}", str(target))
    assert copied.returncode == 0, copied.stderr
    return nbformat.read(target / str(run_id) / name, as_version=4), target / str(run_id)


def cell_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_a_notebook_runs_with_parameters_and_saves_its_executed_copy(any_backend, tmp_path):
    folder = tmp_path / "work"
    write_notebook(folder / "nb.ipynb", "print('n is', n, type(n).__name__)", parameters="n = 1")
    result = any_backend.spell("run", "-f", "nb.ipynb", "-p", "n", "3", cwd=folder, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "n is 3 int" in result.stdout  # each cell's output streams into the logs
    nb, target = executed(any_backend, 1, "nb.executed.ipynb", tmp_path)
    injected = nb.cells[1]
    assert injected.metadata["tags"] == ["injected-parameters"] and "n = 3" in injected.source
    assert cell_text(nb.cells[2]) == "n is 3 int\n"
    assert "n is 3 int" in (target / "nb.executed.html").read_text()
    run = any_backend.client().runs.get(1)
    assert run.command == "python -m spell_jupyter.notebook.execute nb.ipynb -p n 3"


def test_a_failing_notebook_fails_the_run_with_the_cells_traceback(any_backend, tmp_path):
    folder = tmp_path / "work"
    write_notebook(folder / "bad.ipynb", "print('before')", "1 / 0", "print('never')")
    result = any_backend.spell("run", "-f", "bad.ipynb", cwd=folder, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "before" in result.stdout and "ZeroDivisionError" in result.stdout
    assert "never" not in result.stdout
    nb, _ = executed(any_backend, 1, "bad.executed.ipynb", tmp_path)
    assert cell_text(nb.cells[0]) == "before\n"
    assert nb.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert nb.cells[2].execution_count is None  # saved up to the failing cell


def test_a_committed_notebook_comes_with_the_code_an_untracked_one_is_sent(served, tmp_path):
    import git

    repo_dir = tmp_path / "repo"
    write_notebook(repo_dir / "sub" / "nb.ipynb", "print('committed')")
    repo = git.Repo.init(repo_dir)
    repo.index.add(["sub/nb.ipynb"])
    repo.index.commit("a notebook")
    write_notebook(repo_dir / "sub" / "new.ipynb", "print('untracked')")
    first = served.spell("run", "nb.ipynb", cwd=repo_dir / "sub", timeout=300)
    second = served.spell("run", "new.ipynb", cwd=repo_dir / "sub", timeout=300)
    assert first.returncode == 0 and "committed" in first.stdout, first.stderr
    assert second.returncode == 0 and "untracked" in second.stdout, second.stderr
    client = served.client()
    assert client.runs.get(1).attached_resources == {}
    (resource, path), *_ = client.runs.get(2).attached_resources.items()
    assert resource.startswith("uploads/notebook-cells/") and path == "new.ipynb"


def test_parameters_without_a_parameters_cell_are_put_first_with_a_warning(served, tmp_path):
    write_notebook(tmp_path / "plain.ipynb", "print(lr * 2)")
    result = served.spell("run", "-f", "plain.ipynb", "-p", "lr", "0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "has no cell tagged 'parameters'" in result.stderr
    assert "1.0" in result.stdout


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.5", 0.5), ("True", True), ("None", None), ("abc", "abc"), ("1e3", 1000.0)],
)
def test_parameter_values_are_typed_as_papermill_types_them(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_injection_goes_after_the_parameters_cell_and_replaces_an_earlier_one():
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("a = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("import os"), params, nbformat.v4.new_code_cell("a")]
    assert inject_parameters(nb, {"a": 2})
    assert inject_parameters(nb, {"a": 'x"y'})  # run again: one injected cell, the new one
    sources = [c.source for c in nb.cells]
    assert sources == ["import os", "a = 1", "# Parameters\na = 'x\"y'\n", "a"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("nb.ipynb -p n", "come only parameters"),
        ("nb.ipynb --flag x y", "come only parameters"),
        ("nb.ipynb -p 1x 2", "is not a Python name"),
        ("gone.ipynb", "does not exist"),
        ("text.ipynb", "is not a notebook"),
        ("v3.ipynb", "nbformat 3"),
    ],
)
def test_bad_notebook_commands_are_refused_before_any_run(tmp_path, command, message):
    write_notebook(tmp_path / "nb.ipynb", "1")
    (tmp_path / "text.ipynb").write_text("hello")
    (tmp_path / "v3.ipynb").write_text(json.dumps({"nbformat": 3, "cells": []}))
    with pytest.raises(InvalidArgument, match=message):
        prepare_notebook(command, tmp_path, lambda path: False)


def test_a_command_that_is_no_notebook_is_left_alone(tmp_path):
    assert prepare_notebook("python train.py", tmp_path, lambda path: False) is None
    assert parse_notebook_command(["nb.ipynb", "-r", "s", "3"]).command.endswith("-r s 3")


def test_the_executor_needs_nothing_but_the_runs_python(tmp_path):
    """The executor imports nothing of IPython or the server: a run's image has neither."""
    code = (
        "import sys, spell_jupyter.notebook.execute, spell_jupyter.notebook.cell_runner\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('IPython', 'ipywidgets', 'jupyter_server', 'tornado', 'sqlalchemy')))"
    )
    done = subprocess.run(["python3", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_a_notebook_in_cloned_code_is_not_looked_for_here():
    from spell_jupyter.client import SpellClient

    client = SpellClient(token="", base_url="http://127.0.0.1:9/")  # nothing is asked of it
    body, _ = client.runs.body("nb.ipynb -p n 2", github_url="https://example.org/team/repo.git")
    assert body["command"] == "python -m spell_jupyter.notebook.execute nb.ipynb -p n 2"
    assert body["mounts"] == []
