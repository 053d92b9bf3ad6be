"""Same-host copies: bytes moved on disk between a client's files and a local SpellFS root, for
clients on this host running as this server's user (the server checks who; see server/peer.py).

Uploads: the client describes each file (path, inode, mtime); the server opens it, checks it is
still that regular file, and copies ranges with copy_file_range. Downloads: the server lists the
files of a SpellFS path as they lie on disk; the client checks it sees the same inodes and copies
them itself. Either side falls back to HTTP when the check fails (another mount namespace).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, NotHere
from ..models import CopyFile

COPY_BLOCK = 8 << 20  # bytes per read/write where the kernel cannot copy_file_range


@dataclass(frozen=True)
class LocalSource:
    """A client's file as it described it: absolute path, inode and modification time."""

    path: str
    inode: int
    mtime_ns: int

    def open(self) -> int:
        """A read-only descriptor of the file, or NotHere when this host sees another file."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise NotHere(f"this server cannot open {self.path}: {exc.strerror}") from None
        found = os.fstat(fd)
        if (
            not stat.S_ISREG(found.st_mode)
            or found.st_ino != self.inode
            or found.st_mtime_ns != self.mtime_ns
        ):
            os.close(fd)
            raise NotHere(f"{self.path} on this server is not the file the client described")
        return fd


@dataclass(frozen=True)
class CopyRange:
    """`length` bytes at `offset` of a client's file, for the upload's file `path`."""

    path: str
    offset: int
    length: int
    source: LocalSource

    @classmethod
    def of(cls, file: CopyFile) -> CopyRange:
        source = file.source
        return cls(file.path, file.offset, file.length, LocalSource(**source.model_dump()))


def copy_range(source: int, dest: int, offset: int, length: int) -> None:
    """Append `length` bytes of `source` from `offset` to `dest` (in-kernel where it can)."""
    end = offset + length
    while offset < end:
        try:
            moved = os.copy_file_range(source, dest, end - offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            moved = os.write(dest, os.pread(source, min(COPY_BLOCK, end - offset), offset))
        if moved == 0:
            raise InvalidInput(f"the source ended {end - offset} bytes short: it shrank")
        offset += moved


def tree(base: Path) -> list[dict]:
    """Entries of a local file or folder for a client to copy: path (relative to `base`; '' for
    `base` itself), type (file/directory/link), size, mode, mtime, inode, a link's target."""
    found = [_entry(base, "")]
    if found[0]["type"] != "directory":
        return found
    for folder, dirnames, filenames in os.walk(base):
        dirnames.sort()
        rel_folder = Path(folder).relative_to(base)
        for name in [*dirnames, *sorted(filenames)]:
            entry = _entry(Path(folder) / name, (rel_folder / name).as_posix())
            if entry["type"] != "other":  # sockets and pipes are not data
                found.append(entry)
    return found


def _entry(path: Path, rel: str) -> dict:
    info = path.lstat()
    kinds = {stat.S_ISREG: "file", stat.S_ISDIR: "directory", stat.S_ISLNK: "link"}
    kind = next((name for test, name in kinds.items() if test(info.st_mode)), "other")
    entry = {
        "path": rel,
        "type": kind,
        "size": info.st_size if kind == "file" else 0,
        "mode": stat.S_IMODE(info.st_mode),
        "mtime": info.st_mtime,
        "inode": info.st_ino,
    }
    if kind == "link":
        entry["target"] = os.readlink(path)
    return entry
