"""Property-based fuzzing of the REST API against its OpenAPI spec (schemathesis + hypothesis):
every operation, with generated paths, queries and bodies (run specs included), answers without
a 5xx and as the spec says; afterwards the run listing still answers.

The server is a real `spell server` whose engine may start no run (a concurrency limit of 0):
generated commands are stored and queued, never executed on the test machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from conftest import make_home
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

SPEC = Path(__file__).parents[1] / "spell_jupyter" / "server" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(SPEC)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BUDGET = settings(
    max_examples=50,  # per operation: about a minute for the whole API on 2 cores
    deadline=None,
    derandomize=True,  # the same cases on every CI run; change the seed by editing the spec
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("fuzz"), SPELL_CONCURRENCY_LIMIT="0")
    info = home.start_server()
    yield (
        home,
        info["url"].rstrip("/") + "/spell/api/v1",
        {"Authorization": f"token {info['token']}"},
    )
    home.spell("server", "stop")


@SCHEMA.parametrize()
@BUDGET
def test_every_operation_answers_as_its_spec_says_and_never_5xx(case, fuzzed):
    _, base_url, headers = fuzzed
    # a header with control characters, or a Host that names no host, never reaches the API:
    # HTTP itself refuses it (tornado answers a bare 400 before any handler), so none is sent
    generated = {
        k: v
        for k, v in (case.headers or {}).items()
        if k.lower() != "host" and all(c.isprintable() and ord(c) != 127 for c in str(v))
    }
    case.headers = {**generated, **headers}  # the real token, not a generated one
    query = case.query if isinstance(case.query, dict) else {}
    if case.operation.path == "/runs/{run_id}/wait":
        query["timeout"] = 1  # no queued run moves: a long poll (30 s by default) would not end
        case.query = query
    if case.operation.path == "/events":
        query["timeout"] = 1  # a stream stays open otherwise
        case.query = query
    if query.get("follow") in (True, "true", "1"):  # logs, metrics: followed until the run
        query["follow"] = False  # ends, and no queued run here ever does (tested elsewhere)
        case.query = query
    response = case.call(base_url=base_url, timeout=30)
    case.validate_response(response, checks=CHECKS)


def test_after_the_fuzzing_the_listing_still_answers(fuzzed):
    home, _, _ = fuzzed
    client = home.client()
    runs = client.runs.list(number=1000, archived=None, kinds=[])
    for run in runs[:50]:
        client.runs.get(run.id)
    assert home.spell("ps", "-a").returncode == 0
