"""SpellFS over a root folder. Paths are checked by `paths.normalize` and may never resolve
outside the root (symlinks included)."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidInput, NotFound
from ..models import FileInfo
from .paths import NAMESPACES, BadPath, normalize, run_path


class SpellFS:
    """The SpellFS namespace stored in a local folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        for namespace in NAMESPACES:
            (self.root / namespace).mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[str, Path]:
        """(normalised SpellFS path, local path), refusing anything outside the root."""
        try:
            clean = normalize(path)
        except BadPath as exc:
            raise InvalidInput(str(exc)) from exc
        local = self.root / clean if clean else self.root
        parent = local.parent.resolve() if clean else self.root
        if parent != self.root and self.root not in parent.parents:
            raise InvalidInput(f"{path!r} resolves outside SpellFS")
        return clean, local

    # -- reading -------------------------------------------------------------------------------

    def info(self, path: str = "") -> FileInfo:
        """One entry; NotFound if it does not exist, InvalidInput if it is not a SpellFS path."""
        return self._lstat(*self.resolve(path))

    def ls(self, path: str = "") -> list[FileInfo]:
        """The entries of a folder, or the one entry of a file."""
        clean, local = self.resolve(path)
        info = self._lstat(clean, local)
        if info.type != "directory":
            return [info]
        entries = []
        with os.scandir(local) as it:
            for entry in it:
                child = f"{clean}/{entry.name}" if clean else entry.name
                entries.append(self._lstat(child, Path(entry.path)))
        return sorted(entries, key=_sort_key)

    def write_tar(self, path: str, out: BinaryIO) -> None:
        """Stream `path` (file or folder) as an uncompressed tar; links stay links."""
        clean, local = self.resolve(path)
        self._lstat(clean, local)  # NotFound before any byte is written
        arcname = local.name if clean else "spellfs"
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(local), arcname=arcname, recursive=True)

    # -- run outputs -----------------------------------------------------------------------------

    def save_run_outputs(self, run_id: int, workdir: Path, relpaths: list[str]) -> None:
        """Move the given files of a finished run's working directory to `runs/<id>/`."""
        dest_root = self.root / run_path(run_id)
        dest_root.mkdir(parents=True, exist_ok=True)
        for rel in relpaths:
            src = workdir / rel
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dest)
            except OSError:
                shutil.copy2(src, dest, follow_symlinks=False)

    def run_outputs_path(self, run_id: int) -> Path:
        return self.root / run_path(run_id)

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _lstat(clean: str, local: Path) -> FileInfo:
        try:
            st = local.lstat()
        except FileNotFoundError:
            raise NotFound(f"{clean or '/'} does not exist in SpellFS") from None
        if stat.S_ISDIR(st.st_mode):
            kind = "directory"
        elif stat.S_ISLNK(st.st_mode):
            kind = "link"
        else:
            kind = "file"
        return FileInfo(
            path=clean,
            name=local.name if clean else "",
            type=kind,
            size=st.st_size if kind == "file" else 0,
            modified=datetime.fromtimestamp(st.st_mtime, timezone.utc),
        )


def _sort_key(info: FileInfo):
    return (int(info.name) if info.name.isdigit() else float("inf"), info.name)
