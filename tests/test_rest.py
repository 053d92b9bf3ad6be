"""The REST API in-process (pytest-jupyter): behaviour, bad input, authentication, OpenAPI."""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
import threading
from pathlib import Path

import pytest
import yaml
from tornado.httpclient import HTTPClientError

from spell_jupyter.server.handlers import ROUTES

SPEC = yaml.safe_load(
    (Path(__file__).parents[1] / "spell_jupyter" / "server" / "openapi.yaml").read_text()
)
API = ("spell", "api", "v1")


async def call(jp_fetch, *path, method="GET", body=None, params=None, **kwargs):
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    response = await jp_fetch(*API, *path, method=method, body=body, params=params, **kwargs)
    return response


async def error(jp_fetch, *path, **kwargs) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await call(jp_fetch, *path, **kwargs)
    body = info.value.response.body
    return info.value.code, json.loads(body)["message"] if body else ""


async def create(jp_fetch, **spec) -> dict:
    response = await call(jp_fetch, "runs", method="POST", body=spec)
    assert response.code == 201
    return json.loads(response.body)


async def wait_final(jp_fetch, run_id: int) -> dict:
    while True:
        response = await call(jp_fetch, "runs", str(run_id), "wait", params={"timeout": "30"})
        run = json.loads(response.body)
        if run["status"] in ("complete", "failed", "stopped", "killed", "interrupted"):
            return run


def ndjson(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode().splitlines() if line]


async def test_create_get_and_list_runs(jp_fetch):
    first = await create(jp_fetch, command="echo one", labels=["a", "b"], envvars={"X": "1"})
    second = await create(jp_fetch, command="echo two", labels=["b"], machine_type="cpu")
    assert (first["id"], second["id"]) == (1, 2)
    assert first["status"] == "machine_requested"
    assert second["machine_type"] == "CPU"  # canonical spelling

    got = json.loads((await call(jp_fetch, "runs", "1")).body)
    assert got["command"] == "echo one" and got["spec"]["envvars"] == {"X": "1"}
    assert got["status_history"][0]["status"] == "machine_requested"

    page = json.loads((await call(jp_fetch, "runs")).body)
    assert [r["id"] for r in page["runs"]] == [2, 1] and page["total"] == 2
    only_a = json.loads((await call(jp_fetch, "runs", params={"label": "a"})).body)
    assert [r["id"] for r in only_a["runs"]] == [1]
    paged = json.loads((await call(jp_fetch, "runs", params={"limit": "1", "offset": "1"})).body)
    assert [r["id"] for r in paged["runs"]] == [1] and paged["total"] == 2

    await wait_final(jp_fetch, 1)
    await wait_final(jp_fetch, 2)
    done = json.loads((await call(jp_fetch, "runs", params={"status": "complete"})).body)
    assert done["total"] == 2
    no_kernels = json.loads((await call(jp_fetch, "runs", params={"kind": "kernel"})).body)
    assert no_kernels["total"] == 0


async def test_logs_stream_until_the_run_is_final(jp_fetch):
    run = await create(jp_fetch, command="echo a; echo b >&2; echo c")
    response = await call(jp_fetch, "runs", str(run["id"]), "logs", params={"follow": "true"})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    entries = ndjson(response.body)
    assert [e["offset"] for e in entries] == list(range(len(entries)))
    output = [(e["stream"], e["text"]) for e in entries if not e["status_event"]]
    assert sorted(output) == [("stderr", "b"), ("stdout", "a"), ("stdout", "c")]
    assert entries[-1]["status"] == "complete" and entries[-1]["status_event"]

    later = ndjson(
        (await call(jp_fetch, "runs", str(run["id"]), "logs", params={"offset": "3"})).body
    )
    assert later[0]["offset"] == 3 and len(later) == len(entries) - 3
    tail = ndjson((await call(jp_fetch, "runs", str(run["id"]), "logs", params={"tail": "2"})).body)
    assert [e["offset"] for e in tail] == [len(entries) - 2, len(entries) - 1]


async def test_wait_returns_when_a_status_is_reached(jp_fetch):
    run = await create(jp_fetch, command="true")
    response = await call(
        jp_fetch, "runs", str(run["id"]), "wait", params={"status": "running", "timeout": "30"}
    )
    assert json.loads(response.body)["status"] in ("running", "saving", "pushing", "complete")


async def test_resources_list_and_download(jp_fetch):
    run = await create(jp_fetch, command="mkdir d && echo x > d/f.txt")
    await wait_final(jp_fetch, run["id"])
    listing = json.loads((await call(jp_fetch, "resources", "runs", str(run["id"]))).body)
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("d", "directory")]
    top = json.loads((await call(jp_fetch, "resources")).body)
    assert {e["name"] for e in top["entries"]} == {"runs", "uploads", "public"}

    tar_bytes = (await call(jp_fetch, "download", "runs", str(run["id"]), "d")).body
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert tar.getnames() == ["d", "d/f.txt"]
        assert tar.extractfile("d/f.txt").read() == b"x\n"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"command": ""}, "the command is empty"),
        ({"command": "true", "colour": "red"}, "unknown field 'colour'"),
        ({"command": "true", "envvars": {"1BAD": "x"}}, "invalid environment variable name"),
        ({"command": "true", "labels": ["ok", "no/slash"]}, "invalid label"),
        ({"command": "true", "cwd": "../up"}, "must not contain '..'"),
        ({"command": "true", "cwd": "/abs"}, "must be a relative path"),
        ({"command": "true", "machine_type": "K80"}, "unknown machine type 'K80'"),
        ({"command": "true", "kind": "spaceship"}, "kind"),
    ],
)
async def test_bad_run_bodies_are_400_and_create_nothing(jp_fetch, body, needle):
    code, message = await error(jp_fetch, "runs", method="POST", body=body)
    assert code == 400 and needle in message
    page = json.loads((await call(jp_fetch, "runs")).body)
    assert page["total"] == 0


@pytest.mark.parametrize(
    ("path", "params", "code", "needle"),
    [
        (("runs", "42"), None, 404, "no run with ID 42"),
        (("runs", "42", "logs"), None, 404, "no run with ID 42"),
        (("runs",), {"status": "sleeping"}, 400, "unknown status 'sleeping'"),
        (("runs",), {"limit": "0"}, 400, "limit must be between 1 and 1000"),
        (("runs",), {"offset": "x"}, 400, "offset must be an integer"),
        (("resources", "etc"), None, 404, "is not in SpellFS"),
        (("resources", "runs", "1", "..", "..", "etc"), None, 400, "'..' is not allowed"),
        (("resources", "runs", "7"), None, 404, "does not exist"),
        (("download", "runs", ".."), None, 400, "'..' is not allowed"),
    ],
)
async def test_bad_queries_get_clear_4xx(jp_fetch, path, params, code, needle):
    got_code, message = await error(jp_fetch, *path, params=params)
    assert got_code == code and needle in message


async def test_conflicts_and_labels(jp_fetch):
    run = await create(jp_fetch, command="true")
    run_id = str(run["id"])
    await wait_final(jp_fetch, run["id"])
    for action in ("stop", "kill"):
        code, message = await error(jp_fetch, "runs", run_id, action, method="POST", body="")
        assert code == 409 and "already complete" in message
    assert json.loads((await call(jp_fetch, "runs", run_id)).body)["status"] == "complete"

    added = await call(jp_fetch, "runs", run_id, "labels", "best run", method="PUT", body="")
    assert json.loads(added.body)["labels"] == ["best run"]
    code, _ = await error(jp_fetch, "runs", run_id, "labels", "%2Fbad", method="PUT", body="")
    assert code == 400
    code, _ = await error(jp_fetch, "runs", run_id, "labels", "missing", method="DELETE")
    assert code == 404
    await call(jp_fetch, "runs", run_id, "labels", "best run", method="DELETE")

    archived = await call(jp_fetch, "runs", run_id, "archive", method="POST", body="")
    assert json.loads(archived.body)["archived"] is True
    assert json.loads((await call(jp_fetch, "runs")).body)["total"] == 0
    shown = json.loads((await call(jp_fetch, "runs", params={"archived": "any"})).body)
    assert shown["total"] == 1


async def test_archive_of_a_live_run_is_a_conflict(jp_fetch):
    run = await create(jp_fetch, command="sleep 30")
    code, message = await error(jp_fetch, "runs", str(run["id"]), "archive", method="POST", body="")
    assert code == 409 and "only finished runs" in message
    await call(jp_fetch, "runs", str(run["id"]), "kill", method="POST", body="")
    assert (await wait_final(jp_fetch, run["id"]))["status"] == "killed"


def _implemented_methods(handler) -> set[str]:
    from spell_jupyter.server.handlers import SpellHandler

    return {
        m
        for m in ("get", "post", "put", "delete", "patch")
        if getattr(handler, m) is not getattr(SpellHandler, m)
    }


ENDPOINTS = sorted({(t, m) for t, h in ROUTES for m in _implemented_methods(h)})


def endpoint_parts(route: str, spellfs_path: str) -> list[str]:
    """The URL parts of a route template with placeholder values filled in."""
    path = (
        route.replace("{run_id}", "1")
        .replace("{label}", "x")
        .replace("{path}", spellfs_path)
        .replace("{alias}", "x")
        .replace("{digest}", "0" * 64)
    )
    return [p for p in path.split("/") if p]


@pytest.mark.parametrize(("route", "method"), ENDPOINTS)
async def test_every_endpoint_requires_a_token(jp_fetch, route, method):
    parts = endpoint_parts(route, "runs")
    body = "" if method in ("post", "put") else None
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            *API, *parts, method=method.upper(), body=body, headers={"Authorization": ""}
        )
    assert info.value.code == 403


def test_openapi_spec_and_routes_match():
    spec = {
        (path, method)
        for path, ops in SPEC["paths"].items()
        for method in ops
        if method != "parameters"
    }
    assert spec == set(ENDPOINTS)
    for template, _ in ROUTES:  # every path parameter is declared
        for name in re.findall(r"\{(\w+)\}", template):
            ops = SPEC["paths"][template]
            declared = json.dumps(ops)
            assert name in declared or "RunId" in declared or "SpellPath" in declared


def test_openapi_run_spec_lists_every_field_of_the_model():
    from spell_jupyter.models import RunSpec

    assert set(SPEC["components"]["schemas"]["RunSpec"]["properties"]) == set(RunSpec.model_fields)


async def test_a_slow_save_holds_up_no_other_run(jp_fetch, jp_serverapp):
    """Saving runs in the worker pool: while run 1's push is held, run 2 starts, saves and
    ends; then run 1 ends complete with its outputs."""
    engine = jp_serverapp.web_app.settings["spell_engine"]
    release = threading.Event()
    pushing = threading.Event()
    fs = engine.backend.fs  # the SpellFS the backend saves outputs to
    save = fs.save_run_outputs

    def held_save(run_id, workdir, files):
        if run_id == 1:
            pushing.set()
            assert release.wait(60), "the test never released the save"
        return save(run_id, workdir, files)

    fs.save_run_outputs = held_save
    try:
        await create(jp_fetch, command="echo a > a.txt")
        assert await asyncio.to_thread(pushing.wait, 60)
        second = await create(jp_fetch, command="echo b > b.txt")
        assert (await wait_final(jp_fetch, second["id"]))["status"] == "complete"
        first = json.loads((await call(jp_fetch, "runs", "1")).body)
        assert first["status"] == "pushing"
    finally:
        release.set()
    assert (await wait_final(jp_fetch, 1))["status"] == "complete"
    listing = json.loads((await call(jp_fetch, "resources", "runs", "1")).body)
    assert [e["name"] for e in listing["entries"]] == ["a.txt"]
