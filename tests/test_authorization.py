"""Jupyter's authorization is obeyed: with a read-only Authorizer (as a JupyterHub read-only
scope gives), every Spell endpoint that changes something answers 403 and changes nothing,
exactly as Jupyter's own contents API does, while reads still work."""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth.authorizer import Authorizer
from test_rest import API, ENDPOINTS, endpoint_parts
from tornado.httpclient import HTTPClientError


class ReadOnlyAuthorizer(Authorizer):
    """Every user may read, nothing else; it records what it was asked."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource) -> bool:
        self.asked.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {
            "jpserver_extensions": {"spell_jupyter": True},
            "authorizer_class": ReadOnlyAuthorizer,
        },
        "SpellJupyter": {"spell_home": str(tmp_path / "spell-home"), "backend": "local"},
    }


async def test_a_read_only_user_cannot_create_runs_as_jupyter_refuses_its_contents(jp_fetch):
    with pytest.raises(HTTPClientError) as contents:
        await jp_fetch("api", "contents", "x.txt", method="PUT", body=json.dumps({"type": "file"}))
    assert contents.value.code == 403
    with pytest.raises(HTTPClientError) as run:
        await jp_fetch(*API, "runs", method="POST", body=json.dumps({"command": "touch /tmp/x"}))
    assert run.value.code == 403
    assert "not authorized to execute on resource: spell" in run.value.response.body.decode()
    listing = await jp_fetch(*API, "runs")
    assert json.loads(listing.body)["runs"] == []  # reads work, and nothing was made


# What runs a command: creating a run, preparing one from a file of the Lab's folder, and a
# --local master's reports (which hand out its workflow's token, with which runs are created).
EXECUTES = {
    ("/runs", "post"),
    ("/workspaces", "post"),
    ("/lab/prepare-run", "post"),
    ("/workflows/{run_id}/local", "post"),
}


@pytest.mark.parametrize(("route", "method"), ENDPOINTS)
async def test_every_endpoint_asks_the_authorizer(jp_fetch, route, method):
    parts = endpoint_parts(route, "uploads/x")
    body = "{}" if method in ("post", "put") else None
    ReadOnlyAuthorizer.asked.clear()
    try:
        await jp_fetch(*API, *parts, method=method.upper(), body=body)
        code = 200
    except HTTPClientError as exc:
        code = exc.code
    expected = "read" if method in ("get", "head") else "write"
    if (route, method) in EXECUTES:
        expected = "execute"
    assert ReadOnlyAuthorizer.asked[-1:] == [(expected, "spell")]
    if expected == "read":
        assert code != 403  # 200, or 404/409 for the placeholder IDs: never refused
    else:
        assert code == 403


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_read_only_user_is_not_let_into_workspaces(jp_fetch, method):
    """A workspace runs what its users type: entering one asks for execute, and is refused
    before anything is looked up or proxied."""
    ReadOnlyAuthorizer.asked.clear()
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch(
            "spell",
            "workspaces",
            "ws1",
            "lab",
            method=method,
            body="{}" if method == "POST" else None,
        )
    assert refused.value.code == 403
    assert ReadOnlyAuthorizer.asked == [("execute", "spell")]
