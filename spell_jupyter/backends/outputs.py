"""Which files a run produced: a manifest of its working directory before it starts, compared
with the directory after it ends."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

Manifest = dict[str, list[int]]  # relative path -> [size, mtime_ns]


def scan(workdir: Path) -> Manifest:
    """Every file and link under `workdir` (links are not followed)."""
    found: Manifest = {}
    for dirpath, dirnames, filenames in os.walk(workdir):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            found[os.path.relpath(full, workdir)] = [st.st_size, st.st_mtime_ns]
    return found


def write_manifest(workdir: Path, path: Path) -> None:
    """Record the working directory as the run starts (only once: a resumed launch keeps it)."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(scan(workdir)))
        os.replace(tmp, path)


def changed_files(workdir: Path, manifest_path: Path) -> list[tuple[str, int]]:
    """(relative path, size) of files that are new or modified since the manifest."""
    before: Manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return sorted((rel, meta[0]) for rel, meta in scan(workdir).items() if before.get(rel) != meta)


def mount_writes(upper: Path) -> list[tuple[str, int]]:
    """(relative path, size) of the files a run wrote under a folder mount: the overlay's upper
    folder, without its whiteouts (character devices that mark deletions)."""
    if not upper.is_dir():
        return []
    found = []
    for rel, (size, _) in scan(upper).items():
        mode = os.lstat(upper / rel).st_mode
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            found.append((rel, size))
    return sorted(found)
