"""Widgets that answer while their cell is busy: a kernel subshell (JEP 91, ipykernel >= 7)
handles their clicks in a thread of its own, so the Stop button of a run whose logs a cell is
following works while it follows. Kernels without subshells handle them when the cell ends."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_subshell: list[str | None] = []  # created once per kernel: [id] or [None]


def widget_subshell() -> str | None:
    """This kernel's subshell for widget messages, created on first use; None without one."""
    with _lock:
        if not _subshell:
            _subshell.append(_create())
        return _subshell[0]


def _create() -> str | None:
    try:
        from ipykernel.kernelbase import Kernel

        if not Kernel.initialized() or not getattr(
            Kernel.instance(), "_supports_kernel_subshells", False
        ):
            return None
        from ipykernel.connect import get_connection_info
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_info(get_connection_info(unpack=True))
        client.start_channels(shell=False, iopub=False, stdin=False, hb=False, control=True)
        try:  # this kernel's own control channel, as a frontend would ask
            client.control_channel.send(client.session.msg("create_subshell_request", {}))
            reply = client.control_channel.get_msg(timeout=10)
        finally:
            client.stop_channels()
        return reply["content"].get("subshell_id")
    except Exception:  # no subshells here: clicks wait for the cell
        return None


def answer_while_busy(*widgets) -> bool:
    """Route the frontend's messages for `widgets` to the subshell; False when there is none."""
    subshell = widget_subshell()
    if subshell is None:
        return False
    for widget in widgets:
        comm = getattr(widget, "comm", None)
        if comm is not None:
            comm._reply_subshell_for = lambda data, default: subshell
    return True
