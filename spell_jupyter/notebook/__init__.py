"""The notebook face of spell-jupyter: `%spell_run` / `%%spell` magics, a run's live header and
the RunsMonitor widget, over the Python client (never the engine).

`%load_ext spell_jupyter` loads the magics. This package stays import-light: runs import
`spell_jupyter.notebook.execute` and `.cell_runner` from it, where IPython may not exist."""

from __future__ import annotations

__all__ = ["RunHeader", "RunsMonitor", "load_ipython_extension", "load_outputs"]


def load_ipython_extension(ipython) -> None:
    """Register the magics in `ipython` (what `%load_ext spell_jupyter` calls)."""
    from .magics import SpellMagics

    ipython.register_magics(SpellMagics(ipython))


def __getattr__(name: str):
    if name == "RunsMonitor":
        from .monitor import RunsMonitor

        return RunsMonitor
    if name == "load_outputs":
        from .cells import load_outputs

        return load_outputs
    if name == "RunHeader":
        from .header import RunHeader

        return RunHeader
    raise AttributeError(name)
