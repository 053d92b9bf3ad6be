"""A cluster node's relay of the Spell API (backends/api_relay.py), between a run's client
and real HTTP servers standing in for the leading Spell server: what it forwards, what it
answers while no server leads, and a change of leader that the run's client never sees."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spell_jupyter.backends.api_relay import ApiRelay
from spell_jupyter.client import transport
from spell_jupyter.client.errors import APIError
from spell_jupyter.client.transport import Transport, UnixHTTPConnection


class Upstream:
    """An HTTP server that answers each request with what it saw (404 for .../missing; with
    `hold`, .../hold answers once `hold` is set)."""

    def __init__(
        self,
        name: str,
        status: int = 200,
        headers: dict | None = None,
        hold: threading.Event | None = None,
    ):
        seen = self.seen = []
        arrived = self.arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                with arrived:
                    seen.append((self.command, self.path, self.headers.get("Authorization"), body))
                    arrived.notify_all()
                if hold is not None and self.path.endswith("/hold"):
                    hold.wait(60)  # a followed log: open until the test lets it go
                missing = self.path.endswith("/missing")
                code = 404 if missing else status
                answer = {"message": "no such thing"} if missing else {"by": name, "body": body}
                data = json.dumps(answer).encode()
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay(tmp_path):
    made = ApiRelay(tmp_path / "api")
    yield made
    made.close()


@pytest.fixture
def upstreams():
    made: list[Upstream] = []

    def make(name: str, **kwargs) -> Upstream:
        made.append(Upstream(name, **kwargs))
        return made[-1]

    yield make
    for u in made:
        u.close()


def raw_get(relay: ApiRelay, path: str):
    connection = UnixHTTPConnection(str(relay.folder / "api.sock"), timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read())


def test_with_no_leader_yet_it_answers_503_asking_to_come_again(relay):
    status, headers, body = raw_get(relay, "/spell/api/v1/runs/1")
    assert status == 503 and headers["Retry-After"] == "1"
    assert "no Spell server leads this node's runs yet" in body["message"]


def test_it_forwards_method_path_token_and_body_and_the_answer_back(relay, upstreams):
    leader = upstreams("leader")
    relay.lead(leader.url)
    client = Transport(relay.url, "spellrun-abc")
    big = "x" * (5 << 20)  # bodies pass whole both ways
    answer = client.json("POST", "runs/7/metrics", json={"v": big})
    assert answer["by"] == "leader" and json.loads(answer["body"]) == {"v": big}
    method, path, token, _ = leader.seen[-1]
    assert (method, path, token) == ("POST", "/spell/api/v1/runs/7/metrics", "token spellrun-abc")
    with pytest.raises(APIError) as refused:  # the leader's own errors pass as they are
        client.json("GET", "missing")
    assert refused.value.status_code == 404 and "no such thing" in str(refused.value)


def test_many_requests_held_open_do_not_hold_up_the_next(relay, upstreams):
    release = threading.Event()
    leader = upstreams("leader", hold=release)
    relay.lead(leader.url)
    held = [
        threading.Thread(target=Transport(relay.url, "t").json, args=("GET", "hold"), daemon=True)
        for _ in range(15)  # more than tornado's shared client lets out at once
    ]
    try:
        for thread in held:
            thread.start()
        with leader.arrived:
            assert leader.arrived.wait_for(lambda: len(leader.seen) == 15, 30)
        assert Transport(relay.url, "t", timeout=10).json("GET", "runs/1")["by"] == "leader"
    finally:
        release.set()


def test_a_new_leader_answers_what_the_run_asked_while_none_did(relay, upstreams, monkeypatch):
    old, new = upstreams("old"), upstreams("new")
    relay.lead(old.url)
    client = Transport(relay.url, "spellrun-abc")
    assert client.json("GET", "runs/1")["by"] == "old"
    old.close()  # the leader dies; the run asks meanwhile
    asked_in_vain = threading.Event()
    plain = transport._retry_after

    def noticed(response):
        wait = plain(response)
        if wait is not None:
            asked_in_vain.set()
        return wait

    monkeypatch.setattr(transport, "_retry_after", noticed)
    answers: list = []
    asking = threading.Thread(target=lambda: answers.append(client.json("GET", "runs/1")))
    asking.start()
    assert asked_in_vain.wait(30)
    relay.lead(new.url)  # a standby takes over and tells the node's agent
    asking.join(30)
    assert answers == [{"by": "new", "body": ""}]


def test_an_agent_started_again_relays_to_the_leader_the_last_one_was_told_of(tmp_path, upstreams):
    leader = upstreams("leader")
    first = ApiRelay(tmp_path / "api")
    first.lead(leader.url)
    first.close()
    again = ApiRelay(tmp_path / "api")
    try:
        assert Transport(again.url, "t").json("GET", "x")["by"] == "leader"
    finally:
        again.close()


def test_a_503_without_retry_after_is_the_answer_at_once(upstreams):
    down = upstreams("down", status=503)
    with pytest.raises(APIError) as refused:
        Transport(down.url, "t").json("GET", "runs")
    assert refused.value.status_code == 503 and len(down.seen) == 1


def test_a_503_with_retry_after_is_asked_again_until_the_limit(upstreams, monkeypatch):
    busy = upstreams("busy", status=503, headers={"Retry-After": "0"})
    monkeypatch.setattr(transport, "RETRY_AFTER_LIMIT", 0.5)
    with pytest.raises(APIError) as refused:
        Transport(busy.url, "t").json("GET", "runs")
    assert refused.value.status_code == 503 and len(busy.seen) > 1
