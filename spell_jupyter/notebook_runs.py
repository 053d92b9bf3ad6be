"""Notebooks as runs, the words shared by the client and the server (which make such runs) and
the engine (which builds their environments). Standard library only."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

EXECUTOR = "python -m spell_jupyter.notebook.execute"  # the command a notebook run runs
# What executing a notebook needs in the run's image; built into environments whose framework
# does not declare them among its packages.
PACKAGES = ("ipykernel", "nbclient", "nbconvert")
# uploads/notebook-cells/<digest>/: files a run needs from where it was asked for (a notebook git
# does not hold, a cell's inputs), kept by content so each is sent once
SHIPPED_PREFIX = "notebook-cells"


def is_notebook_run(command: str) -> bool:
    return command.startswith(EXECUTOR + " ")


def executor_command(path: str, words: list[str] = ()) -> str:
    """The command that executes the notebook at `path` with parameter `words` (-p N V ...)."""
    return f"{EXECUTOR} {shlex.join([path, *words])}"


def read_notebook(local: Path, shown: str) -> dict:
    """The notebook's JSON; ValueError with a clear message when it is missing or not one."""
    if not local.is_file():
        raise ValueError(f"notebook {shown} does not exist (looked at {local})")
    try:
        nb = json.loads(local.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{shown} is not a notebook: {exc}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or "nbformat" not in nb:
        raise ValueError(f"{shown} is not a notebook: it has no nbformat cells")
    if nb["nbformat"] != 4:
        raise ValueError(f"{shown} is nbformat {nb['nbformat']}: save it as nbformat 4")
    return nb


def shipped_name(data: bytes, filename: str) -> str:
    """The upload name a shipped file is kept under (content-addressed: sent once)."""
    digest = hashlib.sha256(data).hexdigest()[:24]
    return f"{SHIPPED_PREFIX}/{digest}/{filename}"
