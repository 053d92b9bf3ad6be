"""binder/: the files repo2docker reads to launch this repository on a Binder service. A Binder
cannot be started here (no registry for repo2docker's base image), so what can be checked is
checked: the environment and scripts say what a Binder needs, and the example notebook runs, cell
by cell, in a kernel of a Jupyter server with the extension in the environment `binder/start`
gives (the local backend: no Docker in Binder)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import yaml
from test_notebook import Kernel

BINDER = Path(__file__).resolve().parents[1] / "binder"


def test_the_environment_and_scripts_say_what_a_binder_needs():
    environment = yaml.safe_load((BINDER / "environment.yml").read_text())
    wanted = {str(d).split("=")[0] for d in environment["dependencies"]}
    assert {"python", "nodejs", "pip", "git"} <= wanted  # node builds the Lab extension
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"{script} must be executable"
    assert "pip install --no-cache-dir ." in (BINDER / "postBuild").read_text()
    shown = subprocess.run(
        [str(BINDER / "start"), "sh", "-c", 'echo "$SPELL_BACKEND" "$0"', "passed-through"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ["local", "passed-through"]  # then the server's own command


def test_the_example_notebook_runs_in_a_binder_like_lab(home, lab, tmp_path):
    home.env["SPELL_BACKEND"] = "local"  # what binder/start sets
    shutil.copy(BINDER / "example.ipynb", tmp_path / "example.ipynb")  # the Lab's folder
    kernel = Kernel(lab(), home, path="example.ipynb")
    results = []
    try:
        kernel.run(f"import os; os.chdir({str(tmp_path)!r})")  # where the notebook lies
        for cell in nbformat.read(tmp_path / "example.ipynb", as_version=4).cells:
            if cell.cell_type != "code":
                continue
            done = kernel.run(cell.source)
            assert done.status == "ok", (cell.source, done.reply, done.stderr)
            shown = [m["content"]["data"]["text/plain"] for m in done.of_type("execute_result")]
            results.append(shown[-1] if shown else "")
    finally:
        kernel.close()
    assert "'complete'" in results
    assert "285" in results  # the %%spell cell's --out, back in the notebook
    assert "[1.0, 0.5, 0.3333333333333333, 0.25, 0.2]" in results
    assert "[b'285']" in results  # its output file, read through spell://
