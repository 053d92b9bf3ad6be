"""SpellFS in the Python API: `client.resources.ls/cp/upload/rm` and link aliases."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..fs.modes import data_mode
from ..fs.paths import BadPath, check_alias, check_upload_name, normalize
from .errors import APIError
from .transport import STREAM_TIMEOUT, quote_path, quote_segment

if TYPE_CHECKING:
    from . import SpellClient

CHUNK = 16 << 20  # bytes per upload request: an interrupted upload resends at most this much
TAR_BLOCK = 4 << 20  # bytes per read of a download's tar
COPY_CHUNK = 256 << 20  # bytes of one file per same-host copy request (progress between)
COPY_BATCH = 4  # files per same-host copy request: the server copies them at once
COPY_THREADS = 4  # files a same-host `cp` copies at once (sendfile releases the GIL)
Progress = Callable[[int], None]  # called with the bytes each request carried


@dataclass
class UploadResult:
    path: str  # uploads/<name>
    total_bytes: int
    sent_bytes: int  # what this call sent (an interrupted upload resumes: less than total)
    files: int
    copied_bytes: int = 0  # of sent_bytes, those the server copied on this host's disk


class LsLine(dict):
    """A listing entry: a dict (path, name, type, size, modified, target) with Spell's
    attributes `path`, `size`, `date`, `additional_info` and `link_target`."""

    @property
    def path(self) -> str:
        return self["path"]

    @property
    def size(self) -> int | None:
        return None if self["type"] == "directory" else self["size"]

    @property
    def date(self) -> datetime | None:
        modified = self.get("modified")
        return datetime.fromisoformat(modified) if modified else None

    @property
    def additional_info(self) -> str:
        return {"directory": "folder", "link": "link"}.get(self["type"], "")

    @property
    def link_target(self) -> str | None:
        return self.get("target")


class ResourcesService:
    def __init__(self, client: SpellClient):
        self._client = client

    @property
    def _http(self):
        return self._client.transport

    def ls(self, path: str = "") -> list[LsLine]:
        """Entries of a SpellFS folder (or the one entry of a file): path, name, type, size,
        modified, and a link's target; each also has Spell's LsLine attributes."""
        clean = _checked(path)
        target = f"resources/{quote_path(clean)}" if clean else "resources"
        return [LsLine(entry) for entry in self._http.json("GET", target)["entries"]]

    def cp(
        self,
        path: str,
        destination_directory: str = ".",
        force: bool = False,
        overwrite: Callable[[Path], bool] | None = None,
        quiet: bool = False,
    ) -> list[str]:
        """Copy a SpellFS file or folder into a local folder, streamed as one tar; returns the
        files written. A local file that exists is kept unless `force`, or `overwrite(path)`
        says yes (it is asked for each), else FileExistsError. Unless `quiet` (Spell's flag),
        it prints what it copied in one line."""
        written = self._copy(path, destination_directory, force, overwrite)
        if not quiet:
            print(f"Copied {len(written)} file(s) from {path} to {destination_directory}")
        return written

    def _copy(
        self,
        path: str,
        destination_directory: str,
        force: bool,
        overwrite: Callable[[Path], bool] | None,
    ) -> list[str]:
        clean = _checked(path)
        if not clean:
            raise ValueError("give a SpellFS path to copy, such as runs/1")
        dest = Path(destination_directory)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            listing = self._http.json("GET", f"local/{quote_path(clean)}", timeout=STREAM_TIMEOUT)
        except APIError as exc:
            if exc.status_code != 412:
                raise
        else:  # the server is on this host, as this user: copy its files on disk
            copied = copy_listed(listing, dest, force, overwrite)
            if copied is not None:
                return copied
        response = self._http.request(
            "GET", f"download/{quote_path(clean)}", stream=True, timeout=STREAM_TIMEOUT
        )
        written: list[str] = []
        with (
            response,
            tarfile.open(
                fileobj=io.BufferedReader(response.raw, TAR_BLOCK),
                mode="r|",
                bufsize=TAR_BLOCK,
                copybufsize=TAR_BLOCK,
            ) as tar,
        ):
            for member in tar:
                target = dest / member.name
                if member.isfile() and target.exists() and not force:
                    if overwrite is None:
                        raise FileExistsError(
                            f"{target} exists: use force=True (spell cp -f) to overwrite it"
                        )
                    if not overwrite(target):
                        continue
                tar.extract(member, dest, filter="data")
                if member.isfile():
                    written.append(os.fspath(target))
        return written

    def upload(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        force: bool = False,
        compress: bool = False,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload a local file or folder to `uploads/<name>` (default: its own name).

        Resumable: run it again after an interruption and only what the server lacks is sent.
        `force` replaces an upload of that name; `compress` gzips each request. A server on this
        host, running as this user, copies the files on disk instead (no bytes go over HTTP, so
        there is nothing to compress)."""
        local = Path(path)
        if not local.exists():
            raise FileNotFoundError(f"{local} does not exist")
        name = _upload_name(name if name is not None else local.resolve().name)
        files = local_files(local)
        declaration = {
            "name": name,
            "force": force,
            "files": [
                {"path": f.rel, "size": f.size, "mode": stat.S_IMODE(f.found.st_mode)}
                for f in files
            ],
        }
        begun = self._http.json("POST", "uploads", json=declaration)
        received: dict[str, int] = begun["received"]
        total = sum(f.size for f in files)
        held = sum(min(received.get(f.rel, 0), f.size) for f in files)
        if progress and held:
            progress(held)
        copied = 0
        if begun.get("copy"):  # same host, same user: the server copies on disk
            copied = self._copy_files(name, files, received, progress)
            if copied < total - held:  # it sees other files than this process: send the rest
                received = self._http.json("POST", "uploads", json=declaration)["received"]
            else:
                received = {f.rel: f.size for f in files}
        sent = copied
        for rel, source, size, _, _ in files:
            offset = received.get(rel, 0)
            if offset >= size:
                continue
            with open(source, "rb") as f:
                f.seek(offset)
                while offset < size:
                    length = self._send_chunk(
                        name, rel, offset, f.read(min(CHUNK, size - offset)), compress, source
                    )
                    offset += length
                    sent += length
                    if progress:
                        progress(length)
        done = self._http.json(
            "POST", "uploads/commit", json={"name": name, "force": force}, timeout=STREAM_TIMEOUT
        )
        return UploadResult(done["path"], total, sent, len(files), copied)

    def upload_once(self, path: str | os.PathLike[str], name: str) -> str:
        """Upload to a content-addressed `name` unless it is there already: its SpellFS path."""
        try:
            return self.upload(path, name=name).path
        except APIError as exc:
            if exc.status_code != 409:  # 409: that very content was sent before
                raise
            return f"uploads/{_upload_name(name)}"

    def _send_chunk(
        self, name: str, rel: str, offset: int, data: bytes, compress: bool, source: Path
    ) -> int:
        if not data:
            raise OSError(f"{source} shrank while it was being uploaded")
        body = gzip.compress(data, compresslevel=1) if compress else data
        self._http.json(
            "PUT",
            "uploads/chunk",
            params={"name": name, "path": rel, "offset": offset},
            content=body,
            headers={"Content-Encoding": "gzip"} if compress else None,
            timeout=STREAM_TIMEOUT,
        )
        return len(data)

    def _copy_files(
        self,
        name: str,
        files: list[LocalFile],
        received: dict[str, int],
        progress: Progress | None,
    ) -> int:
        """Have the server copy what it lacks of `files` on disk, COPY_BATCH files a request;
        the bytes copied, short of what was missing when the server sees other files."""
        pending = {
            f.rel: [received.get(f.rel, 0), f.size, _describe(f)]
            for f in files
            if received.get(f.rel, 0) < f.size
        }
        copied = 0
        while pending:
            batch = [
                {
                    "path": rel,
                    "offset": offset,
                    "length": min(COPY_CHUNK, size - offset),
                    "source": described,
                }
                for rel, (offset, size, described) in list(pending.items())[:COPY_BATCH]
            ]
            try:
                body = {"name": name, "files": batch}
                self._http.json("POST", "uploads/copy", json=body, timeout=STREAM_TIMEOUT)
            except APIError as exc:
                if exc.status_code == 412:
                    return copied
                raise
            for item in batch:
                state = pending[item["path"]]
                state[0] += item["length"]
                if state[0] >= state[1]:
                    del pending[item["path"]]
            moved = sum(item["length"] for item in batch)
            copied += moved
            if progress:
                progress(moved)
        return copied

    def rm(self, path: str) -> None:
        """Remove an upload (or a file or folder in one); runs/ and public/ are read-only."""
        clean = _checked(path)
        self._http.request("DELETE", f"resources/{quote_path(clean)}")

    def links(self) -> dict[str, str]:
        """Every link alias and the SpellFS path it names."""
        return self._http.json("GET", "links")["links"]

    def link(self, alias: str, target: str | None = None) -> str:
        """With `target`, make `alias` name it; either way, the alias's target."""
        _checked_alias(alias)
        if target is None:
            return self._http.json("GET", f"links/{quote_segment(alias)}")["target"]
        body = {"target": _checked(target)}
        return self._http.json("PUT", f"links/{quote_segment(alias)}", json=body)["target"]

    def unlink(self, alias: str) -> None:
        _checked_alias(alias)
        self._http.request("DELETE", f"links/{quote_segment(alias)}")


class LocalFile(NamedTuple):
    """A file to upload: its path in the upload ('' for a file upload), where it is, its size,
    and the real file (links followed) with its stat, stated once."""

    rel: str
    path: Path
    size: int
    real: Path
    found: os.stat_result


def local_files(local: Path) -> list[LocalFile]:
    """The files of an upload. Links are followed only when they stay inside the folder (their
    target's bytes are sent)."""
    if local.is_file():
        real = local.resolve()
        found = real.stat()
        return [LocalFile("", local, found.st_size, real, found)]
    root = local.resolve()
    files = []
    for folder, dirnames, filenames in os.walk(local):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(folder) / name
            real = full.resolve()
            if real != root and root not in real.parents:
                raise ValueError(f"{full} links outside {local}: uploads hold no such links")
            try:
                stated = real.stat()
            except FileNotFoundError:  # a dangling link: nothing to send
                continue
            if stat.S_ISREG(stated.st_mode):
                rel = full.relative_to(local).as_posix()
                files.append(LocalFile(rel, full, stated.st_size, real, stated))
    if not files:
        raise ValueError(f"{local} holds no files to upload")
    return files


def copy_listed(
    listing: dict, dest: Path, force: bool, overwrite: Callable[[Path], bool] | None
) -> list[str] | None:
    """Copy the files a server listed on this host's disk (GET local/PATH) into `dest` as the
    download's tar would have extracted them; None, with nothing written, when this process
    sees other files at those paths (another mount namespace)."""
    root = Path(listing["root"])
    entries = listing["entries"]
    for entry in entries:
        try:
            if os.lstat(root / entry["path"]).st_ino != entry["inode"]:
                return None
        except OSError:
            return None
    top = dest / listing["name"]
    chosen: list[tuple[Path, Path, dict]] = []
    for entry in entries:
        source, target = root / entry["path"], top / entry["path"]
        if entry["type"] == "directory":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry["type"] == "link":
            _check_link(target, entry["target"], dest)
            target.unlink(missing_ok=True)
            target.symlink_to(entry["target"])
            continue
        if target.exists() and not force:
            if overwrite is None:
                raise FileExistsError(
                    f"{target} exists: use force=True (spell cp -f) to overwrite it"
                )
            if not overwrite(target):
                continue
        chosen.append((source, target, entry))
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        return list(pool.map(lambda job: _copy_file(*job), chosen))


def _copy_file(source: Path, target: Path, entry: dict) -> str:
    shutil.copyfile(source, target)  # sendfile: the bytes stay in the kernel
    os.chmod(target, data_mode(entry["mode"]))
    os.utime(target, (entry["mtime"], entry["mtime"]))
    return os.fspath(target)


def _check_link(link: Path, target: str, dest: Path) -> None:
    """Refuse links that leave the destination, as tarfile's "data" filter does."""
    real_dest = os.path.realpath(dest)
    resolved = os.path.realpath(os.path.join(link.parent, target))
    if os.path.isabs(target) or os.path.commonpath([real_dest, resolved]) != real_dest:
        raise ValueError(f"{link} would link to {target!r}, which is outside the destination")


def _describe(file: LocalFile) -> dict:
    """A local file as a server on this host can check it: real path, inode, mtime."""
    found = file.found
    return {"path": os.fspath(file.real), "inode": found.st_ino, "mtime_ns": found.st_mtime_ns}


def _checked(path: str) -> str:
    try:
        return normalize(path)
    except BadPath as exc:
        raise ValueError(str(exc)) from None


def _checked_alias(alias: str) -> str:
    try:
        return check_alias(alias)
    except BadPath as exc:
        raise ValueError(str(exc)) from None


def _upload_name(name: str) -> str:
    try:
        return check_upload_name(name)
    except BadPath as exc:
        raise ValueError(str(exc)) from None
