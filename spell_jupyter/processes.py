"""Whether a process named in a runtime file is still there, and what it is. Read from /proc
(this project runs on Linux): every `spell` command asks, and importing psutil for it would
cost each one 20 ms."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, one that ended but was not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


def is_spell_server_process(pid: int) -> bool:
    """Whether `pid` is a `spell server` (not a process that reused a dead server's pid)."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spell_jupyter.server" in f.read()
    except PermissionError:
        return True
    except OSError:
        return False


def free_ports(count: int = 1, address: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports of `address` free now (the process given them binds them a
    moment later)."""
    import contextlib
    import socket

    with contextlib.ExitStack() as held:  # all held at once: never the same port twice
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((address, 0))
        return [sock.getsockname()[1] for sock in sockets]
