"""SpellFS over REST: listings, streamed tar downloads, resumable uploads, link aliases, removal,
and the code blobs (commit archives and patches) that runs are made from."""

from __future__ import annotations

import asyncio
import queue
import re
import threading

from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import InvalidInput
from ..models import BeginUpload, CommitUpload, CopyIntoUpload, LinkRequest
from ..services.local_copies import CopyRange
from ..services.run_access import Level
from ..services.spellfs import MAX_CHUNK
from .base import SpellHandler, api

TAR_CHUNK = 1 << 20  # bytes per streamed chunk of a download


class ResourcesHandler(SpellHandler):
    run_tokens = {"get": Level.WORKFLOW}

    @api
    async def get(self, path: str = ""):
        entries = await self.call(self.resources.ls, path)
        self.finish(
            {"path": path.strip("/"), "entries": [e.model_dump(mode="json") for e in entries]}
        )


class ResourceHandler(ResourcesHandler):
    """One SpellFS path: list it, make it a folder or remove it (uploads only)."""

    @api
    async def put(self, path: str):
        await self.call(self.resources.mkdir, path)
        self.set_status(204)
        self.finish()

    @api
    async def delete(self, path: str):
        await self.call(self.resources.rm, path)
        self.set_status(204)
        self.finish()


RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `Range: bytes=A-B` within `size`; None for the whole
    file; InvalidInput for what cannot be served (416 would hide the reason)."""
    if not header:
        return None
    match = RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise InvalidInput(f"Range {header!r}: only one range, bytes=START-END, is served")
    first, last = match.groups()
    if first == "":  # the last N bytes
        return max(0, size - int(last)), size
    start, end = int(first), size if last == "" else min(size, int(last) + 1)
    return start, max(start, end)


class FileHandler(SpellHandler):
    """One SpellFS file's bytes, whole or a range of them (Range: bytes=START-END)."""

    run_tokens = {"get": Level.WORKFLOW}

    @api
    async def get(self, path: str):
        loop = asyncio.get_running_loop()
        opened, size = await self.call(self.resources.open_file, path)
        try:
            wanted = byte_range(self.request.headers.get("Range"), size)
            start, end = wanted or (0, size)
            if wanted is not None:
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {start}-{max(start, end - 1)}/{size}")
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(end - start))
            await loop.run_in_executor(None, opened.seek, start)
            left = end - start
            while left > 0:
                chunk = await loop.run_in_executor(None, opened.read, min(TAR_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                self.write(chunk)
                await self.flush()
        finally:
            opened.close()
        self.finish()


class _QueueWriter:
    """A file-like object whose writes become ~1 MiB chunks on a bounded queue."""

    def __init__(self, chunks: queue.Queue):
        self.chunks = chunks
        self.cancelled = threading.Event()
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= TAR_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = bytes(self._buffer), bytearray()
        while True:
            if self.cancelled.is_set():
                raise BrokenPipeError("the client went away")
            try:
                self.chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue


class DownloadHandler(SpellHandler):
    """A SpellFS file or folder as a streamed tar."""

    run_tokens = {"get": Level.WORKFLOW}

    @api
    async def get(self, path: str):
        await self.call(self.resources.check_path, path)
        self.set_header("Content-Type", "application/x-tar")
        chunks: queue.Queue = queue.Queue(maxsize=16)
        writer = _QueueWriter(chunks)
        done = object()

        def produce() -> None:
            try:
                self.resources.write_tar(path, writer)
                writer.flush()
                chunks.put(done)
            except BrokenPipeError:
                pass
            except Exception as exc:  # surfaced below, mid-stream
                chunks.put(exc)

        threading.Thread(target=produce, daemon=True).start()
        loop = asyncio.get_running_loop()
        try:
            while (chunk := await loop.run_in_executor(None, chunks.get)) is not done:
                if isinstance(chunk, Exception):
                    raise chunk
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            writer.cancelled.set()
            return
        self.finish()


class LocalTreeHandler(SpellHandler):
    """Where a SpellFS file or folder lies on this host's disk, file by file, for a client on
    this host (as this server's user) to copy itself; 412 for any other client."""

    run_tokens = {"get": Level.WORKFLOW}  # never a run's (its socket is no peer): 412

    @api
    async def get(self, path: str):
        self.require_local_peer()
        self.finish(await self.call(self.resources.local_tree, path))


class UploadsHandler(SpellHandler):
    """Begin (or resume) an upload: {name, files: [{path, size}], force}."""

    run_tokens = {"post": Level.WORKFLOW}

    @api
    async def post(self):
        body = BeginUpload.model_validate(self.json_body())
        begun = await self.call(self.resources.begin_upload, body.name, body.files, body.force)
        self.finish({**begun, "copy": self.is_local_peer()})


class UploadChunkHandler(SpellHandler):
    """PUT ?name=&path=&offset= with the bytes (gzip when Content-Encoding says so)."""

    run_tokens = {"put": Level.WORKFLOW}

    @api
    async def put(self):
        name = self.get_query_argument("name", "")
        rel = self.get_query_argument("path", "")
        offset = self.int_arg("offset", 0)
        encoding = self.request.headers.get("Content-Encoding")
        if len(self.request.body) > MAX_CHUNK:
            raise web.HTTPError(413, f"an upload chunk is at most {MAX_CHUNK >> 20} MiB")
        held = await self.call(
            self.resources.upload_chunk, name, rel, offset, self.request.body, encoding
        )
        self.finish({"received": held})


class UploadCopyHandler(SpellHandler):
    """POST {name, files: [{path, offset, length, source: {path, inode, mtime_ns}}]}: copy byte
    ranges of files on this host into an upload (clients on this host, as this server's user;
    412 for any other, or when a source is not the file described)."""

    run_tokens = {"post": Level.WORKFLOW}  # never a run's (its socket is no peer): 412

    @api
    async def post(self):
        self.require_local_peer()
        body = CopyIntoUpload.model_validate(self.json_body())
        ranges = [CopyRange.of(file) for file in body.files]
        held = await self.call(self.resources.copy_into_upload, body.name, ranges)
        self.finish({"received": held})


class UploadCommitHandler(SpellHandler):
    """Make a complete upload uploads/<name>: {name, force}."""

    run_tokens = {"post": Level.WORKFLOW}

    @api
    async def post(self):
        body = CommitUpload.model_validate(self.json_body())
        path = await self.call(self.resources.commit_upload, body.name, body.force)
        self.finish({"path": path})


class LinksHandler(SpellHandler):
    run_tokens = {"get": Level.WORKFLOW}

    @api
    async def get(self):
        self.finish({"links": await self.call(self.resources.links)})


class LinkHandler(SpellHandler):
    run_tokens = {"get": Level.WORKFLOW}

    @api
    async def get(self, alias: str):
        self.finish({"alias": alias, "target": await self.call(self.resources.link_target, alias)})

    @api
    async def put(self, alias: str):
        target = LinkRequest.model_validate(self.json_body()).target
        self.finish({"alias": alias, "target": await self.call(self.resources.link, alias, target)})

    @api
    async def delete(self, alias: str):
        await self.call(self.resources.unlink, alias)
        self.set_status(204)
        self.finish()


class CodeBlobsHandler(SpellHandler):
    """POST a commit archive or a patch; answers its sha256."""

    run_tokens = {"post": Level.WORKFLOW}

    @api
    async def post(self):
        digest = await self.call(self.resources.put_code_blob, self.request.body)
        self.set_status(201)
        self.finish({"digest": digest})


class CodeBlobHandler(SpellHandler):
    """HEAD: is a blob stored? GET: the blob."""

    run_tokens = {"head": Level.WORKFLOW, "get": Level.WORKFLOW}

    @api
    async def head(self, digest: str):
        stored = await self.call(self.resources.has_code_blob, digest)
        self.set_status(200 if stored else 404)
        self.finish()

    @api
    async def get(self, digest: str):
        blob = await self.call(self.resources.read_code_blob, digest)
        self.finish(blob, set_content_type="application/octet-stream")  # APIHandler: JSON
