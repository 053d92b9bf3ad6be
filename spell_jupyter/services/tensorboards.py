"""TensorBoards: a run started with `--tensorboard-dir DIR` gets TensorBoard over that folder,
served by this server at `<base_url>spell/runs/<id>/tensorboard/` (through the same proxy as
workspaces). One TensorBoard process per run, started on this host when first asked for, on
127.0.0.1: over the run's live working folder while it is active, over its saved outputs
(runs/<id>/...) once it has ended; stopped when unused for `idle_seconds` and with the server.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..engine import RunControl
from ..errors import NotFound, Unavailable
from ..fs.spellfs import SpellFileSystem
from ..models import Run
from ..processes import free_ports
from ..store import RunStore
from .upstreams import Upstream

INSTALL_HINT = (
    "TensorBoard needs the tensorboard package beside this Jupyter server: "
    "pip install 'spell-jupyter[tensorboard]' (or pip install tensorboard), then restart it"
)
START_TIMEOUT = 60.0


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


@dataclass
class _Board:
    process: subprocess.Popen
    logdir: Path
    address: str
    used: float


class TensorBoards:
    """Start, reuse and stop the TensorBoard processes of runs."""

    def __init__(
        self,
        store: RunStore,
        engine: RunControl,
        fs: SpellFileSystem,
        home: Path,
        base_url: str = "/",
        idle_seconds: float = 900.0,
    ):
        self.store = store
        self.engine = engine
        self.fs = fs
        self.folder = home / "tensorboard"  # logs of the processes, copies of S3 outputs
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.idle_seconds = idle_seconds
        self._boards: dict[int, _Board] = {}
        self._lock = threading.Lock()

    def prefix(self, run_id: int) -> str:
        return f"{self.base_url}spell/runs/{run_id}/tensorboard"

    def upstream(self, run_id: int) -> Upstream:
        """Where the run's TensorBoard answers (started, or started again over the run's saved
        outputs once it has ended)."""
        run = self.store.get_run(run_id)
        if run.spec.tensorboard_dir is None:
            raise NotFound(
                f"run {run_id} has no TensorBoard: start a run with --tensorboard-dir DIR "
                "(tensorboard_directory= in Python)"
            )
        if not tensorboard_installed():
            raise Unavailable(INSTALL_HINT)
        logdir = self._logdir(run)
        with self._lock:
            self._stop_unused(keep=run_id)
            board = self._boards.get(run_id)
            if board is None or board.logdir != logdir or board.process.poll() is not None:
                if board is not None:
                    _stop(board)
                board = self._start(run_id, logdir)
                self._boards[run_id] = board
            board.used = time.monotonic()
        return Upstream(board.address, None, run)

    def _logdir(self, run: Run) -> Path:
        if not run.status.is_final:
            live = self.engine.live_folder(run.id)
            if live is not None and live.is_dir():
                return live / run.spec.tensorboard_folder()
        saved = f"runs/{run.id}/{run.spec.saved_tensorboard_folder()}".rstrip("/")
        local = self.fs.local_path(saved)
        if local is not None:
            return local
        copy = self.folder / "outputs" / str(run.id)  # an S3 root: fetched once, the run ended
        if not copy.exists() and self.fs.exists(saved):
            staging = copy.with_name(f"{run.id}.fetching")
            shutil.rmtree(staging, ignore_errors=True)
            self.fs.get(saved + "/", str(staging), recursive=True)
            staging.rename(copy)
        return copy

    def _start(self, run_id: int, logdir: Path) -> _Board:
        self.folder.mkdir(parents=True, exist_ok=True)
        (port,) = free_ports()
        log = open(self.folder / f"{run_id}.log", "ab")  # noqa: SIM115 (the process keeps it)
        command = [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--path_prefix={self.prefix(run_id)}",
            "--reload_interval=5",
        ]
        with log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        board = _Board(process, logdir, f"127.0.0.1:{port}", time.monotonic())
        url = f"http://{board.address}{self.prefix(run_id)}/"
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(board)
                tail = (self.folder / f"{run_id}.log").read_text(errors="replace")[-800:]
                raise Unavailable(f"TensorBoard for run {run_id} did not start: {tail.strip()}")
            time.sleep(0.1)
        return board

    def _stop_unused(self, keep: int) -> None:
        now = time.monotonic()
        for run_id, board in list(self._boards.items()):
            if run_id != keep and now - board.used > self.idle_seconds:
                _stop(board)
                del self._boards[run_id]

    def close(self) -> None:
        with self._lock:
            for board in self._boards.values():
                _stop(board)
            self._boards.clear()


def _stop(board: _Board) -> None:
    if board.process.poll() is None:
        board.process.terminate()
        try:
            board.process.wait(10)
        except subprocess.TimeoutExpired:
            board.process.kill()
            board.process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
