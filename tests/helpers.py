"""Waiting on runs by their logs (events, not sleeps), shared by the test modules."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def wait_for_line(run, prefix: str) -> str:
    """Follow the run's logs until a user line starts with `prefix`; return that line."""
    for entry in run.logs(follow=True):
        if is_user_line(entry) and entry.text.startswith(prefix):
            return entry.text
    raise AssertionError(f"run {run.id} ended without printing {prefix!r}")


def wait_for_note(run, text: str) -> None:
    """Follow the run's logs until a status event contains `text`."""
    for entry in run.logs(follow=True):
        if entry.status_event and text in entry.text:
            return
    raise AssertionError(f"run {run.id} never logged {text!r}")


def is_user_line(entry) -> bool:
    """What the run's command printed: not a status event, not an environment build's output
    (which a fresh Docker daemon shows and one with the image cached does not)."""
    return not entry.status_event and entry.stream != "build"


def user_lines(run) -> list[str]:
    return [e.text for e in run.logs() if is_user_line(e)]


def build_lines(run) -> list[str]:
    """What building the run's environment printed."""
    return [e.text for e in run.logs() if not e.status_event and e.stream == "build"]


def notes(run) -> list[str]:
    return [e.text for e in run.logs() if e.status_event]


def configured_server(serve, tmp_path, env: dict | None = None, **spell_config):
    """A running server whose SpellJupyter config comes from a Jupyter config file."""
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"SpellJupyter": spell_config})
    )
    return serve(JUPYTER_CONFIG_DIR=str(config_dir), SPELL_CONCURRENCY_LIMIT="8", **(env or {}))


LAB_TOKEN = "lab-token-for-tests"


class Lab:
    """A `jupyter server` process with the Spell extension enabled, as JupyterLab runs it
    (`app="jupyterlab"`: JupyterLab itself, its pages and the extension's sidebar)."""

    def __init__(
        self,
        home,
        *args: str,
        app: str = "jupyter_server",
        port: int | None = None,
        token: str = LAB_TOKEN,
    ):
        """`port`: that port (a restart of a Lab), else a free one; `token`: its token."""
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = home.path.parent / f"lab-{self.port}.log"
        argv = [
            sys.executable,
            "-m",
            app,
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            "--ServerApp.allow_root=True",
            "--ServerApp.jpserver_extensions=spell_jupyter=True",
            f"--ServerApp.root_dir={home.path.parent}",
            "--no-browser",
            *args,
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, env=home.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        """Until Jupyter has written its runtime file (it does so once it listens)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            if "is running at" in self.output() or "Jupyter Server" in self.output():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"jupyter server did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def spell_api(self) -> int:
        """The status of GET /spell/api/v1/ on this server."""
        from spell_jupyter.client.errors import APIError
        from spell_jupyter.client.transport import Transport

        try:
            Transport(self.url, LAB_TOKEN).request("GET", "")
            return 200
        except APIError as exc:
            return exc.status_code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_notebook(
    path: Path, *sources: str, parameters: str | None = None, kernel: bool = True
) -> Path:
    """A notebook of code cells (the first tagged `parameters` when given); `kernel`: with
    a kernelspec (Lab then starts one on opening it without asking)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    if kernel:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def kernel_execute(channels_url: str, token: str, code: str, timeout: float = 120) -> dict:
    """Execute `code` in a kernel over its websocket (`.../api/kernels/<id>/channels`, ws://):
    {"result": text/plain of its execute_result, or None} or {"error": ename}, with "stdout"."""
    import asyncio
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(channels_url, headers={"Authorization": f"token {token}"})

    async def run() -> dict:
        connection = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        }
        await connection.write_message(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        found: dict = {"result": None, "stdout": ""}
        idle = replied = False
        while True:
            message = await asyncio.wait_for(connection.read_message(), timeout)
            assert message is not None, "the kernel's websocket closed"
            reply = json.loads(message)
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = reply["msg_type"]
            if kind == "status" and reply["content"]["execution_state"] == "idle":
                idle = True  # every output of the request was sent before this
            elif kind == "execute_result":
                found["result"] = reply["content"]["data"]["text/plain"]
            elif kind == "stream":
                found["stdout"] += reply["content"]["text"]
            elif kind == "error":
                found["error"] = reply["content"]["ename"]
            elif kind == "execute_reply":
                replied = True
            if idle and replied:  # the reply (shell) and the outputs (iopub) both in
                connection.close()
                return found

    return asyncio.run(run())


def handle_of(home, run_id: int) -> dict:
    """The backend's handle of a run, as the store keeps it."""
    from spell_jupyter.store import RunStore, connect_database

    return RunStore(connect_database(f"sqlite:///{home.path / 'spell.db'}")).handle_of(run_id)
