"""Thin REST handlers over RunManager. Every one is authenticated by jupyter_server; errors are
JSON `{"message": ...}` with 400/403/404/409, never a 500 for bad input."""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import datetime

from tornado import web
from tornado.iostream import StreamClosedError

from .._version import __version__
from ..errors import InvalidInput
from ..models import (
    LocalReport,
    PrepareRun,
    RunAction,
    RunKind,
    RunPage,
    RunSpec,
    SendMetrics,
    Status,
)
from ..services.run_access import Level
from .base import SpellHandler, api
from .resource_handlers import (
    CodeBlobHandler,
    CodeBlobsHandler,
    DownloadHandler,
    FileHandler,
    LinkHandler,
    LinksHandler,
    LocalTreeHandler,
    ResourceHandler,
    ResourcesHandler,
    UploadChunkHandler,
    UploadCommitHandler,
    UploadCopyHandler,
    UploadsHandler,
)
from .workspace_handlers import WorkspaceHandler, WorkspacesHandler, WorkspaceStopHandler

API_PREFIX = "/spell/api/v1"
FEED_SAFETY_SECONDS = 5.0  # a follower also looks at the store this often (never needed)
MAX_WAIT_SECONDS = 60.0
METRIC_POLL_SECONDS = 0.25  # a metric follower looks at the store this often (other writers)


class RootHandler(SpellHandler):
    run_tokens = {"get": Level.ANY}

    @api
    def get(self):
        engine = self.settings["spell_engine"]
        self.finish(
            {
                "version": __version__,
                "spell_home": str(engine.home),
                "leader": engine.is_leader,
                "spell_server": self.settings.get("spell_is_spell_server", False),
                "pid": os.getpid(),
                "frameworks": self.service.frameworks.names(),
                "spellfs_folders": self.resources.fs.local_folders(),
            }
        )


class RunsHandler(SpellHandler):
    run_tokens = {"get": Level.WORKFLOW, "post": Level.WORKFLOW}

    @api
    async def get(self):
        archived_raw = self.get_query_argument("archived", "false")
        archived = None if archived_raw == "any" else self.bool_arg("archived", False)
        workflow = self.int_arg("workflow", 0, 0) or None
        if self.run_holder is not None:  # a workflow's master sees its workflow alone
            workflow = self.run_holder.workflow_id
        owner = self.get_query_argument("owner", None)
        if self.bool_arg("mine", False):
            owner = await self.owner()
        page = await self.call(
            self.service.list,
            statuses=self.enum_args("status", Status),
            labels=self.get_query_arguments("label"),
            kinds=self.enum_args("kind", RunKind),
            archived=archived,
            limit=self.int_arg("limit", 50, 1, 1000),
            offset=self.int_arg("offset", 0),
            workflow_id=workflow,
            search_id=self.int_arg("search", 0, 0) or None,
            project=self.get_query_argument("project", None),
            owner=owner,
        )
        self.send(page)

    @api(action="execute")  # a run executes its command
    async def post(self):
        spec = RunSpec.model_validate(self.json_body())
        workflow = self.run_holder.workflow_id if self.run_holder is not None else None
        owner = await self.owner()
        self.send(await self.call(self.service.submit, spec, workflow, owner), status=201)


class RunHandler(SpellHandler):
    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        self.send(await self.call(self.service.get, int(run_id)))


class StopHandler(SpellHandler):
    run_tokens = {"post": Level.WORKFLOW}
    run_in_path = True

    @api
    async def post(self, run_id: str):
        self.send(await self.call(self.service.stop, int(run_id)))


class KillHandler(SpellHandler):
    run_tokens = {"post": Level.WORKFLOW}
    run_in_path = True

    @api
    async def post(self, run_id: str):
        self.send(await self.call(self.service.kill, int(run_id)))


class ArchiveHandler(SpellHandler):
    @api
    async def post(self, run_id: str):
        self.send(await self.call(self.service.archive, int(run_id)))


class LabelHandler(SpellHandler):
    run_tokens = {"put": Level.WORKFLOW, "delete": Level.WORKFLOW}
    run_in_path = True

    @api
    async def put(self, run_id: str, label: str):
        self.send(await self.call(self.service.add_label, int(run_id), label))

    @api
    async def delete(self, run_id: str, label: str):
        self.send(await self.call(self.service.remove_label, int(run_id), label))


class LogsHandler(SpellHandler):
    """Newline-delimited JSON log entries; with follow=true, until the run is final;
    download=true: the lines' text as a file (run-<id>-logs.txt)."""

    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        rid = int(run_id)
        follow = self.bool_arg("follow")
        offset = self.int_arg("offset", 0)
        tail = self.int_arg("tail", -1, -1)
        download = self.bool_arg("download")
        if download and follow:
            raise InvalidInput("download=true gives the log as it is now: leave out follow")
        await self.call(self.service.status_of, rid)  # 404 before the stream starts
        if tail >= 0:
            offset = max(offset, await self.call(self.service.log_count, rid) - tail)
        if download:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="run-{rid}-logs.txt"')
        else:
            self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        # Subscribed before the store is read: what is written after that comes from the feed.
        subscription = self.service.feed.subscribe(rid) if follow else None
        try:
            await self.flush()  # the headers now: an empty log is ndjson too, not JSON
            while True:
                final = (await self.call(self.service.status_of, rid)).is_final
                entries = await self.call(self.service.logs, rid, offset)
                if entries:
                    if download:
                        self.write("".join(e.text + "\n" for e in entries))
                    else:
                        self.write("".join(e.model_dump_json() + "\n" for e in entries))
                    await self.flush()
                    offset = entries[-1].offset + 1
                    continue
                if final or subscription is None:
                    break
                offset = await self._follow(subscription, offset)
        except StreamClosedError:
            return
        finally:
            if subscription is not None:
                subscription.close()
        self.finish()

    async def _follow(self, subscription, offset: int) -> int:
        """Stream what the feed has until the run's final status was sent, the follower fell
        behind the feed's buffer, or a while passed (then the store is asked again)."""
        while True:
            await subscription.wait(FEED_SAFETY_SECONDS)
            lines = await self.call(subscription.take, offset)  # JSON made off the IOLoop
            if not lines:
                return offset  # None: behind the buffer; []: quiet for a while
            self.write("".join(lines))
            await self.flush()
            offset += len(lines)
            status = subscription.status
            if status is not None and status.is_final:
                return offset


class WaitHandler(SpellHandler):
    """Long poll: answers with the run once its status is one asked for, or final, or at timeout."""

    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        rid = int(run_id)
        wanted = set(self.enum_args("status", Status))
        timeout = self.int_arg("timeout", 30, 0, int(MAX_WAIT_SECONDS))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        subscription = self.service.feed.subscribe(rid)  # status changes are log entries
        try:
            while True:
                status = await self.call(self.service.status_of, rid)
                if status in wanted or status.is_final or loop.time() >= deadline:
                    break
                await subscription.wait(min(deadline - loop.time(), FEED_SAFETY_SECONDS))
        finally:
            subscription.close()
        self.send(await self.call(self.service.get, rid))


class EventsHandler(SpellHandler):
    """Server-sent events: `run` (a run as it is now, each time one is created or changes:
    status, labels, archived; the event's ID is the change's, so EventSource resumes after a
    reconnect with nothing missing) and `metrics` ({run_id}: new values arrived)."""

    KEEPALIVE_SECONDS = 15.0

    @api
    async def get(self):
        changes = self.settings["spell_changes"]
        duration = self.int_arg("timeout", 0, 0, 86400)  # 0: until the client leaves
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration else None
        listener = changes.subscribe()  # before reading the store: nothing falls between
        try:
            cursor = self._cursor(await self.call(self.service.last_change))
            self.set_header("Content-Type", "text/event-stream")
            self.set_header("Cache-Control", "no-cache")
            self.set_header("X-Accel-Buffering", "no")  # no proxy holds the events back
            self.write(f"retry: 2000\nid: {cursor}\n\n")  # where this stream stands
            await self.flush()
            while True:
                cursor, runs = await self.call(self.service.changed_since, cursor)
                for run in runs:
                    data = json.dumps(run.model_dump(mode="json"), ensure_ascii=True)
                    self.write(f"id: {cursor}\nevent: run\ndata: {data}\n\n")
                for run_id in listener.take_metrics():
                    self.write(f"event: metrics\ndata: {json.dumps({'run_id': run_id})}\n\n")
                if runs:
                    continue  # more may be waiting beyond the batch
                await self.flush()
                left = self.KEEPALIVE_SECONDS if deadline is None else deadline - loop.time()
                if left <= 0:
                    self.write(f"id: {cursor}\n\n")  # a follower resumes from here
                    break
                if not await listener.wait(min(left, self.KEEPALIVE_SECONDS)):
                    self.write(": keepalive\n\n")
        except StreamClosedError:
            return  # the panel went away
        finally:
            listener.close()
        self.finish()

    def _cursor(self, newest: int) -> int:
        """Where to start: after the Last-Event-ID a reconnecting EventSource sends, or
        `since`, else now (the panel reads the current list itself)."""
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("since", "")
        if not raw:
            return newest
        if not raw.isdigit() or len(raw) > 18:
            raise InvalidInput(f"the event ID to resume after is a number, not {raw[:40]!r}")
        return min(int(raw), newest)


class StatsHandler(SpellHandler):
    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        # Docker's stats API samples for about a second: keep it off the event loop.
        self.finish(await self.call(self.service.stats, int(run_id)))


class PatchHandler(SpellHandler):
    """The uncommitted changes a run's code was made with (a git patch)."""

    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        patch = await self.call(self.service.patch_of, int(run_id))
        self.finish(patch, set_content_type="text/x-diff")  # APIHandler would say JSON


class GroupActionHandler(SpellHandler):
    """POST /workflows/<id>/stop|kill (its master and active workers) and the same for
    /searches/<id> (the search and its active runs): the runs asked, as a page."""

    workflow = True

    @api
    async def post(self, run_id: str, action: str):
        asked = await self.call(
            self.service.stop_group, int(run_id), RunAction(action), workflow=self.workflow
        )
        self.send(RunPage(runs=asked, total=len(asked), offset=0, limit=len(asked)))


class WorkflowActionHandler(GroupActionHandler):
    run_tokens = {"post": Level.WORKFLOW}
    run_in_path = True


class LocalMasterHandler(SpellHandler):
    """POST /workflows/<id>/local {token?, exit_code?}: the submitter of a --local master
    reports (the server's own token only: it holds the run, not the run it)."""

    @api(action="execute")
    async def post(self, run_id: str):
        report = LocalReport.model_validate(self.json_body())
        self.finish(await self.call(self.service.report_local, int(run_id), report))


class SearchActionHandler(GroupActionHandler):
    run_tokens = {"post": Level.WORKFLOW}
    run_in_path = True
    workflow = False


class MetricsHandler(SpellHandler):
    """GET: each metric's count and last value. POST {metrics: [{name, value, index?,
    timestamp?}]}: values from the run itself (its token), or from the server's own."""

    run_tokens = {"get": Level.RUN, "post": Level.OWN}
    run_in_path = True

    @api
    async def get(self, run_id: str):
        summary = await self.call(self.metrics.summary, int(run_id))
        self.finish(json.dumps({"metrics": summary}, default=_json_default))

    @api
    async def post(self, run_id: str):
        batch = SendMetrics.model_validate(self.json_body())
        count = await self.call(self.metrics.send, int(run_id), batch)
        self.finish({"received": count})


class MetricHandler(SpellHandler):
    """One metric's values as NDJSON [timestamp, index, value], in the order they arrived;
    follow=true streams new ones until the run is final. start=INDEX skips earlier indexes."""

    run_tokens = {"get": Level.RUN}
    run_in_path = True

    @api
    async def get(self, run_id: str, name: str):
        rid = int(run_id)
        follow = self.bool_arg("follow")
        start = self.int_arg("start", 0)
        await self.call(self.service.status_of, rid)  # 404 before the stream starts
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        signal = self.metrics.signals.subscribe(rid) if follow else None
        after = -1
        try:
            await self.flush()
            while True:
                final = (await self.call(self.service.status_of, rid)).is_final
                rows = await self.call(
                    self.metrics.rows, rid, name, after_seq=after, start_index=start
                )
                if rows:
                    self.write("".join(_metric_line(r) for r in rows))
                    await self.flush()
                    after = rows[-1]["seq"]
                    continue
                if final or signal is None:
                    break
                await signal.wait(METRIC_POLL_SECONDS)
        except StreamClosedError:
            return
        finally:
            if signal is not None:
                signal.close()
        self.finish()


def _metric_line(row: dict) -> str:
    value = row["text"] if row["value"] is None else row["value"]
    return json.dumps([row["timestamp"].isoformat(), row["index"], value]) + "\n"


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


class PrepareRunHandler(SpellHandler):
    """The new-run form for a file of this Jupyter server's folder ("Run on Spell" in the Lab):
    its code stored, the file shipped when git does not hold it. Never for a run's token."""

    @api(action="execute")
    async def post(self):
        body = PrepareRun.model_validate(self.json_body())
        self.finish(await self.call(self.settings["spell_lab_runs"].prepare, body.path))


class MachineTypesHandler(SpellHandler):
    run_tokens = {"get": Level.ANY}

    @api
    async def get(self):
        self.finish(await self.call(self.service.machine_types_report))


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
    ("/events", EventsHandler),
    ("/workflows/{run_id}/local", LocalMasterHandler),
    ("/workflows/{run_id}/{action}", WorkflowActionHandler),
    ("/searches/{run_id}/{action}", SearchActionHandler),
    ("/runs/{run_id}/metrics", MetricsHandler),
    ("/runs/{run_id}/metrics/{name}", MetricHandler),
    ("/machine-types", MachineTypesHandler),
    ("/lab/prepare-run", PrepareRunHandler),
    ("/runs/{run_id}/patch", PatchHandler),
    ("/resources", ResourcesHandler),
    ("/resources/{path}", ResourceHandler),
    ("/download/{path}", DownloadHandler),
    ("/files/{path}", FileHandler),
    ("/local/{path}", LocalTreeHandler),
    ("/uploads", UploadsHandler),
    ("/uploads/chunk", UploadChunkHandler),
    ("/uploads/copy", UploadCopyHandler),
    ("/uploads/commit", UploadCommitHandler),
    ("/links", LinksHandler),
    ("/links/{alias}", LinkHandler),
    ("/code", CodeBlobsHandler),
    ("/code/{digest}", CodeBlobHandler),
    ("/workspaces", WorkspacesHandler),
    ("/workspaces/{workspace}", WorkspaceHandler),
    ("/workspaces/{workspace}/stop", WorkspaceStopHandler),
]

PARAMETER_PATTERNS = {
    "run_id": r"\d{1,18}",  # beyond SQLite's integers: the JSON 404 below
    "label": r"[^/]+",
    "path": r".+",
    "alias": r"[^/]+",
    "name": r".+",
    "action": r"stop|kill",
    "digest": r"[0-9a-f]{64}",
    "workspace": r"[^/]+",
}


def template_to_regex(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"({PARAMETER_PATTERNS[m.group(1)]})", template)


class NoSuchEndpointHandler(SpellHandler):
    """Anything else under the API's prefix: a JSON 404 that says what is wrong, not a page."""

    run_tokens = dict.fromkeys(("get", "post", "put", "delete", "head", "patch"), Level.ANY)

    @api
    def get(self, rest: str):
        first = rest.strip("/").split("/")
        if first[0] == "runs" and len(first) > 1:
            raise web.HTTPError(404, f"no run with ID {first[1]!r}: run IDs are whole numbers")
        raise web.HTTPError(
            404, f"no such endpoint: {self.request.method} {API_PREFIX}/{rest} (see openapi.yaml)"
        )

    post = put = delete = head = patch = get


def route_table() -> list[tuple[str, type[SpellHandler]]]:
    routes = [(API_PREFIX + template_to_regex(t).rstrip("/") + "/?", h) for t, h in ROUTES]
    return [*routes, (API_PREFIX + "/(.*)", NoSuchEndpointHandler)]
