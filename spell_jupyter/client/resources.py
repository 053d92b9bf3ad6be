"""SpellFS in the Python API: `client.resources.ls/cp/upload/rm` and link aliases."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..fs.paths import BadPath, check_alias, check_upload_name, normalize
from .transport import STREAM_TIMEOUT, quote_path, quote_segment

if TYPE_CHECKING:
    from . import SpellClient

CHUNK = 16 << 20  # bytes per upload request: an interrupted upload resends at most this much
Progress = Callable[[int], None]  # called with the bytes each request carried


@dataclass
class UploadResult:
    path: str  # uploads/<name>
    total_bytes: int
    sent_bytes: int  # what this call sent (an interrupted upload resumes: less than total)
    files: int


class ResourcesService:
    def __init__(self, client: SpellClient):
        self._client = client

    @property
    def _http(self):
        return self._client.transport

    def ls(self, path: str = "") -> list[dict]:
        """Entries of a SpellFS folder (or the one entry of a file): path, name, type, size,
        modified, and a link's target."""
        clean = _checked(path)
        target = f"resources/{quote_path(clean)}" if clean else "resources"
        return self._http.json("GET", target)["entries"]

    def cp(
        self,
        path: str,
        destination_directory: str = ".",
        force: bool = False,
        overwrite: Callable[[Path], bool] | None = None,
    ) -> list[str]:
        """Copy a SpellFS file or folder into a local folder, streamed as one tar; returns the
        files written. A local file that exists is kept unless `force`, or `overwrite(path)`
        says yes (it is asked for each), else FileExistsError."""
        clean = _checked(path)
        if not clean:
            raise ValueError("give a SpellFS path to copy, such as runs/1")
        dest = Path(destination_directory)
        dest.mkdir(parents=True, exist_ok=True)
        response = self._http.request(
            "GET", f"download/{quote_path(clean)}", stream=True, timeout=STREAM_TIMEOUT
        )
        written: list[str] = []
        with (
            response,
            tarfile.open(fileobj=io.BufferedReader(response.raw, 1 << 20), mode="r|") as tar,
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
        `force` replaces an upload of that name; `compress` gzips each request."""
        local = Path(path)
        if not local.exists():
            raise FileNotFoundError(f"{local} does not exist")
        name = _upload_name(name if name is not None else local.resolve().name)
        files = local_files(local)
        begun = self._http.json(
            "POST",
            "uploads",
            json={
                "name": name,
                "force": force,
                "files": [{"path": rel, "size": size} for rel, _, size in files],
            },
        )
        received: dict[str, int] = begun["received"]
        total = sum(size for _, _, size in files)
        sent = 0
        held = sum(min(received.get(rel, 0), size) for rel, _, size in files)
        if progress and held:
            progress(held)
        for rel, source, size in files:
            offset = received.get(rel, 0)
            if offset >= size:
                continue
            with open(source, "rb") as f:
                f.seek(offset)
                while offset < size:
                    data = f.read(min(CHUNK, size - offset))
                    if not data:
                        raise OSError(f"{source} shrank while it was being uploaded")
                    body = gzip.compress(data, compresslevel=1) if compress else data
                    headers = {"Content-Encoding": "gzip"} if compress else None
                    self._http.json(
                        "PUT",
                        "uploads/chunk",
                        params={"name": name, "path": rel, "offset": offset},
                        content=body,
                        headers=headers,
                        timeout=STREAM_TIMEOUT,
                    )
                    offset += len(data)
                    sent += len(data)
                    if progress:
                        progress(len(data))
        done = self._http.json(
            "POST", "uploads/commit", json={"name": name, "force": force}, timeout=STREAM_TIMEOUT
        )
        return UploadResult(done["path"], total, sent, len(files))

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


def local_files(local: Path) -> list[tuple[str, Path, int]]:
    """(path in the upload, local file, size); '' for a file upload. Links are followed only
    when they stay inside the folder (their target's bytes are sent)."""
    if local.is_file():
        return [("", local, local.stat().st_size)]
    root = local.resolve()
    found = []
    for folder, dirnames, filenames in os.walk(local):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(folder) / name
            real = full.resolve()
            if real != root and root not in real.parents:
                raise ValueError(f"{full} links outside {local}: uploads hold no such links")
            if real.is_file():
                found.append((full.relative_to(local).as_posix(), full, real.stat().st_size))
    if not found:
        raise ValueError(f"{local} holds no files to upload")
    return found


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
