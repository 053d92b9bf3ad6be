"""Notebooks as runs, on the submitting side: `spell run nb.ipynb -p n 3` becomes a run of
`python -m spell_jupyter.notebook.execute nb.ipynb -p n 3`, after the notebook and its parameters
were checked here (nothing is created when they are wrong).

A notebook git does not hold in the run's code (outside git, or untracked) travels with the run:
it is stored once under `uploads/notebook-cells/<digest>/` and mounted read-only where the run
expects it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .. import notebook_runs
from .errors import InvalidArgument

PARAMETERS_TAG = "parameters"
PARAMETER_FLAGS = {"-p": "-p", "--parameters": "-p", "-r": "-r", "--parameters-raw": "-r"}


@dataclass
class NotebookCommand:
    path: str  # as the user wrote it, relative to the run's working folder
    parameters: list[tuple[str, str, str]]  # (flag, name, value)
    warnings: list[str] = field(default_factory=list)
    local: Path | None = None  # the file here
    shipped: bool = False  # not in the run's code: sent with the run

    @property
    def command(self) -> str:
        words = []
        for flag, name, value in self.parameters:
            words += [flag, name, value]
        return notebook_runs.executor_command(self.path, words)


def notebook_words(command: str) -> list[str] | None:
    """The words of `command` when it names a notebook to execute (`nb.ipynb [-p N V]...`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words if words and words[0].endswith(".ipynb") else None


def parse_notebook_command(words: list[str]) -> NotebookCommand:
    path, rest = words[0], words[1:]
    parameters = []
    while rest:
        flag = rest[0]
        if flag not in PARAMETER_FLAGS or len(rest) < 3:
            raise InvalidArgument(
                f"after the notebook {path} come only parameters, `-p NAME VALUE` (typed as "
                f"papermill types them) or `-r NAME VALUE` (a string); got {shlex.join(rest)!r}"
            )
        name, value = rest[1], rest[2]
        if not name.isidentifier():
            raise InvalidArgument(f"notebook parameter {name!r} is not a Python name")
        parameters.append((PARAMETER_FLAGS[flag], name, value))
        rest = rest[3:]
    return NotebookCommand(path, parameters)


def read_notebook(local: Path, shown: str) -> dict:
    """The notebook's JSON; a clear error when it is missing or not a notebook."""
    try:
        return notebook_runs.read_notebook(local, shown)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def has_parameters_cell(nb: dict) -> bool:
    return any(
        PARAMETERS_TAG in (cell.get("metadata") or {}).get("tags", []) for cell in nb["cells"]
    )


def prepare_notebook(command: str, folder: Path | None, in_code) -> NotebookCommand | None:
    """The notebook run `command` names, checked against the file in `folder` (the run's
    working folder here; None when the code comes from elsewhere, as a --github-url clone);
    None when the command is not a notebook. `in_code(local_path)` says whether the run's code
    already holds that file."""
    words = notebook_words(command)
    if words is None:
        return None
    notebook = parse_notebook_command(words)
    if folder is None:
        return notebook
    local = (folder / notebook.path).resolve()
    nb = read_notebook(local, notebook.path)
    if notebook.parameters and not has_parameters_cell(nb):
        notebook.warnings.append(
            f"{notebook.path} has no cell tagged '{PARAMETERS_TAG}': the parameters go into a new "
            "first cell (tag the cell holding the defaults `parameters` to put them after it)"
        )
    notebook.local = local
    notebook.shipped = not in_code(local)
    return notebook
