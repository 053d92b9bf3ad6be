"""Thin REST handlers over RunService. Every one is authenticated by jupyter_server; errors are
JSON `{"message": ...}` with 400/404/409, never a 500 for bad input."""

from __future__ import annotations

import asyncio
import functools
import json
import queue
import re
import threading
from collections.abc import Callable

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from .._version import __version__
from ..engine import RunService
from ..errors import SpellError
from ..models import RunKind, RunSpec, Status

API_PREFIX = "/spell/api/v1"
STREAM_POLL_SECONDS = 0.02
WAIT_POLL_SECONDS = 0.05
MAX_WAIT_SECONDS = 60.0


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, e.g. `labels.0: invalid label ...`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def api(method: Callable) -> Callable:
    """Authenticate, then turn SpellError/ValidationError into JSON 4xx answers."""

    @web.authenticated
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            result = method(self, *args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except SpellError as exc:
            raise web.HTTPError(exc.status_code, exc.message) from exc
        except ValidationError as exc:
            raise web.HTTPError(400, describe_validation_error(exc)) from exc

    return wrapper


class SpellHandler(ExtensionHandlerMixin, APIHandler):
    """Base: access to the service, JSON in and out, strict query parsing."""

    @property
    def service(self) -> RunService:
        return self.settings["spell_service"]

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def send(self, model, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())

    def int_arg(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer, not {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise web.HTTPError(400, f"{name} must be {bound}, not {value}")
        return value

    def bool_arg(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise web.HTTPError(400, f"{name} must be true or false, not {raw!r}")

    def enum_args(self, name: str, enum: type) -> list:
        values = []
        for raw in self.get_query_arguments(name):
            try:
                values.append(enum(raw))
            except ValueError:
                known = ", ".join(e.value for e in enum)
                raise web.HTTPError(400, f"unknown {name} {raw!r}: use one of {known}") from None
        return values


class RootHandler(SpellHandler):
    @api
    def get(self):
        engine = self.settings["spell_engine"]
        self.finish(
            {"version": __version__, "spell_home": str(engine.home), "leader": engine.is_leader}
        )


class RunsHandler(SpellHandler):
    @api
    def get(self):
        archived_raw = self.get_query_argument("archived", "false")
        archived = None if archived_raw == "any" else self.bool_arg("archived", False)
        page = self.service.list(
            statuses=self.enum_args("status", Status),
            labels=self.get_query_arguments("label"),
            kinds=self.enum_args("kind", RunKind),
            archived=archived,
            limit=self.int_arg("limit", 50, 1, 1000),
            offset=self.int_arg("offset", 0),
        )
        self.send(page)

    @api
    def post(self):
        spec = RunSpec.model_validate(self.json_body())
        self.send(self.service.submit(spec), status=201)


class RunHandler(SpellHandler):
    @api
    def get(self, run_id: str):
        self.send(self.service.get(int(run_id)))


class StopHandler(SpellHandler):
    @api
    def post(self, run_id: str):
        self.send(self.service.stop(int(run_id)))


class KillHandler(SpellHandler):
    @api
    def post(self, run_id: str):
        self.send(self.service.kill(int(run_id)))


class ArchiveHandler(SpellHandler):
    @api
    def post(self, run_id: str):
        self.send(self.service.archive(int(run_id)))


class LabelHandler(SpellHandler):
    @api
    def put(self, run_id: str, label: str):
        self.send(self.service.add_label(int(run_id), label))

    @api
    def delete(self, run_id: str, label: str):
        self.send(self.service.remove_label(int(run_id), label))


class LogsHandler(SpellHandler):
    """Newline-delimited JSON log entries; with follow=true, until the run is final."""

    @api
    async def get(self, run_id: str):
        rid = int(run_id)
        follow = self.bool_arg("follow")
        offset = self.int_arg("offset", 0)
        tail = self.int_arg("tail", -1, -1)
        self.service.status_of(rid)  # 404 before the stream starts
        if tail >= 0:
            offset = max(offset, self.service.log_count(rid) - tail)
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        try:
            while True:
                final = self.service.status_of(rid).is_final
                entries = self.service.logs(rid, offset)
                if entries:
                    self.write("".join(e.model_dump_json() + "\n" for e in entries))
                    await self.flush()
                    offset = entries[-1].offset + 1
                    continue
                if final or not follow:
                    break
                await asyncio.sleep(STREAM_POLL_SECONDS)
        except StreamClosedError:
            return
        self.finish()


class WaitHandler(SpellHandler):
    """Long poll: answers with the run once its status is one asked for, or final, or at timeout."""

    @api
    async def get(self, run_id: str):
        rid = int(run_id)
        wanted = set(self.enum_args("status", Status))
        timeout = self.int_arg("timeout", 30, 0, int(MAX_WAIT_SECONDS))
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = self.service.status_of(rid)
            if status in wanted or status.is_final:
                break
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_SECONDS)
        self.send(self.service.get(rid))


class StatsHandler(SpellHandler):
    @api
    async def get(self, run_id: str):
        # Docker's stats API samples for about a second: keep it off the event loop.
        self.finish(await asyncio.to_thread(self.service.stats, int(run_id)))


class MachineTypesHandler(SpellHandler):
    @api
    def get(self):
        self.finish(self.service.machine_types_report())


class ResourcesHandler(SpellHandler):
    @api
    def get(self, path: str = ""):
        entries = self.service.ls(path)
        self.finish(
            {"path": path.strip("/"), "entries": [e.model_dump(mode="json") for e in entries]}
        )


class _QueueWriter:
    """A file-like object whose writes become chunks on a bounded queue (for tar streaming)."""

    def __init__(self, chunks: queue.Queue):
        self.chunks = chunks
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        while True:
            if self.cancelled.is_set():
                raise BrokenPipeError("the client went away")
            try:
                self.chunks.put(bytes(data), timeout=0.5)
                return len(data)
            except queue.Full:
                continue


class DownloadHandler(SpellHandler):
    """A SpellFS file or folder as a streamed tar."""

    @api
    async def get(self, path: str):
        self.service.check_path(path)
        self.set_header("Content-Type", "application/x-tar")
        chunks: queue.Queue = queue.Queue(maxsize=32)
        writer = _QueueWriter(chunks)
        done = object()

        def produce() -> None:
            try:
                self.service.write_tar(path, writer)
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


# The OpenAPI spec (openapi.yaml) lists exactly these templates; a test holds them together.
ROUTES: list[tuple[str, type[SpellHandler]]] = [
    ("/", RootHandler),
    ("/runs", RunsHandler),
    ("/runs/{run_id}", RunHandler),
    ("/runs/{run_id}/stop", StopHandler),
    ("/runs/{run_id}/kill", KillHandler),
    ("/runs/{run_id}/archive", ArchiveHandler),
    ("/runs/{run_id}/labels/{label}", LabelHandler),
    ("/runs/{run_id}/logs", LogsHandler),
    ("/runs/{run_id}/wait", WaitHandler),
    ("/runs/{run_id}/stats", StatsHandler),
    ("/machine-types", MachineTypesHandler),
    ("/resources", ResourcesHandler),
    ("/resources/{path}", ResourcesHandler),
    ("/download/{path}", DownloadHandler),
]

PARAMETER_PATTERNS = {"run_id": r"\d+", "label": r"[^/]+", "path": r".+"}


def template_to_regex(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"({PARAMETER_PATTERNS[m.group(1)]})", template)


def route_table() -> list[tuple[str, type[SpellHandler]]]:
    return [(API_PREFIX + template_to_regex(t).rstrip("/") + "/?", h) for t, h in ROUTES]
