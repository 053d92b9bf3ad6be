"""The Python API, used as Spell scripts used it (`import spell.client`), in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from spell_jupyter.client import ServerUnavailable, UnsupportedArgument, WaitError, from_environment


def run_script(home, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_spell_style_client_script(served, tmp_path):
    result = run_script(
        served,
        f"""
        import os, spell.client
        client = spell.client.from_environment()
        r = client.runs.new(command="echo hi > foo.txt", envvars={{"A": "1"}}, labels=["x"],
                            description="demo")
        r.wait_status(*client.runs.FINAL)
        r.refresh()
        assert r.status == client.runs.COMPLETE, r.status
        assert r.user_exit_code == 0 and r.labels == ["x"] and r.environment_vars == {{"A": "1"}}
        assert r.description == "demo" and r.started_at <= r.ended_at
        assert [str(e) for e in r.logs() if not e.status_event] == []
        r.cp("foo.txt", {str(tmp_path)!r}, quiet=True)
        print(open(os.path.join({str(tmp_path)!r}, "foo.txt")).read().strip())
        print(len(client.runs.list(number=10, labels=["x"])))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hi", "1"]


def test_wait_status_raises_when_the_run_ends_otherwise(served):
    client = served.client()
    run = client.runs.new(command="exit 4")
    with pytest.raises(WaitError, match="ended failed"):
        run.wait_status(client.runs.COMPLETE)
    assert run.status == "failed" and run.user_exit_code == 4
    with pytest.raises(ValueError, match="unknown status"):
        run.wait_status("finished")


def test_unsupported_keywords_are_errors_that_name_them(served):
    client = served.client()
    with pytest.raises(UnsupportedArgument, match="idempotent"):
        client.runs.new(command="true", idempotent=True)
    with pytest.raises(UnsupportedArgument, match="colour"):
        client.runs.new(command="true", colour="red")
    assert client.runs.list() == []


def test_from_environment_without_a_server(home, monkeypatch):
    monkeypatch.delenv("SPELL_BASE_URL", raising=False)
    with pytest.raises(ServerUnavailable, match="spell server"):
        from_environment(home.path)


def test_base_url_and_token_from_the_environment(served, monkeypatch):
    info = served.server_info()
    monkeypatch.setenv("SPELL_BASE_URL", info["url"])
    monkeypatch.setenv("SPELL_TOKEN", info["token"])
    client = from_environment("/nonexistent")
    run = client.runs.new(command="true")
    run.wait_status(client.runs.COMPLETE)
    monkeypatch.setenv("SPELL_TOKEN", "wrong")
    with pytest.raises(Exception) as info_:
        from_environment().runs.get(run.id)
    assert getattr(info_.value, "status_code", None) == 403


def test_attached_resources_mount_like_spells_client(served):
    client = served.client()
    first = client.runs.new(command="echo 42 > answer.txt")
    first.wait_status(client.runs.COMPLETE)
    second = client.runs.new(
        command="cat inputs/answer.txt",
        attached_resources={"runs/1/answer.txt": "inputs/answer.txt"},
    )
    second.wait_status(client.runs.COMPLETE)
    assert [e.text for e in second.logs() if not e.status_event] == ["42"]
    assert second.raw["spec"]["mounts"] == [
        {"resource": "runs/1/answer.txt", "path": "inputs/answer.txt"}
    ]
