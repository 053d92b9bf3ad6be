"""Where spell-jupyter keeps its state. Import-light: used by the CLI and the server."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

SPELL_HOME_ENV = "SPELL_HOME"


def spell_home(value: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: `value`, else `$SPELL_HOME`, else `~/.spell` (absolute, not created)."""
    raw = value or os.environ.get(SPELL_HOME_ENV) or "~/.spell"
    return Path(raw).expanduser().resolve()


def server_info_path(home: Path) -> Path:
    """The file a running `spell server` describes itself in."""
    return home / "server.json"


def server_lock_path(home: Path) -> Path:
    """Held by the one `spell server` process of a data directory."""
    return home / "server.lock"


def server_log_path(home: Path) -> Path:
    """Where a background `spell server` writes its own log."""
    return home / "server.log"


def jupyter_root_path(home: Path) -> Path:
    """The empty private folder a `spell server` gives Jupyter as its root_dir."""
    return home / "jupyter-root"


def run_api_dir(home: Path) -> Path:
    """The private folder of the socket that code inside runs reaches the server through:
    short (a socket's path holds at most 107 bytes), one per data directory, this user's alone.
    Made here; an existing folder that is not this user's (or is a link) is refused."""
    parent = Path(tempfile.gettempdir()) / f"spell-{os.getuid()}"
    folder = parent / hashlib.sha1(str(home).encode()).hexdigest()[:12]
    for path in (parent, folder):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionError(f"{path} is not a folder of this user: remove it")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
    return folder
