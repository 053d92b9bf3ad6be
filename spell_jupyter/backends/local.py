"""The local backend: runs as plain processes on this machine, each under a supervisor.

Works anywhere Python does (Binder included). A run survives its server because its
supervisor (`local_shim.py`) lives in its own session and keeps output and exit code in files.
Its end is an event: a thread per run waits for the supervisor (its child, or its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from traitlets import Float

from ..errors import InvalidInput
from ..models import WORKDIR, OutputLine, visible_envvars
from ..processes import free_ports
from .base import (
    SERVICE_PORTS_ENV,
    LaunchRequest,
    OutputBatches,
    ProcessState,
    ProcessStatus,
    StatusListener,
)
from .host import HostBackend, HostMount
from .run_api import api_environment, link_client_packages

SHIM = Path(__file__).with_name("local_shim.py")
READ_LIMIT = 4 << 20  # bytes of output taken per batch, so memory stays bounded


class LocalBackend(HostBackend):
    """Each run is `/bin/sh -c COMMAND` in its own process group, supervised by a shim."""

    name = "local"

    output_check_interval = Float(
        0.05, help="Seconds between looks at a quiet run's output file (sooner after output)"
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._children: dict[int, subprocess.Popen] = {}
        self._on_change: StatusListener | None = None
        self._watched: set[int] = set()

    # -- Backend interface -------------------------------------------------------------------

    def check_mounts(self, targets: list[str]) -> None:
        outside = [t for t in targets if not t.startswith(WORKDIR + "/")]
        if outside:
            raise InvalidInput(
                f"the local backend runs processes on this machine, so it can show resources "
                f"only inside the run's working folder ({WORKDIR}/...), not at "
                f"{', '.join(outside)}: give a relative mount path, or use the Docker backend"
            )

    def place_mounts(self, workdir: Path, mounts: tuple[HostMount, ...]) -> str:
        """Copy each resource into the working folder (a process has no mount namespace);
        times are kept, so unchanged copies are not saved as outputs."""
        for mount in mounts:
            rel = mount.workdir_relative()
            if rel is None:  # refused at submission; a run from an older spec
                raise InvalidInput(f"the local backend cannot mount at {mount.target}")
            dest = workdir / rel
            if dest.exists():
                continue  # a resumed launch
            dest.parent.mkdir(parents=True, exist_ok=True)
            if mount.is_dir:
                shutil.copytree(mount.source, dest, symlinks=True)
            else:
                shutil.copy2(mount.source, dest)
        return "copied into the working folder (the local backend has no mounts)"

    def launch(self, request: LaunchRequest) -> dict:
        state_dir = Path(self.state_root) / str(request.run_id)
        handle = {"state_dir": str(state_dir)}
        env_file = state_dir / "env.json"
        if (state_dir / "shim.lock").exists():  # already started (a resumed launch)
            if request.service_token is not None:
                ports = json.loads(env_file.read_text())[SERVICE_PORTS_ENV].split(",")
                handle["addresses"] = [f"{self.service_bind}:{port}" for port in ports]
                handle["address"] = handle["addresses"][0]
            return handle
        state_dir.mkdir(parents=True, exist_ok=True)
        env = self._environment(request)
        if request.service_token is not None:
            ports = free_ports(request.service_ports, self.service_bind)
            env.update(self.service_environment(request, ports, self.service_bind))
            handle["addresses"] = [f"{self.service_bind}:{port}" for port in ports]
            handle["address"] = handle["addresses"][0]
        env_file.write_text(json.dumps(env))
        env_file.chmod(0o600)  # it may hold the service's token
        workdir = self.workdir(request.run_id)
        cwd = workdir / request.cwd if request.cwd else workdir
        if request.host_folder:
            cwd = Path(request.host_folder)
        (state_dir / "shim.lock").touch()
        argv = [sys.executable, "-I", "-S", str(SHIM), str(state_dir), str(cwd), str(env_file)]
        with open(state_dir / "shim.err", "wb") as err:
            child = subprocess.Popen(
                [*argv, request.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self._children[request.run_id] = child
        return handle

    def status(self, handle: dict) -> ProcessStatus:
        state_dir = Path(handle["state_dir"])
        exit_file = state_dir / "exit.json"
        if exit_file.exists():
            self._reap(state_dir)
            data = json.loads(exit_file.read_text())
            return ProcessStatus(ProcessState.EXITED, data["exit_code"], data.get("error") or "")
        if self._shim_alive(state_dir):
            if (state_dir / "pid.json").exists():
                return ProcessStatus(ProcessState.RUNNING)
            return ProcessStatus(ProcessState.STARTING)
        if exit_file.exists():  # it finished between the two checks
            return self.status(handle)
        err = (
            (state_dir / "shim.err").read_text(errors="replace")[-2000:]
            if (state_dir / "shim.err").exists()
            else ""
        )
        return ProcessStatus(ProcessState.LOST, None, err.strip())

    def watch(self, on_change: StatusListener) -> None:
        self._on_change = on_change

    def attach(self, run_id: int, handle: dict) -> None:
        """Wait in a thread for the run's supervisor to end (our child, or the holder of its
        lock), then report it."""
        if run_id in self._watched or self._on_change is None:
            return
        self._watched.add(run_id)
        thread = threading.Thread(
            target=self._await_end, args=(run_id, Path(handle["state_dir"])), daemon=True
        )
        thread.start()

    def _await_end(self, run_id: int, state_dir: Path) -> None:
        child = self._children.get(run_id)
        try:
            if child is not None:
                child.wait()
            else:
                with open(state_dir / "shim.lock", "a") as f:
                    fcntl.flock(f, fcntl.LOCK_EX)  # held by the supervisor while it lives
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError:
            pass  # its folder is gone: the status says so
        finally:
            self._watched.discard(run_id)
            if self._on_change is not None:
                self._on_change(run_id)

    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        """Records of output.jsonl after the byte offset `cursor`, as the supervisor appends
        them; ends when it has written exit.json (or died) and every record was given."""
        state_dir = Path(handle["state_dir"])
        offset = int(cursor or 0)
        wait = self.output_check_interval / 5
        ended = False
        while not stop.is_set():
            lines, offset, more = self._read(state_dir / "output.jsonl", offset)
            if lines:
                yield lines, str(offset)
                wait = self.output_check_interval / 5
                continue
            if ended and not more:
                return  # it had ended before this read found nothing more
            if not ended:
                ended = (state_dir / "exit.json").exists() or not self._shim_alive(state_dir)
                if ended:
                    continue  # read once more: what it wrote before it ended
            stop.wait(wait)
            wait = min(wait * 2, self.output_check_interval)

    @staticmethod
    def _read(path: Path, offset: int) -> tuple[list[OutputLine], int, bool]:
        """Whole records from `offset` (at most about READ_LIMIT bytes): the lines, the offset
        after them, and whether a record was left unfinished."""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(READ_LIMIT)
                while b"\n" not in data and len(data) % READ_LIMIT == 0 and data:
                    more = f.read(READ_LIMIT)  # one record larger than a read: take it whole
                    if not more:
                        break
                    data += more
        except FileNotFoundError:
            return [], offset, False
        end = data.rfind(b"\n") + 1  # only whole records
        lines = []
        for raw in data[:end].splitlines():
            record = json.loads(raw)
            lines.append(
                OutputLine(
                    timestamp=datetime.fromtimestamp(record["t"], timezone.utc),
                    stream=record["s"],
                    text=record["x"],
                )
            )
        return lines, offset + end, end < len(data)

    def signal(self, handle: dict, signum: int) -> bool:
        pid_file = Path(handle["state_dir"]) / "pid.json"
        try:
            pgid = json.loads(pid_file.read_text())["pgid"]
        except FileNotFoundError:
            return False
        with contextlib.suppress(ProcessLookupError):  # gone: the shim writes its exit code
            os.killpg(pgid, signum)
        return True

    def describe(self, handle: dict) -> str:
        return "Running as a local process (the local backend: no container)"

    def release(self, handle: dict) -> None:
        state_dir = Path(handle["state_dir"])
        self._reap(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _environment(self, request: LaunchRequest) -> dict[str, str]:
        env = visible_envvars(dict(os.environ))
        env.update(request.envvars)
        # The run sees only the GPUs the scheduler gave it (none for CPU machine types).
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, request.gpu_indices))
        env["PYTHONUNBUFFERED"] = "1"
        # `python` is the Python environment Jupyter runs in, as in a notebook's `!python`,
        # even for a server started without activating it
        bin_dir = os.path.dirname(sys.executable)
        if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
            env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH")) if p)
        socket_dir = request.api.socket_dir if request.api else ""
        library = str(link_client_packages(self.home / "client-lib"))
        env.update(
            api_environment(
                request.run_id, request.api, socket_dir, library, env.get("PYTHONPATH", "")
            )
        )
        return env

    def _shim_alive(self, state_dir: Path) -> bool:
        run_id = int(state_dir.name)
        child = self._children.get(run_id)
        if child is not None and child.poll() is None:
            return True  # our own child; it may not hold its lock yet
        try:
            with open(state_dir / "shim.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return False
        except BlockingIOError:
            return True
        except FileNotFoundError:
            return False

    def _reap(self, state_dir: Path) -> None:
        child = self._children.pop(int(state_dir.name), None)
        if child is not None:
            child.wait()
