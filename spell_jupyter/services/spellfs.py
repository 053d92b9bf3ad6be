"""SpellFSManager: what clients may ask of SpellFS (list, download, upload, links, remove, code
blobs). Filesystem errors become the service's errors, so REST answers 4xx with their message."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from ..errors import Conflict, Forbidden, InvalidInput, NotFound, NotHere
from ..fs.modes import data_mode
from ..fs.paths import BadPath, check_upload_name
from ..fs.spellfs import ReadOnlyPath, SpellFileSystem
from ..models import FileInfo, UploadFile, check_relative_path
from .local_copies import CopyRange, copy_range, tree

MAX_CODE_BLOB = 512 << 20  # bytes of one code archive or patch
MAX_CHUNK = 64 << 20  # bytes of one upload request
COPY_THREADS = 4  # files of one same-host copy request copied at once


@contextlib.contextmanager
def spellfs_errors(root: str = "") -> Iterator[None]:
    """Map filesystem errors to NotFound/InvalidInput/Forbidden/Conflict, with messages in
    SpellFS's terms: the server's own folders (`root`) never show in them."""
    try:
        yield
    except BadPath as exc:
        raise InvalidInput(str(exc)) from None
    except ReadOnlyPath as exc:
        raise Forbidden(str(exc)) from None
    except FileExistsError as exc:
        raise Conflict(_in_spellfs_terms(exc, root)) from None
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound(_in_spellfs_terms(exc, root)) from None
    except IsADirectoryError as exc:
        raise InvalidInput(_in_spellfs_terms(exc, root)) from None


def _in_spellfs_terms(exc: OSError, root: str) -> str:
    """`[Errno 2] No such file or directory: '/srv/spell/fs/uploads/x'` -> `No such file or
    directory: uploads/x`."""
    if exc.strerror and exc.filename is not None:
        where = str(exc.filename)
        if root and where.startswith(root.rstrip("/") + "/"):
            where = where[len(root.rstrip("/")) + 1 :]
        elif where.startswith("/"):
            where = where.rsplit("/", 1)[-1]  # a path outside SpellFS: its name only
        return f"{exc.strerror}: {where}"
    return str(exc).replace(root.rstrip("/") + "/", "") if root else str(exc)


class SpellFSManager:
    """SpellFS for clients; uploads are staged on this server's disk until committed."""

    def __init__(self, fs: SpellFileSystem, staging_root: Path):
        self.fs = fs
        self.staging_root = staging_root
        self._lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}

    # -- reading ---------------------------------------------------------------------------------

    def ls(self, path: str) -> list[FileInfo]:
        with spellfs_errors(self.fs.root_path):
            return [_file_info(e) for e in self.fs.ls(path, detail=True)]

    def open_file(self, path: str) -> tuple[BinaryIO, int]:
        """A SpellFS file opened for reading, and its size (InvalidInput for a folder)."""
        with spellfs_errors(self.fs.root_path):
            info = self.fs.info(path)
            if info["type"] != "file":
                raise InvalidInput(f"{self.fs.clean(path)} is a folder: list it, or download it")
            return self.fs.open(path, "rb"), int(info.get("size") or 0)

    def check_path(self, path: str) -> None:
        """Raise InvalidInput/NotFound before a streamed response starts."""
        with spellfs_errors(self.fs.root_path):
            if not self.fs.clean(path):
                raise InvalidInput("give a SpellFS path to copy, such as runs/1")
            self.fs.info(path)

    def write_tar(self, path: str, out: BinaryIO) -> None:
        with spellfs_errors(self.fs.root_path):
            self.fs.write_tar(path, out)

    def local_tree(self, path: str) -> dict:
        """Where `path` lies on this host's disk, file by file, for a same-host copy: {name (as
        a download's tar names it), root (absolute), entries (see local_copies.tree)}."""
        self.check_path(path)
        with spellfs_errors(self.fs.root_path):
            clean = self.fs.clean(path)
            local = self.fs.local_path(clean)
        if local is None:
            raise NotHere(f"{clean} is not on this server's disk (its SpellFS root is remote)")
        return {"name": posixpath.basename(clean), "root": str(local), "entries": tree(local)}

    # -- changing ---------------------------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        """Make a folder (and its parents) under uploads/; one that exists is left as it is."""
        with spellfs_errors(self.fs.root_path):
            if self.fs.isfile(path):
                raise FileExistsError(f"{self.fs.clean(path)} is a file")
            self.fs.makedirs(path, exist_ok=True)

    def rm(self, path: str) -> None:
        with spellfs_errors(self.fs.root_path):
            self.fs.rm(path, recursive=True)

    def links(self) -> dict[str, str]:
        with spellfs_errors(self.fs.root_path):
            return self.fs.links()

    def link_target(self, alias: str) -> str:
        with spellfs_errors(self.fs.root_path):
            return self.fs.link_target(alias)

    def link(self, alias: str, target: str) -> str:
        with spellfs_errors(self.fs.root_path):
            return self.fs.link(alias, target)

    def unlink(self, alias: str) -> None:
        with spellfs_errors(self.fs.root_path):
            self.fs.unlink(alias)

    # -- uploads: begin, send chunks, commit ------------------------------------------------------

    def begin_upload(self, name: str, files: list[UploadFile], force: bool = False) -> dict:
        """Declare an upload's files ({path, size, mode?}; one file with path '' for a file
        upload). Answers what this server already holds of each, so an interrupted upload
        resumes."""
        name = self._upload_name(name)
        declared, modes = self._declared(files)
        with spellfs_errors(self.fs.root_path):
            if self.fs.exists(f"uploads/{name}") and not force:
                raise FileExistsError(f"uploads/{name} exists: use --force to replace it")
        staging = self._staging(name)
        with self._lock_of(staging):
            manifest = staging / "manifest.json"
            before = json.loads(manifest.read_text()) if manifest.exists() else {}
            data = staging / "data"
            for rel, size in before.items():
                if declared.get(rel) != size:  # a file that changed since: start it again
                    _part(data, rel).unlink(missing_ok=True)
            data.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps(declared))
            (staging / "modes.json").write_text(json.dumps(modes))
            received = {rel: _size(_part(data, rel)) for rel in declared}
        return {"name": name, "received": received}

    def upload_chunk(
        self, name: str, rel: str, offset: int, body: bytes, encoding: str | None = None
    ) -> int:
        """Write bytes at `offset` of one declared file; returns how many it now holds."""
        if encoding not in (None, "", "identity", "gzip"):
            raise InvalidInput(f"unsupported Content-Encoding {encoding!r}: use gzip")
        name = self._upload_name(name)
        staging = self._staging(name)
        if encoding == "gzip":  # never inflated past what the file may still hold
            declared = self._manifest(staging, name).get(self._rel(rel))
            if declared is None:
                raise InvalidInput(f"{rel or name!r} was not declared when the upload began")
            room = min(MAX_CHUNK, max(0, declared - offset))
            body = inflate_gzip(body, room)
        with self._lock_of(staging):
            part = self._part_at(staging, name, rel, offset, len(body))
            with open(part, "ab") as f:
                f.write(body)
        return offset + len(body)

    def copy_into_upload(self, name: str, ranges: list[CopyRange]) -> dict[str, int]:
        """Copy byte ranges of files on this host (a client's, each checked to be the file it
        described) into declared files of an upload, several at once; nothing is copied unless
        every range can be. Answers how many bytes each of those files now holds."""
        name = self._upload_name(name)
        staging = self._staging(name)
        rels = [self._rel(r.path) for r in ranges]
        if len(set(rels)) != len(rels):
            raise InvalidInput("a copy names each file of the upload at most once")
        with self._lock_of(staging), contextlib.ExitStack() as opened:
            jobs = []
            for r in ranges:
                part = self._part_at(staging, name, r.path, r.offset, r.length)
                source = r.source.open()
                opened.callback(os.close, source)
                dest = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
                opened.callback(os.close, dest)
                os.lseek(dest, r.offset, os.SEEK_SET)
                jobs.append((source, dest, r.offset, r.length))
            with ThreadPoolExecutor(min(len(jobs), COPY_THREADS) or 1) as pool:
                list(pool.map(lambda job: copy_range(*job), jobs))
        return {rel: r.offset + r.length for rel, r in zip(rels, ranges, strict=True)}

    def _part_at(self, staging: Path, name: str, rel: str, offset: int, length: int) -> Path:
        """The staged part of a declared file, once `offset` is what it holds and `length` more
        bytes fit what was declared (the caller holds the upload's lock)."""
        declared = self._manifest(staging, name)
        rel = self._rel(rel)
        if rel not in declared:
            raise InvalidInput(f"{rel or name!r} was not declared when the upload began")
        part = _part(staging / "data", rel)
        held = _size(part)
        if offset != held:
            raise Conflict(f"this server holds {held} bytes of {rel or name!r}, not {offset}")
        if held + length > declared[rel]:
            raise InvalidInput(f"{rel or name!r} is larger than the {declared[rel]} declared")
        part.parent.mkdir(parents=True, exist_ok=True)
        return part

    def _lock_of(self, staging: Path) -> threading.Lock:
        with self._lock:
            return self._upload_locks.setdefault(staging.name, threading.Lock())

    def commit_upload(self, name: str, force: bool = False) -> str:
        """Move a complete staged upload to uploads/<name>."""
        name = self._upload_name(name)
        staging = self._staging(name)
        declared = self._manifest(staging, name)
        data = staging / "data"
        missing = [
            f"{rel or name} ({_size(_part(data, rel))} of {size} bytes)"
            for rel, size in declared.items()
            if _size(_part(data, rel)) != size
        ]
        if missing:
            raise Conflict(f"the upload is incomplete: {', '.join(missing[:5])}")
        modes_file = staging / "modes.json"
        modes = json.loads(modes_file.read_text()) if modes_file.exists() else {}
        for rel in declared:  # empty files were never sent
            _part(data, rel).parent.mkdir(parents=True, exist_ok=True)
            _part(data, rel).touch()
            if rel in modes:
                os.chmod(_part(data, rel), data_mode(modes[rel]))
        source = _part(data, "") if "" in declared else data
        with spellfs_errors(self.fs.root_path):
            self.fs.commit_upload(name, source, force=force)
        shutil.rmtree(staging, ignore_errors=True)
        return f"uploads/{name}"

    def _upload_name(self, name: str) -> str:
        try:
            return check_upload_name(name)
        except BadPath as exc:
            raise InvalidInput(str(exc)) from None

    def _rel(self, rel: str) -> str:
        try:
            return check_relative_path(rel, "upload file path")
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    def _declared(self, files: list[UploadFile]) -> tuple[dict[str, int], dict[str, int]]:
        """The declared sizes, and the modes of files that give one (0o755 keeps a script
        executable)."""
        declared: dict[str, int] = {}
        modes: dict[str, int] = {}
        for item in files:
            rel = self._rel(item.path)
            declared[rel] = item.size
            if item.mode is not None:
                modes[rel] = item.mode
        if "" in declared and len(declared) > 1:
            raise InvalidInput("a file upload has exactly one file")
        for rel in declared:
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder in declared:
                    raise InvalidInput(f"{folder!r} is a file: it cannot hold {rel!r}")
        return declared, modes

    def _staging(self, name: str) -> Path:
        return self.staging_root / hashlib.sha256(name.encode()).hexdigest()[:24]

    def _manifest(self, staging: Path, name: str) -> dict[str, int]:
        try:
            return json.loads((staging / "manifest.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no upload of {name!r} has begun") from None

    # -- code blobs -------------------------------------------------------------------------------

    def put_code_blob(self, data: bytes) -> str:
        if len(data) > MAX_CODE_BLOB:
            raise InvalidInput(f"a code archive or patch may be at most {MAX_CODE_BLOB >> 20} MiB")
        return self.fs.put_blob(data)

    def has_code_blob(self, digest: str) -> bool:
        with spellfs_errors(self.fs.root_path):
            return self.fs.has_blob(digest)

    def read_code_blob(self, digest: str) -> bytes:
        with spellfs_errors(self.fs.root_path):
            return self.fs.read_blob(digest)


def _part(data: Path, rel: str) -> Path:
    return data / rel if rel else data.with_name("file")


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _file_info(entry: dict) -> FileInfo:
    mtime = entry.get("mtime")
    return FileInfo(
        path=entry["name"],
        name=entry["name"].rsplit("/", 1)[-1],
        type=entry["type"],
        size=entry.get("size") or 0,
        modified=datetime.fromtimestamp(mtime, timezone.utc) if mtime else None,
        target=entry.get("target"),
    )


def inflate_gzip(body: bytes, limit: int) -> bytes:
    """A gzip chunk inflated, refused as soon as it would grow past `limit` bytes (a "gzip
    bomb" costs the server `limit` bytes and milliseconds, not gigabytes)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the chunk is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise InvalidInput(
            f"the gzip chunk inflates past the {limit} bytes its file may still hold"
        )
    if not inflater.eof:
        raise InvalidInput("the chunk is not valid gzip: it ends early")
    if inflater.unused_data:
        raise InvalidInput("the chunk holds data after its gzip stream: send one per request")
    return out
