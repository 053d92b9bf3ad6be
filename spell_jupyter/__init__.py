"""spell-jupyter: Spell's run platform, self-hosted inside Jupyter.

This module stays import-light: the CLI imports it on every start.
"""

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict]:
    """Tell jupyter_server where the extension app lives (imported lazily)."""
    from .server.app import SpellJupyter

    return [{"module": "spell_jupyter.server.app", "app": SpellJupyter}]


def _jupyter_labextension_paths() -> list[dict]:
    """Where the prebuilt JupyterLab extension lies (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "spell-jupyter"}]


def load_ipython_extension(ipython) -> None:
    """`%load_ext spell_jupyter`: the `%spell_run` and `%%spell` magics."""
    from .notebook import load_ipython_extension as load

    load(ipython)
