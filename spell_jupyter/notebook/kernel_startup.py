"""Run at the start of IPython kernels started by a Jupyter server whose Spell extension has
`SpellJupyter.autoload_magics` on (it is their PYTHONSTARTUP): loads the magics, then runs the
startup file the user had before, if any."""

import os


def _load_magics() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):  # an IPython kernel, not a terminal
        shell.extension_manager.load_extension("spell_jupyter")


_load_magics()
_previous = os.environ.get("SPELL_PREVIOUS_PYTHONSTARTUP")
if _previous and os.path.isfile(_previous):
    with open(_previous) as _file:
        exec(compile(_file.read(), _previous, "exec"))
