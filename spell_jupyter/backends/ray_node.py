"""NodeAgent: Spell's agent on one Ray node, running there the runs the cluster placed there.

The RayBackend reserves each run's machine type in a placement group (Ray's scheduler picks
the node and queues the run while no node has room) and asks the agent of that node, a named
detached actor pinned to it and holding no resources of its own, to execute the run as on one
host: in a Docker container of its environment where the node's Docker Engine answers (the
environment built there, from the same hashed spec, and cached by that engine), else as a
local process; in a folder of the node, its code and mounts fetched from SpellFS on the shared
root, its output read from a cursor, its outputs saved back into SpellFS. One warm agent per
node serves every run there, so a run starts without a new worker process. Everything a run's
handle needs is derived from its ID, so an agent finds its runs again.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..fs.spellfs import SpellFileSystem
from ..gpus import gpu_usage
from .api_relay import ApiRelay
from .base import Backend, LaunchRequest, OutputFile, ProcessStatus, StagedCode
from .docker import DockerBackend
from .host import HostBackend
from .local import LocalBackend

# Where a node keeps its runs' folders (env on the node; default: a folder of its temp dir).
NODE_HOME_ENV = "SPELL_NODE_HOME"
DOCKER_ASK_SECONDS = 10.0  # how often an agent without Docker looks for it again
FOLLOWER_IDLE_SECONDS = 60.0  # a run's output reader nobody asked for this long is stopped
_END = object()
log = logging.getLogger(__name__)


def node_home(node_id: str, key: str) -> Path:
    """The folder of one agent's runs on its node (agents of other SpellFS roots or
    namespaces, whose run IDs are their own, keep theirs apart)."""
    base = os.environ.get(NODE_HOME_ENV)
    return (Path(base) if base else Path(tempfile.gettempdir()) / "spell-ray" / node_id[:16]) / key


class _Follower:
    """One run's output, read ahead from a cursor by a thread (a few batches at most), so a
    poll from the server gets what came since its last poll without reopening the log."""

    def __init__(self, backend: Backend, handle: dict, cursor: str):
        self.cursor = cursor  # the cursor after the last batch handed out
        self.asked = time.monotonic()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._batches: queue.Queue = queue.Queue(maxsize=4)
        threading.Thread(
            target=self._read, args=(backend, handle, cursor), name="spell-node-output", daemon=True
        ).start()

    def _read(self, backend: Backend, handle: dict, cursor: str) -> None:
        try:
            for batch in backend.follow_output(handle, cursor, self._stop):
                self._put(batch)
        finally:
            self._put(_END)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._batches.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def take(self, wait: float):
        """The next batch, `_END`, or None when none came within `wait` seconds."""
        self.asked = time.monotonic()
        try:
            return self._batches.get(timeout=wait)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop.set()


class _Pusher:
    """Copies what a running run wrote (new or changed since the last push) into SpellFS every
    `interval` seconds, so a node that dies takes only what came after the last push."""

    def __init__(self, backend: HostBackend, request: LaunchRequest, handle: dict, interval: float):
        self.backend, self.request, self.handle = backend, request, handle
        self._stop = threading.Event()
        self._pushed: dict[str, tuple[int, int]] = {}  # saved path -> (size, mtime) pushed
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="spell-node-push", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                if self.backend.status(self.handle).ended:
                    return  # the engine saves the rest
                self.push()
            except Exception:  # a file gone mid-push, SpellFS briefly away: next time
                log.warning("Spell: pushing run %s's outputs failed", self.request.run_id)

    def push(self) -> None:
        changed = []
        for output in self.backend.list_outputs(self.request):
            info = os.lstat(output.source)
            seen = (info.st_size, info.st_mtime_ns)
            if self._pushed.get(output.path) != seen:
                changed.append((output, seen))
        if changed:
            self.backend.fs.save_run_outputs(
                self.request.run_id,
                self.backend.workdir(self.request.run_id),
                [(output.source, output.path) for output, _ in changed],
                copy=True,
            )
            self._pushed.update((output.path, seen) for output, seen in changed)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(60)


class NodeAgent:
    """The actor's class (made a Ray actor by the RayBackend)."""

    def __init__(self, fs_settings: dict, bucket_options: dict, containers: bool, key: str):
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        fs = SpellFileSystem(**fs_settings, skip_instance_cache=True)
        home = self.home = node_home(self.node_id, key)
        options = {
            "fs": fs,
            "home": home,
            "bucket_options": bucket_options,
            "service_bind": self.node_ip,  # workspaces, kernels: reached from the server's host
        }
        self.relay = ApiRelay(home / "api")  # runs here reach the leading server through it
        self._changes: dict[int, threading.Event] = {}  # run -> set when its state changes
        self._changes_lock = threading.Lock()
        self._attached: set[int] = set()  # runs this agent's backends watch
        self.local = LocalBackend(**options)
        self.local.watch(self._on_change)
        self.docker: DockerBackend | None = None
        self._docker_options = options if containers else None
        self._docker_asked = -DOCKER_ASK_SECONDS
        self._docker_lock = threading.Lock()
        self._lock = threading.Lock()
        self._find_docker()
        self._followers: dict[int, _Follower] = {}
        self._followers_lock = threading.Lock()
        self._pushers: dict[int, _Pusher] = {}
        self._unpushed: set[int] = set()  # runs launched with no pushes

    def _on_change(self, run_id: int | None) -> None:
        """Wake who waits on the run (on every run when the backend cannot say which)."""
        with self._changes_lock:
            events = list(self._changes.values()) if run_id is None else [self._changes.get(run_id)]
        for event in events:
            if event is not None:
                event.set()

    def _find_docker(self) -> None:
        """Take the node's Docker Engine where it answers (asked again at most every
        DOCKER_ASK_SECONDS while it does not: a node's Docker may come up after its agent)."""
        with self._docker_lock:
            if self.docker is not None or self._docker_options is None:
                return
            if time.monotonic() - self._docker_asked < DOCKER_ASK_SECONDS:
                return
            self._docker_asked = time.monotonic()
            # the host's network: workspaces and kernels listen on the node's address
            docker = DockerBackend(**self._docker_options, host_network=True)
            if docker.answers():
                docker.watch(self._on_change)
                self.docker = docker

    def _backend(self, request: LaunchRequest | None = None, handle: dict | None = None):
        """The backend a run goes through: Docker for a run with an image (or a container)."""
        if (handle is not None and "container" in handle) or (request and request.image):
            return self._docker()
        return self.local

    def _docker(self) -> DockerBackend:
        if self.docker is None:
            raise RuntimeError(f"no Docker Engine answers on Ray node {self.node_ip}")
        return self.docker

    def lead(self, api_url: str) -> None:
        """The server at `api_url` leads the runs now: runs here reach the API there."""
        self.relay.lead(api_url)

    def info(self) -> dict:
        """Where the agent is, and whether runs here can be containers (with GPUs)."""
        self._find_docker()
        return {
            "node": self.node_id,
            "node_ip": self.node_ip,
            "docker": self.docker is not None,
            "nvidia": self.docker is not None and self.docker.nvidia_runtime,
        }

    # -- images (of the node's Docker Engine) ----------------------------------------------------

    def has_image(self, image: str) -> bool:
        return self._docker().has_image(image)

    def image_id(self, image: str) -> str | None:
        return self._docker().image_id(image)

    def pull_lines(self, image: str) -> Iterator[str]:
        """Pull `image`, streaming its progress lines (a Ray streaming generator)."""
        docker = self._docker()
        yield from _streamed(lambda sink: docker.pull_image(image, sink))

    def build_lines(self, dockerfile: str, files: dict[str, bytes], tag: str) -> Iterator[str]:
        """Build `tag`, streaming its output lines."""
        docker = self._docker()
        yield from _streamed(lambda sink: docker.build_image(dockerfile, files, tag, sink))

    # -- runs ------------------------------------------------------------------------------------

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        return self._backend(request).stage_code(request)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        return self._backend(request).stage_mounts(request)

    def launch(self, request: LaunchRequest, push_interval: float = 0.0) -> dict:
        """Start the command (once: a resumed launch returns the same handle); with a
        `push_interval`, what it writes is pushed into SpellFS that often while it runs."""
        if request.api is not None:  # the server's socket is on its host: the relay's is here
            request = replace(request, api=replace(request.api, socket_dir=str(self.relay.folder)))
        backend = self._backend(request)
        with self._lock:
            handle = backend.launch(request)
            if push_interval > 0 and request.run_id not in self._pushers:
                pusher = _Pusher(backend, request, handle, push_interval)
                self._pushers[request.run_id] = pusher
        backend.attach(request.run_id, handle)
        self._attached.add(request.run_id)
        if push_interval > 0:  # an agent started again (its node lived on) pushes it on
            _write_pickle(self._push_record(request.run_id), (request, push_interval))
        where = {"run": request.run_id, "node": self.node_id, "node_ip": self.node_ip}
        return {**handle, **where, "gpus": list(request.gpu_indices)}

    def _push_record(self, run_id: int) -> Path:
        return self.home / "pushes" / f"{run_id}.pickle"

    def _stop_pusher(self, run_id: int) -> None:
        with self._lock:
            pusher = self._pushers.pop(run_id, None)
            self._push_record(run_id).unlink(missing_ok=True)
        if pusher is not None:
            pusher.stop()

    def _resume_pusher(self, run_id: int, backend: HostBackend, handle: dict) -> None:
        """After a restart of this agent: push a running run's outputs on, as launched."""
        with self._lock:
            if run_id in self._pushers or run_id in self._unpushed:
                return
            try:
                request, interval = _read_pickle(self._push_record(run_id))
            except FileNotFoundError:
                self._unpushed.add(run_id)
                return
            self._pushers[run_id] = _Pusher(backend, request, handle, interval)

    def status(self, handle: dict) -> ProcessStatus:
        backend = self._backend(handle=handle)
        run_id = _run_id(handle)
        if run_id not in self._attached:  # after an agent restart: watched again
            backend.attach(run_id, handle)
            self._attached.add(run_id)
        status = backend.status(handle)
        if not status.ended:
            self._resume_pusher(run_id, backend, handle)
        return status

    def wait_end(self, handle: dict, timeout: float) -> ProcessStatus:
        """The command's state once it has ended, or after `timeout` seconds."""
        run_id = _run_id(handle)
        with self._changes_lock:
            changed = self._changes.setdefault(run_id, threading.Event())
        end = time.monotonic() + timeout
        while True:
            changed.clear()  # a change from now on wakes the wait below
            status = self.status(handle)
            left = end - time.monotonic()
            if status.ended or left <= 0:
                return status
            changed.wait(left)

    def output(self, handle: dict, cursor: str, wait: float) -> tuple[list, str, bool]:
        """Output after `cursor`, waiting up to `wait` seconds for some: (lines, cursor after
        them, whether the command has ended and everything was given). Asked again from the
        cursor it gave last, the same reader goes on; from another (a batch the caller did not
        get), a new reader starts there."""
        run_id = _run_id(handle)
        with self._followers_lock:
            self._forget_idle_followers()
            follower = self._followers.get(run_id)
            if follower is None or follower.cursor != cursor:
                if follower is not None:
                    follower.close()
                follower = _Follower(self._backend(handle=handle), handle, cursor)
                self._followers[run_id] = follower
        with follower.lock:
            if follower.cursor != cursor:  # another call took a batch meanwhile
                return [], cursor, False
            got = follower.take(wait)
            if got is None:
                return [], cursor, False
            if got is _END:
                self._stop_follower(run_id)
                return [], cursor, True
            lines, follower.cursor = got
            return lines, follower.cursor, False

    def _forget_idle_followers(self) -> None:
        now = time.monotonic()
        idle = [r for r, f in self._followers.items() if now - f.asked > FOLLOWER_IDLE_SECONDS]
        for run_id in idle:
            self._followers.pop(run_id).close()

    def _stop_follower(self, run_id: int) -> None:
        with self._followers_lock:
            follower = self._followers.pop(run_id, None)
        if follower is not None:
            follower.close()

    def signal(self, handle: dict, signum: int) -> bool:
        return self._backend(handle=handle).signal(handle, signum)

    def stats(self, handle: dict) -> dict:
        """The run's statistics, with its GPUs' usage on this node."""
        stats = self._backend(handle=handle).stats(handle)
        return {**stats, "gpus": gpu_usage(handle.get("gpus") or ())}

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        return self._backend(request).list_outputs(request)

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        self._stop_pusher(request.run_id)  # its last push done: the files may move now
        self._backend(request).save_outputs(request, files)

    def cleanup(self, run_id: int, handle: dict | None) -> None:
        self._stop_follower(run_id)
        self._stop_pusher(run_id)
        self._unpushed.discard(run_id)
        self._attached.discard(run_id)
        with self._changes_lock:
            self._changes.pop(run_id, None)
        if handle is not None:
            self._backend(handle=handle).cleanup(run_id, handle)
            return
        backends: list[HostBackend] = [self.local] + ([self.docker] if self.docker else [])
        for backend in backends:  # never launched: its folders, whichever staged them
            backend.cleanup(run_id, None)


def _streamed(work) -> Iterator[str]:
    """The lines `work(sink)` gives its sink, as they come; what it raises, at the end."""
    lines: queue.Queue = queue.Queue()
    failed: list[BaseException] = []

    def target() -> None:
        try:
            work(lines.put)
        except BaseException as exc:  # raised to the caller below
            failed.append(exc)
        finally:
            lines.put(_END)

    threading.Thread(target=target, name="spell-node-build", daemon=True).start()
    while (line := lines.get()) is not _END:
        yield line
    if failed:
        raise failed[0]


def _write_pickle(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{threading.get_ident()}")
    partial.write_bytes(pickle.dumps(value))
    partial.replace(path)


def _read_pickle(path: Path):
    return pickle.loads(path.read_bytes())


def _run_id(handle: dict) -> int:
    if "run" in handle:
        return int(handle["run"])
    return int(handle["group"].rsplit("-", 1)[-1])  # handles from before "run"


def gpu_ids() -> list[int]:
    """The GPUs Ray gives a task in a run's placement group: the run's own."""
    import ray

    return [int(g) for g in ray.get_gpu_ids()]
