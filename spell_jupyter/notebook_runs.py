"""Notebooks as runs, the words shared by the client (which makes such runs) and the engine
(which builds their environments). Standard library only."""

from __future__ import annotations

EXECUTOR = "python -m spell_jupyter.notebook.execute"  # the command a notebook run runs
# What executing a notebook needs in the run's image; built into environments whose framework
# does not declare them among its packages.
PACKAGES = ("ipykernel", "nbclient", "nbconvert")


def is_notebook_run(command: str) -> bool:
    return command.startswith(EXECUTOR + " ")
