"""The event stream (`GET /spell/api/v1/events`, server-sent events) that panels and widgets
follow instead of polling: runs created and changed as they happen, metrics appended, resuming
after a reconnect or a server restart from the last event ID with nothing missing."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest


class EventStream:
    """An SSE connection to a server's /events, read event by event."""

    def __init__(self, url: str, token: str, last_id: str | None = None, query: str = ""):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"Authorization": f"token {token}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        path = f"{parts.path.rstrip('/')}/spell/api/v1/events{query}"
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()

    def next(self) -> dict:
        """The next event: {event, id, data}."""
        event: dict = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if not line:
                if "event" in event:
                    return event
                event = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            event[field] = json.loads(value) if field == "data" else value

    def until(self, predicate) -> list[dict]:
        seen = []
        while True:
            seen.append(self.next())
            if predicate(seen[-1]):
                return seen

    def close(self) -> None:
        self.connection.close()


def is_run(event: dict, run_id: int, status: str) -> bool:
    data = event["data"]
    return event["event"] == "run" and data["id"] == run_id and data["status"] == status


def test_runs_stream_as_they_are_created_change_and_end(served):
    info = served.server_info()
    stream = EventStream(info["url"], info["token"])
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type") == "text/event-stream"
    client = served.client()
    run = client.runs.new(command="echo streamed")
    events = stream.until(lambda e: is_run(e, run.id, "complete"))
    runs = [e for e in events if e["event"] == "run"]
    assert runs[0]["data"]["id"] == run.id and runs[0]["data"]["command"] == "echo streamed"
    ids = [int(e["id"]) for e in runs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stream.close()


def test_a_reconnect_resumes_after_the_last_event_with_nothing_missing(served):
    info = served.server_info()
    client = served.client()
    first = EventStream(info["url"], info["token"])
    one = client.runs.new(command="true")
    created = first.until(lambda e: e["event"] == "run" and e["data"]["id"] == one.id)[-1]
    first.close()  # the panel's connection drops here
    one.wait_status(client.runs.COMPLETE, timeout=60)
    two = client.runs.new(command="true")
    two.wait_status(client.runs.COMPLETE, timeout=60)
    again = EventStream(info["url"], info["token"], last_id=created["id"])
    events = again.until(lambda e: is_run(e, two.id, "complete"))
    seen = {e["data"]["id"]: e["data"]["status"] for e in events if e["event"] == "run"}
    assert seen[one.id] == "complete" and two.id in seen  # what changed while away
    again.close()


def test_the_stream_catches_up_across_a_server_restart(served):
    info = served.server_info()
    client = served.client()
    stream = EventStream(info["url"], info["token"])
    run = client.runs.new(command="true")
    last = stream.until(lambda e: is_run(e, run.id, "complete"))[-1]["id"]
    stream.close()
    assert served.spell("server", "stop").returncode == 0
    restarted = served.start_server()
    later = served.client().runs.new(command="echo later")
    stream = EventStream(restarted["url"], restarted["token"], last_id=last)
    events = stream.until(lambda e: e["event"] == "run" and e["data"]["id"] == later.id)
    assert all(e["data"]["id"] != run.id for e in events if e["event"] == "run")
    stream.close()


def test_metrics_appended_are_announced(served):
    info = served.server_info()
    stream = EventStream(info["url"], info["token"])
    client = served.client()
    script = "from spell.metrics import send_metric\nsend_metric('loss', 0.5)"
    run = client.runs.new(command=f'python -c "{script}"')
    events = stream.until(lambda e: e["event"] == "metrics")
    assert events[-1]["data"] == {"run_id": run.id}
    stream.close()


def test_a_server_that_does_not_lead_streams_what_the_leader_writes(served, lab):
    """JupyterLab beside `spell server`: its panel's stream sees the leader's changes."""
    from helpers import LAB_TOKEN

    the_lab = lab()
    stream = EventStream(the_lab.url, LAB_TOKEN)
    run = served.client().runs.new(command="true")
    stream.until(lambda e: is_run(e, run.id, "complete"))
    stream.close()


def test_a_server_that_does_not_lead_announces_the_metrics_runs_send_the_leader(served, lab):
    """The metrics go to the leader (a run's socket); JupyterLab beside it still tells its
    panels, while the run runs."""
    from helpers import LAB_TOKEN

    the_lab = lab()
    stream = EventStream(the_lab.url, LAB_TOKEN)
    gate = served.path.parent / "gate"
    script = (
        "import os, time\nfrom spell.metrics import send_metric\nsend_metric('loss', 0.5)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)"
    )
    run = served.client().runs.new(command=f'python -c "{script}"')
    events = stream.until(lambda e: e["event"] == "metrics")
    assert events[-1]["data"] == {"run_id": run.id}
    gate.touch()
    stream.close()


@pytest.mark.parametrize("since", ["abc", "-1", "9" * 30])
def test_a_bad_event_id_is_refused(served, since):
    info = served.server_info()
    stream = EventStream(info["url"], info["token"], last_id=since)
    assert stream.response.status == 400
    message = json.loads(stream.response.read())["message"]
    assert "the event ID to resume after is a number" in message


def test_a_bounded_stream_ends_and_a_wrong_token_gets_nothing(served):
    info = served.server_info()
    bounded = EventStream(info["url"], info["token"], query="?timeout=1")
    assert bounded.response.read().startswith(b"retry: 2000\nid: ")  # and then it ended
    refused = EventStream(info["url"], "not-the-token")
    assert refused.response.status == 403


def test_the_python_follower_resumes_across_cycles_and_restarts(served, monkeypatch):
    """follow_events reconnects with the last ID (the stream says where it stands even when
    nothing happened), so a change between two connections is not lost."""
    from spell_jupyter.client import events

    monkeypatch.setattr(events, "CYCLE_SECONDS", 1)
    client = served.client()
    followed = events.follow_events(client.transport)
    first = client.runs.new(command="true")
    assert next(e for e in followed if e.data.get("id") == first.id).kind == "run"
    second = client.runs.new(command="true")  # perhaps between two cycles: still seen
    assert any(e.data.get("id") == second.id for e in followed)


def test_labels_and_archiving_stream_as_changes(served):
    info = served.server_info()
    client = served.client()
    run = client.runs.new(command="true")
    run.wait_status("complete")
    stream = EventStream(info["url"], info["token"])
    run.add_label("best")  # from a terminal; the panels see it
    (labelled,) = stream.until(lambda e: e["event"] == "run" and e["data"]["labels"] == ["best"])
    client.transport.json("POST", f"runs/{run.id}/archive")
    (archived,) = stream.until(lambda e: e["event"] == "run" and e["data"]["archived"])
    assert int(archived["id"]) > int(labelled["id"])
    stream.close()
