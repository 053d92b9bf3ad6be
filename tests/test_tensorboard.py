"""TensorBoard of a run (`--tensorboard-dir`): served by the host server behind its
authentication, live while the run runs and from its outputs after, on both backends."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def write_events(folder: Path) -> None:
    """A TensorBoard event file of three `loss` scalars (tensorboard's own writer, no TF)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(folder))
    for step in range(3):
        value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
        summary = summary_pb2.Summary(value=[value])
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


def board(home, run_id: int, path: str, token: bool = True) -> tuple[int, str]:
    info = home.server_info()
    headers = {"Authorization": f"token {info['token']}"} if token else {}
    request = urllib.request.Request(
        f"{info['url']}spell/runs/{run_id}/tensorboard/{path}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def scalar_steps(home, run_id: int, run_name: str) -> list[int]:
    status, text = board(home, run_id, f"data/plugin/scalars/scalars?run={run_name}&tag=loss")
    assert status == 200, text
    return [point[1] for point in json.loads(text)]


def test_a_runs_tensorboard_is_served_live_and_from_its_outputs(any_backend, tmp_path):
    home = any_backend
    write_events(tmp_path / "events")
    uploaded = home.spell("upload", "-n", "tb-events", str(tmp_path / "events"))
    assert uploaded.returncode == 0, uploaded.stderr
    # the run writes its event file into logs/train, then waits for a gate in its folder
    started = home.spell(
        "run",
        "-b",
        "-f",
        "--tensorboard-dir",
        "logs",
        "-m",
        "uploads/tb-events:seed",
        "mkdir -p logs/train && cp seed/* logs/train/ && while [ ! -e gate ]; do sleep 0.1; done",
    )
    assert started.returncode == 0, started.stderr
    assert "/spell/runs/1/tensorboard/" in started.stdout
    client = home.client()
    run = client.runs.get(1)
    run.wait_status(client.runs.RUNNING, timeout=300)
    deadline = time.monotonic() + 60
    while True:  # the run copies its events a moment after it starts
        status, text = board(home, 1, "data/runs")
        if status == 200 and "train" in json.loads(text):
            break
        assert time.monotonic() < deadline, (status, text)
        time.sleep(0.5)
    assert scalar_steps(home, 1, "train") == [0, 1, 2]
    status, page = board(home, 1, "")
    assert (status == 200 and "<tf-tensorboard" in page) or "tensorboard" in page.lower()
    assert board(home, 1, "data/runs", token=False)[0] == 403

    (home.path / "work" / "1" / "gate").touch()
    run.wait_status(*client.runs.FINAL, timeout=120)
    assert run.status == client.runs.COMPLETE
    assert json.loads(board(home, 1, "data/runs")[1]) == ["train"]  # now from runs/1/logs
    assert scalar_steps(home, 1, "train") == [0, 1, 2]
    assert "/spell/runs/1/tensorboard/" in home.spell("ps", "-v").stdout
    assert "TensorBoard" in client.runs.get(1)._repr_html_()


def test_tensorboard_bad_input(served, tmp_path):
    home = served
    for folder, message in (("/etc", "tensorboard_dir '/etc'"), ("../up", "'..'")):
        result = home.spell("run", "-f", "--tensorboard-dir", folder, "true")
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert home.client().runs.list() == []
    home.spell("run", "-f", "true")  # a run without --tensorboard-dir has none
    status, page = board(home, 1, "")
    assert status == 404 and "--tensorboard-dir" in page
    status, page = board(home, 99, "")
    assert status == 404


async def test_without_the_tensorboard_package_the_message_says_how_to_install_it(
    jp_fetch, monkeypatch
):
    from tornado.httpclient import HTTPClientError

    from spell_jupyter.services import runs

    monkeypatch.setattr(runs, "tensorboard_installed", lambda: False)
    body = {"command": "true", "tensorboard_dir": "logs"}
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("spell", "api", "v1", "runs", method="POST", body=json.dumps(body))
    assert refused.value.code == 400
    assert "pip install 'spell-jupyter[tensorboard]'" in refused.value.response.body.decode()
