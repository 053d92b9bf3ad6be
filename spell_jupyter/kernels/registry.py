"""Where the kernel provisioner, which jupyter_client creates inside a Jupyter server, finds
the server's Spell services: set by the Spell extension as it starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.kernels import KernelRuns

_kernel_runs: list[KernelRuns] = []


def set_kernel_runs(kernel_runs: KernelRuns) -> None:
    _kernel_runs[:] = [kernel_runs]


def kernel_runs() -> KernelRuns:
    if not _kernel_runs:
        raise RuntimeError(
            "Spell kernels start inside a Jupyter server with the spell_jupyter extension "
            "(JupyterLab after `pip install spell-jupyter`): this one has none"
        )
    return _kernel_runs[0]
