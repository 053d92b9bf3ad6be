"""The notebook face, through a real Jupyter server with the extension and a real IPython kernel
it started: the magics stream a run's logs into the cell, `%%spell` moves variables both ways,
the header's Stop button stops a run, the client in the kernel uses the same store as `spell`,
and every bad input is one clear line in the cell with no run made."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import LAB_TOKEN


@dataclass
class Executed:
    status: str
    messages: list[dict] = field(default_factory=list)
    reply: dict = field(default_factory=dict)

    @property
    def stdout(self) -> str:
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        return self._stream("stderr")

    def _stream(self, name: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    @property
    def error(self) -> dict | None:
        errors = [m["content"] for m in self.messages if m["msg_type"] == "error"]
        return errors[-1] if errors else None

    def of_type(self, *kinds: str) -> list[dict]:
        return [m for m in self.messages if m["msg_type"] in kinds]


class Kernel:
    """A python3 kernel started by `lab` through its REST API (as JupyterLab starts one for a
    notebook in `path`), driven by a kernel client on its connection file."""

    def __init__(self, lab, home, path: str = ""):
        from jupyter_client import BlockingKernelClient

        self.lab = lab
        body = json.dumps({"name": "python3", "path": path}).encode()
        self.id = self._api("POST", "api/kernels", body)["id"]
        runtime = Path(home.env["JUPYTER_RUNTIME_DIR"])
        self.client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{self.id}.json"))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def _api(self, method: str, path: str, body: bytes | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.lab.url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"token {LAB_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        return json.loads(data) if data else {}

    def run(self, code: str, on_message=None, timeout: float = 240) -> Executed:
        done = Executed("")

        def hook(msg: dict) -> None:
            done.messages.append(msg)
            if on_message is not None:
                on_message(msg)

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        done.status = reply["content"]["status"]
        done.reply = reply["content"]
        return done

    def click(self, model_id: str) -> None:
        """What a frontend sends when a Button widget is clicked."""
        message = self.client.session.msg(
            "comm_msg",
            {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}},
        )
        self.client.shell_channel.send(message)

    def close(self) -> None:
        self.client.stop_channels()
        self._api("DELETE", f"api/kernels/{self.id}")


@pytest.fixture
def kernel_of(home, lab):
    """kernel_of(*lab_args) -> a kernel of a new Lab on `home`."""
    kernels: list[Kernel] = []

    def start(*lab_args: str, path: str = "") -> Kernel:
        kernels.append(Kernel(lab(*lab_args), home, path))
        return kernels[-1]

    yield start
    for kernel in kernels:
        kernel.close()


def assert_usage_error(done: Executed, *fragments: str) -> None:
    """One clear line in the cell: IPython's UsageError, no traceback of our code."""
    assert done.status == "error", done.messages
    assert done.reply["ename"] == "UsageError", done.reply
    assert done.error is None and "Traceback" not in done.stderr, done.messages
    assert "UsageError: " in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.reply["evalue"], done.reply["evalue"]


def test_magics_stream_logs_move_variables_and_share_the_store(home, kernel_of, tmp_path):
    kernel = kernel_of()
    assert kernel.run("%load_ext spell_jupyter").status == "ok"

    # the first line reaches the cell while the run still runs: the run waits for a file the
    # test creates only once it has seen that line
    gate = tmp_path / "gate"

    def open_gate(msg: dict) -> None:
        if msg["msg_type"] == "stream" and "first line" in msg["content"]["text"]:
            gate.touch()

    command = (
        f'echo first line; while [ ! -e {gate} ]; do sleep 0.05; done; echo "\\033[31mred\\033[0m"'
    )
    done = kernel.run(f"r = %spell_run '{command}'\nprint(r.id, r.status)", on_message=open_gate)
    assert done.status == "ok", done.messages
    assert gate.exists()
    assert "first line\n" in done.stdout and "\x1b[31mred\x1b[0m" in done.stdout
    assert done.stdout.rstrip().endswith("1 complete")
    header = done.of_type("display_data")[0]["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" in header
    assert header["text/plain"].startswith("Run 1 · ")  # for frontends without widgets
    assert "outputs: runs/1" in header["text/plain"]

    done = kernel.run("%%spell --out y\ny = 6 * 7\nprint('in the run', y)")
    assert done.status == "ok", done.messages
    assert "in the run 42" in done.stdout
    assert kernel.run("print(y == 42)").stdout == "True\n"
    again = kernel.run("%%spell --out y\ny = 6 * 7\nprint('in the run', y)")  # sent once
    assert again.status == "ok", again.messages

    # --in: variables go the other way; files the cell writes are the run's outputs
    kernel.run("import collections\npoint = collections.Counter(a=2)")
    done = kernel.run(
        "%%spell --in point --out total\n"
        "total = point['a'] * 10\nopen('written.txt', 'w').write('x')"
    )
    assert done.status == "ok", done.messages
    assert kernel.run("print(total)").stdout == "20\n"
    listing = home.spell("ls", "runs/4")
    assert "written.txt" in listing.stdout, listing.stdout

    # the kernel's client and `spell ps` in a terminal see the same runs
    seen = kernel.run(
        "import spell.client\nprint([r.id for r in spell.client.from_environment().runs.list()])"
    )
    assert seen.stdout == "[4, 3, 2, 1]\n", seen.messages
    ps = home.spell("ps")
    assert [line.split()[0] for line in ps.stdout.splitlines()[1:]] == ["1", "2", "3", "4"]
    # a cell that changes folder still sends its variables back
    moved = kernel.run("%%spell --out z\nimport os\nos.makedirs('d')\nos.chdir('d')\nz = 5")
    assert moved.status == "ok", moved.stderr
    assert kernel.run("print(z)").stdout == "5\n"


def test_bad_input_is_one_clear_line_and_makes_no_run(home, kernel_of, tmp_path):
    kernel = kernel_of()
    kernel.run("%load_ext spell_jupyter")
    (tmp_path / "notes.txt").write_text("not a notebook")
    cases = [
        ("%spell_run --no-such-flag echo hi", ["No such option '--no-such-flag'"]),
        ("%spell_run -t NoSuchType echo hi", ["NoSuchType"]),
        ("%spell_run", ["give a command to run"]),
        ("%spell_run 'unclosed", ["No closing quotation"]),
        ("%%spell\n   \n", ["the cell is empty"]),
        ("%%spell --in nothing_here\nprint(1)", ["--in nothing_here: no such variable"]),
        ("import threading\nlock = threading.Lock()", None),
        ("%%spell --in lock\nprint(lock)", ["lock (lock) cannot be pickled"]),
        ("%%spell --out y -b\ny = 1", ["leave out -b"]),
        ("%%spell --out 'not-a-name'\ny = 1", ["--out takes variable names"]),
        ("%spell_run missing.ipynb", ["notebook missing.ipynb does not exist"]),
        ("%spell_run notes.txt.ipynb", ["does not exist"]),
        ("%spell_run nb.ipynb --param x", ["after the notebook nb.ipynb come only parameters"]),
        ("%spell_run --distributed 2 echo hi", ["`--distributed` is not supported yet"]),
    ]
    failures = []
    for code, fragments in cases:
        done = kernel.run(code)
        try:
            if fragments is None:
                assert done.status == "ok"
            else:
                assert_usage_error(done, *fragments)
        except AssertionError as exc:
            failures.append(f"{code!r}: {exc}")
    assert not failures, "\n".join(failures)
    (tmp_path / "fake.ipynb").write_text("{not json")
    assert_usage_error(kernel.run("%spell_run fake.ipynb"), "fake.ipynb is not a notebook")
    # a cell whose --out variable the code never sets: the run fails, saying which
    done = kernel.run("%%spell --out never_set\nx = 1")
    assert_usage_error(done, "ended failed", "never_set not brought back")
    assert "the cell did not set never_set" in done.stderr
    runs = home.spell("ps", "--json")
    assert [r["command"] for r in json.loads(runs.stdout)] == [
        "python -m spell_jupyter.notebook.cell_runner .spell-cell"
    ]


def test_no_server_says_how_to_start_one(home, tmp_path):
    """A kernel whose data directory no server serves (a plain IPython here)."""
    import subprocess
    import sys

    code = (
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "ip.run_line_magic('load_ext', 'spell_jupyter')\n"
        "try:\n"
        "    ip.run_line_magic('spell_run', 'echo hi')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=home.env, capture_output=True, text=True, timeout=120
    )
    assert "UsageError no Spell server is running" in done.stdout, done.stdout + done.stderr
    assert "start one with `spell server`, or start JupyterLab" in done.stdout


def test_the_header_stop_button_stops_the_run(home, kernel_of):
    kernel = kernel_of()
    kernel.run("%load_ext spell_jupyter")
    done = kernel.run("r = %spell_run -b 'sleep 600'")
    assert done.status == "ok", done.messages
    buttons = {
        m["content"]["data"]["state"].get("description"): m["content"]["comm_id"]
        for m in done.of_type("comm_open")
        if m["content"]["data"]["state"].get("_model_name") == "ButtonModel"
    }
    assert set(buttons) >= {"Stop", "Kill"}
    client = home.client()
    client.runs.get(1).wait_status(client.runs.RUNNING, timeout=60)
    kernel.click(buttons["Stop"])
    run = client.runs.get(1)
    run.wait_status(*client.runs.FINAL, timeout=60)
    assert run.status == "stopped"


def test_autoload_magics_in_kernels_of_a_configured_server(home, kernel_of, tmp_path):
    mine = tmp_path / "my_startup.py"
    mine.write_text("MY_STARTUP_RAN = True\n")
    home.env["PYTHONSTARTUP"] = str(mine)
    kernel = kernel_of("--SpellJupyter.autoload_magics=True")
    done = kernel.run("r = %spell_run -b true\nprint(MY_STARTUP_RAN, r.id)")
    assert done.status == "ok", done.messages
    assert done.stdout == "True 1\n"


@pytest.mark.docker
def test_cells_run_in_containers_with_the_kernels_cloudpickle(tmp_path):
    """On Docker the cell's variables cross into an image that has no cloudpickle of its own:
    the kernel's travels with the client."""
    from conftest import docker_env, make_home
    from helpers import Lab

    docker_home = make_home(tmp_path, **docker_env())
    the_lab = Lab(docker_home)
    kernel = Kernel(the_lab, docker_home)
    try:
        kernel.run("%load_ext spell_jupyter\nsquare = lambda v: v * v")
        done = kernel.run("%%spell --in square --out result\nresult = square(7)")
        assert done.status == "ok", done.stderr
        assert kernel.run("print(result)").stdout == "49\n"
        # a kernel of another Python than the image's: said so, not a crash
        kernel.run(
            "import spell_jupyter.notebook.cells as cells\n"
            "cells.sys = type('FakeSys', (), {'version_info': (3, 99)})"
        )
        done = kernel.run("%%spell --out z\nz = 1")
        assert "the notebook's kernel runs Python 3.99" in done.stderr, done.stderr
        assert_usage_error(done, "ended failed")
    finally:
        kernel.close()
        the_lab.stop()


def test_the_stop_button_works_while_the_cell_follows_the_logs(home, kernel_of):
    """The kernel is busy following the run in the cell; the click is answered anyway (by a
    kernel subshell), the run stops, and the cell ends with it."""
    kernel = kernel_of()
    kernel.run("%load_ext spell_jupyter")
    client = kernel.client
    msg_id = client.execute("r = %spell_run 'echo started; sleep 600'")
    stop_button, clicked, status = None, False, None
    deadline = time.monotonic() + 120
    while status is None and time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id and msg["msg_type"] != "comm_open":
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_open":
            state = content["data"]["state"]
            if state.get("_model_name") == "ButtonModel" and state.get("description") == "Stop":
                stop_button = content["comm_id"]
        elif msg["msg_type"] == "stream" and "started" in content["text"] and not clicked:
            kernel.click(stop_button)  # while the cell still runs
            clicked = True
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle" and clicked:
            status = "idle"
    assert clicked and status == "idle"
    assert kernel.run("print(r.status)").stdout == "stopped\n"


def test_widgets_degrade_to_text_where_the_frontend_has_none(served, monkeypatch, tmp_path):
    """nbconvert-style execution (nbclient) keeps what a reader without widgets sees: the
    header's and the monitor's text and HTML, refreshed when the cell ends."""
    import nbformat
    from nbclient import NotebookClient

    for name in ("SPELL_HOME", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, served.env[name])
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext spell_jupyter"),
        nbformat.v4.new_code_cell("r = %spell_run -f -l shown 'echo from the run'"),
        nbformat.v4.new_code_cell(
            "from spell_jupyter.notebook import RunsMonitor\nm = RunsMonitor(label='shown')\n"
            "m.close()\nm"
        ),
        nbformat.v4.new_code_cell("r"),
    ]
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    header = nb.cells[1].outputs[0]
    assert header["data"]["text/plain"].startswith("Run 1 · complete · CPU · ")
    assert "complete" in header["data"]["text/html"]
    assert "from the run" in "".join(o.get("text", "") for o in nb.cells[1].outputs)
    monitor = nb.cells[2].outputs[0]["data"]
    assert "echo from the run" in monitor["text/plain"] and "<table>" in monitor["text/html"]
    shown = nb.cells[3].outputs[0]["data"]
    assert shown["text/plain"] == "<Run 1 complete>" and "Machine type" in shown["text/html"]


def test_the_header_charts_metrics_and_the_monitor_filters_and_acts(served):
    from spell_jupyter.notebook import RunHeader, RunsMonitor

    client = served.client()
    script = "from spell.metrics import send_metric as s\nfor i in range(5): s('loss', 1 / (i + 1))"
    sender = f'python -c "{script}"'
    run = client.runs.new(command=sender, labels=["metrics"])
    run.wait_status(client.runs.COMPLETE, timeout=120)
    header = RunHeader(run)
    header._read_metrics()
    assert [index for index, _ in header.metrics["loss"]] == [0, 1, 2, 3, 4]
    assert "loss: 0.2 (index 4" in header._repr_mimebundle_()["text/html"]

    sleeper = client.runs.new(command="sleep 600", labels=["long"])
    monitor = RunsMonitor(client, label="long", interval=3600)
    try:
        assert [r.id for r in monitor.runs] == [sleeper.id]
        sleeper.wait_status(client.runs.RUNNING, timeout=60)
        monitor.act(sleeper.id, "stop")
        sleeper.wait_status(*client.runs.FINAL, timeout=60)
        assert sleeper.status == "stopped"
        another = client.runs.new(command="true", labels=["long"])  # the stream brings it
        while another.id not in [r.id for r in monitor.runs]:
            assert monitor.updated.wait(30), "no event-stream update"
            monitor.updated.clear()
        monitor.act(run.id, "logs")
        assert "Run 1, its last 200 log lines" in monitor.logs.value
        another.wait_status(*client.runs.FINAL, timeout=60)
        monitor.status_filter.value = "complete"
        monitor.label_filter.value = "metrics"
        assert [r.id for r in monitor.runs] == [run.id]
    finally:
        monitor.close()


def test_interrupting_the_cell_detaches_and_the_run_goes_on(home, kernel_of):
    kernel = kernel_of()
    kernel.run("%load_ext spell_jupyter")
    client = kernel.client
    msg_id = client.execute("r = %spell_run 'echo started; sleep 600'")
    stderr, interrupted = "", False
    while True:
        msg = client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "stream" and "started" in content["text"] and not interrupted:
            kernel._api("POST", f"api/kernels/{kernel.id}/interrupt")  # the toolbar's ■
            interrupted = True
        elif msg["msg_type"] == "stream" and content["name"] == "stderr":
            stderr += content["text"]
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    assert "Stopped viewing logs; run 1 goes on" in stderr
    assert kernel.run("print(r.id, r.status)").stdout == "1 running\n"
    run = home.client().runs.get(1)
    assert run.status == "running"
    run.kill()
