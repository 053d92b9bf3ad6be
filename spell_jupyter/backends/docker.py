"""The Docker backend: each run is a container of its environment's image (docker SDK).

The run's working folder is bind-mounted at /spell; `init=True` puts tini at PID 1 so a stop
reaches the whole command promptly. Containers carry labels naming their run and data
directory, and stay until their outputs are saved, so a restarted server reattaches to them and
reads their logs on from the cursor it stored. Status changes come from Docker's events API
(filtered by this data directory's label); output comes from one followed log stream per run.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from traitlets import Bool, Float, Unicode

from ..errors import InvalidInput, Unavailable
from ..models import WORKDIR, OutputLine, visible_envvars
from ..processes import free_ports
from .base import (
    SERVICE_PORTS_ENV,
    BuildFailed,
    ImageBuilder,
    LaunchRequest,
    OutputBatches,
    ProcessState,
    ProcessStatus,
    StatusListener,
)
from .host import HostBackend, HostMount
from .run_api import CONTAINER_API_DIR, CONTAINER_LIB_DIR, api_environment, client_packages

LABEL_RUN = "spell.run_id"
SERVICE_PORT = 8888  # where a serving run listens inside its container (and on, for several)
HOST_FOLDER = f"{WORKDIR}/host"  # where a run that works in a folder of this host sees it
LABEL_HOME = "spell.home"
WINDOW_NS = 2_000_000_000  # the cursor keeps counts of the entries this close to the newest
TIMESTAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")  # match()
STREAMS = {1: "stdout", 2: "stderr"}
KEYS = {"stdout": "out", "stderr": "err"}
MAX_PENDING = 100_000  # lines read ahead of the store before the reader waits
CHUNK_LINES = 5_000  # lines per stored batch at most (one transaction each)
NO_REGISTRY = re.compile(r"registry|no such host|pull access denied|manifest unknown|i/o timeout")
NO_REGISTRY_HINT = (
    " -- the image could not be fetched. On a machine without a registry, build a base image "
    "from Debian packages with `spell images build-base --set-default` (it is written to the "
    "data directory's config.json), then restart what serves the data directory: `spell server "
    "stop` for a `spell server`, or restart JupyterLab when the runs are JupyterLab's"
)


class DockerBackend(HostBackend, ImageBuilder):
    """Runs in containers of the local Docker Engine (or DOCKER_HOST's)."""

    name = "docker"

    docker_host = Unicode(
        "", help="Docker Engine URL (default: DOCKER_HOST, else the local socket)"
    ).tag(config=True)
    client_timeout = Float(120.0, help="Seconds a Docker API call may take").tag(config=True)
    host_network = Bool(
        False,
        help="Containers share the host's network (as on a cluster's node, whose runs reach "
        "the server by its URL): a serving run listens on free ports of `service_bind` "
        "instead of published ones",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events = None  # Docker's event stream, while watched

    # -- connection ------------------------------------------------------------------------------

    @cached_property
    def client(self):
        return self._connect(self.client_timeout)

    def answers(self) -> bool:
        """Does the Docker Engine answer (within a few seconds)?"""
        return docker_answers(self.docker_host)

    def _connect(self, timeout: float | None):
        return _connect(self.docker_host, timeout)

    @cached_property
    def home_key(self) -> str:
        return home_key(Path(self.state_root))

    def check_available(self) -> None:
        try:
            self.client.ping()
        except Exception as exc:
            where = self.docker_host or os.environ.get("DOCKER_HOST") or "the local socket"
            raise Unavailable(
                f"Docker is not answering at {where} ({_short(exc)}). Start it "
                "(`sudo systemctl start docker`, or `sudo dockerd &` where there is no "
                "systemd) or set SpellJupyter.backend = 'local' to run commands as local "
                "processes"
            ) from None

    @cached_property
    def nvidia_runtime(self) -> bool:
        """Can this engine hand GPUs to containers (the NVIDIA container runtime)?"""
        info = self.client.info()
        return "nvidia" in (info.get("Runtimes") or {}) or any(
            "nvidia" in str(v).lower() for v in (info.get("CDISpecDirs") or [])
        )

    def check_submission(self, *, gpus: int, wants_environment: bool) -> None:
        self.check_available()
        if gpus and not self.nvidia_runtime:
            raise InvalidInput(
                f"this machine type needs {gpus} GPU{'s' if gpus > 1 else ''}, but the Docker "
                "Engine has no NVIDIA runtime: install the NVIDIA Container Toolkit "
                "(`nvidia-ctk runtime configure --runtime=docker`) and restart Docker"
            )

    # -- images ----------------------------------------------------------------------------------

    def has_image(self, image: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def image_id(self, image: str) -> str | None:
        import docker.errors

        try:
            return self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            return None

    def pull_image(self, image: str, on_line: Callable[[str], None]) -> None:
        try:
            for event in self.client.api.pull(image, stream=True, decode=True):
                if "error" in event:
                    raise BuildFailed(_with_hint(f"could not pull {image}: {event['error']}"))
                if event.get("status") and not event.get("progressDetail"):
                    on_line(" ".join(filter(None, [event.get("id"), event["status"]])))
        except BuildFailed:
            raise
        except Exception as exc:
            raise BuildFailed(_with_hint(f"could not pull {image}: {_short(exc)}")) from None

    def build_image(
        self, dockerfile: str, files: dict[str, bytes], tag: str, on_line: Callable[[str], None]
    ) -> None:
        """Build `tag` from a Dockerfile and its files; failed steps leave no containers."""
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        partial = ""
        try:
            events = self.client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for event in events:
                if "error" in event:
                    raise BuildFailed(_with_hint(event["error"].strip()))
                text = partial + event.get("stream", "")
                *lines, partial = text.split("\n")
                for line in lines:
                    on_line(line)
        except BuildFailed:
            raise
        except Exception as exc:
            raise BuildFailed(_short(exc)) from None
        if partial:
            on_line(partial)

    # -- Backend interface -----------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> dict:
        import docker.errors

        name = f"spell-{self.home_key}-{request.run_id}"
        try:
            container_id = self.client.api.create_container(
                request.image,
                ["/bin/sh", "-c", request.command],
                name=name,
                working_dir=HOST_FOLDER
                if request.host_folder
                else f"{WORKDIR}/{request.cwd}".rstrip("/"),
                environment=self._environment(request),
                labels={LABEL_RUN: str(request.run_id), LABEL_HOME: self.home_key},
                ports=None if self.host_network else _service_ports(request) or None,
                # Files the run writes must stay the engine's to move and delete.
                user=f"{os.getuid()}:{os.getgid()}" if os.getuid() != 0 else None,
                host_config=self._host_config(request, self.host_mounts(request)),
            )["Id"]
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it exists, the engine is resuming a launch
                self._remove(name)  # the SDK can leave a Created container behind
                raise RuntimeError(
                    f"Docker could not create the container: {_short(exc)}"
                ) from None
            container_id = name
        try:
            self.client.api.start(container_id)  # starting a running container is a no-op
        except docker.errors.APIError as exc:
            self._remove(name)
            raise RuntimeError(f"Docker could not start the container: {_short(exc)}") from None
        attrs = self.client.api.inspect_container(container_id)
        handle = {
            "container": attrs["Id"],
            "name": name,
            "image": request.image,
            "run_id": request.run_id,
            # overlay volumes may exist (handles from before this key: assume so)
            "volumes": bool(request.mounts),
        }
        if request.service_token is not None:
            handle["addresses"] = self._service_addresses(request, attrs)
            handle["address"] = handle["addresses"][0]
        return handle

    def _service_addresses(self, request: LaunchRequest, attrs: dict) -> list[str]:
        """Where this host reaches a started serving run (one address per port)."""
        if not self.host_network:
            return _published_addresses(attrs, _service_ports(request))
        env = dict(p.split("=", 1) for p in attrs["Config"].get("Env") or [] if "=" in p)
        return [f"{self.service_bind}:{port}" for port in env[SERVICE_PORTS_ENV].split(",")]

    def _host_config(self, request: LaunchRequest, mounts: tuple[HostMount, ...] = ()) -> dict:
        from docker.types import DeviceRequest

        limits: dict = {}
        if request.gpu_indices:
            limits["device_requests"] = [
                DeviceRequest(
                    driver="nvidia",
                    device_ids=[str(i) for i in request.gpu_indices],
                    capabilities=[["gpu"]],
                )
            ]
        if request.memory_mib:
            limits["mem_limit"] = f"{request.memory_mib}m"
            limits["memswap_limit"] = f"{request.memory_mib}m"  # no swap: over the limit is OOM
        if request.cpus:
            limits["nano_cpus"] = int(request.cpus * 1e9)
        binds = {str(self.workdir(request.run_id)): {"bind": WORKDIR, "mode": "rw"}}
        if request.api is not None:  # the server's socket, and the client's packages
            binds[request.api.socket_dir] = {"bind": CONTAINER_API_DIR, "mode": "ro"}
            for name, folder in client_packages().items():
                binds[str(folder)] = {"bind": f"{CONTAINER_LIB_DIR}/{name}", "mode": "ro"}
        for index, mount in enumerate(mounts):
            if mount.is_dir and _overlay_safe(mount):
                volume = self._overlay_volume(request.run_id, index, mount)
                binds[volume] = {"bind": mount.target, "mode": "rw"}
            else:  # a file, or a folder whose path overlayfs options cannot hold
                binds[str(mount.source)] = {"bind": mount.target, "mode": "ro"}
        if self.host_network:
            limits["network_mode"] = "host"
        elif request.service_token is not None:  # this host alone reaches it
            limits["port_bindings"] = {p: ("127.0.0.1", None) for p in _service_ports(request)}
        if request.host_folder:
            binds[request.host_folder] = {"bind": HOST_FOLDER, "mode": "rw"}
        return self.client.api.create_host_config(binds=binds, init=True, **limits)

    def _overlay_volume(self, run_id: int, index: int, mount: HostMount) -> str:
        """A volume that shows `mount.source` at no copy; writes land in `mount.upper`."""
        name = f"spell-{self.home_key}-{run_id}-m{index}"
        mount.upper.mkdir(parents=True, exist_ok=True)
        mount.scratch.mkdir(parents=True, exist_ok=True)
        self.client.volumes.create(
            name,
            driver="local",
            driver_opts={
                "type": "overlay",
                "device": "overlay",
                "o": f"lowerdir={mount.source},upperdir={mount.upper},workdir={mount.scratch}",
            },
            labels={LABEL_RUN: str(run_id), LABEL_HOME: self.home_key},
        )
        return name

    def check_mounts(self, targets: list[str]) -> None:
        pass  # a container can show a resource anywhere but the reserved places (RunSpec)

    def place_mounts(self, workdir: Path, mounts: tuple[HostMount, ...]) -> str:
        """Mount points inside the working folder are made now, so Docker does not make them
        (as root) and they are not taken for outputs."""
        for mount in mounts:
            rel = mount.workdir_relative()
            if rel is None:
                continue
            point = workdir / rel
            if mount.is_dir:
                point.mkdir(parents=True, exist_ok=True)
            else:
                point.parent.mkdir(parents=True, exist_ok=True)
                point.touch()
        return "folders as overlays (no copy; the run's writes are kept apart), files read-only"

    def status(self, handle: dict) -> ProcessStatus:
        import docker.errors

        try:
            attrs = self.client.api.inspect_container(handle["container"])
        except docker.errors.NotFound:
            return ProcessStatus(ProcessState.LOST, None, "its container is gone")
        state = attrs["State"]
        if state["Status"] == "created":
            return ProcessStatus(ProcessState.STARTING)
        if state["Running"] or state["Status"] in ("running", "paused", "restarting"):
            return ProcessStatus(ProcessState.RUNNING)
        detail = ""
        if state.get("OOMKilled"):
            limit = attrs.get("HostConfig", {}).get("Memory") or 0
            detail = "out of memory: the run used all of its machine type's memory" + (
                f" ({limit >> 20} MiB) and was killed" if limit else " and was killed"
            )
        elif state.get("Error"):
            detail = state["Error"]
        return ProcessStatus(ProcessState.EXITED, int(state["ExitCode"]), detail)

    def watch(self, on_change: StatusListener) -> None:
        """Follow Docker's events for this data directory's containers in a thread; after a
        broken stream (Docker restarted), every run is looked at again."""
        try:
            self._events = self._subscribe()
        except Exception as exc:  # Docker is not answering yet: the thread tries each second
            self.log.warning("Spell: Docker's event stream is not answering (%s)", exc)
            self._events = iter(())
        thread = threading.Thread(
            target=self._deliver_events, args=(on_change,), name="spell-docker-events", daemon=True
        )
        thread.start()
        on_change(None)

    def _subscribe(self):
        return self.client.api.events(
            decode=True,
            filters={
                "type": "container",
                "label": f"{LABEL_HOME}={self.home_key}",
                "event": ["start", "die", "oom", "destroy"],
            },
        )

    def _deliver_events(self, on_change: StatusListener) -> None:
        while self._events is not None:
            try:
                for event in self._events:
                    run_id = (event.get("Actor") or {}).get("Attributes", {}).get(LABEL_RUN)
                    on_change(int(run_id) if run_id and run_id.isdigit() else None)
            except Exception as exc:
                if self._events is None:
                    return
                self.log.warning("Spell: Docker's event stream broke (%s); reconnecting", exc)
            if self._events is None:
                return
            time.sleep(1.0)
            with contextlib.suppress(Exception):
                if self._events is not None:
                    self._events = self._subscribe()
            on_change(None)

    def close(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            with contextlib.suppress(Exception):
                events.close()

    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        """Lines from one followed log stream of the container (both streams, in log order),
        read by a thread ahead of the caller (at most MAX_PENDING lines), from `cursor`:
        {since: s, out: n, err: n} = the first n entries of each stream with a timestamp >= s
        (whole seconds) were taken. The log is append-only, so that prefix is stable; `since`
        moves up behind the newest entry to keep a reopened stream short."""
        reader = _LogReader(self, handle["container"], _Cursor.parse(cursor), stop)
        thread = threading.Thread(target=reader.run, name="spell-docker-logs", daemon=True)
        thread.start()
        while True:
            records, after, ended = reader.take(timeout=1.0)
            if records:
                lines = [
                    OutputLine(datetime.fromtimestamp(ts / 1e9, timezone.utc), stream, text)
                    for ts, stream, text in records
                ]
                yield lines, after
            elif ended or stop.is_set():
                return

    def _log_stream(self, cid: str, since: int | str, follow: bool = True):
        """Docker's multiplexed log stream of both streams (followed): the raw response.
        `since`: whole seconds, or "seconds.nanoseconds"."""
        params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow), "tail": "all"}
        if since:
            params["since"] = since
        api = self.stream_client.api
        response = api._get(api._url("/containers/{0}/logs", cid), params=params, stream=True)
        api._raise_for_status(response)
        return response

    @cached_property
    def stream_client(self):
        """A client without a read timeout, for streams that may be quiet for hours."""
        return self._connect(None)

    def is_running(self, cid: str) -> bool:
        return not self.status({"container": cid}).ended

    def signal(self, handle: dict, signum: int) -> bool:
        import docker.errors

        try:
            self.client.api.kill(handle["container"], signal=signum)
        except docker.errors.NotFound:
            return True  # gone already: its status says so
        except docker.errors.APIError as exc:
            if "is not running" not in str(exc):
                raise
        return True

    def release(self, handle: dict) -> None:
        self._remove(handle["container"])
        if handle.get("volumes", True):
            self._remove_volumes(
                {"label": [f"{LABEL_HOME}={self.home_key}", f"{LABEL_RUN}={handle.get('run_id')}"]}
            )

    def _remove_volumes(self, filters: dict, keep: set[int] | None = None) -> set[int]:
        import docker.errors

        removed = set()
        for volume in self.client.volumes.list(filters=filters):
            run_id = int((volume.attrs.get("Labels") or {}).get(LABEL_RUN, "0") or 0)
            if keep is not None and run_id in keep:
                continue
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                volume.remove(force=True)
                removed.add(run_id)
        return removed

    def remove_orphans(self, active_run_ids: set[int]) -> list[int]:
        """Remove this data directory's containers whose runs are no longer active."""
        removed = []
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL_HOME}={self.home_key}"}
        ):
            run_id = int(container.labels.get(LABEL_RUN, "0") or 0)
            if run_id not in active_run_ids:
                self._remove(container.id)
                removed.append(run_id)
        volumes = self._remove_volumes(
            {"label": f"{LABEL_HOME}={self.home_key}"}, keep=active_run_ids
        )
        return sorted(set(removed) | volumes)

    def stats(self, handle: dict) -> dict:
        """One sample of CPU %, memory, network and block I/O (Docker's stats API)."""
        raw = self.client.api.stats(handle["container"], stream=False)
        cpu, pre = raw.get("cpu_stats", {}), raw.get("precpu_stats", {})
        cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
            "total_usage", 0
        )
        system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
        memory = raw.get("memory_stats", {})
        cache = memory.get("stats", {}).get("cache", 0)
        networks = raw.get("networks") or {}
        blkio = raw.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
        return {
            "cpu_percent": round(cpu_delta / system_delta * online * 100, 1)
            if system_delta > 0
            else 0.0,
            "memory_bytes": max(memory.get("usage", 0) - cache, 0),
            "memory_limit_bytes": memory.get("limit", 0),
            "network_rx_bytes": sum(n.get("rx_bytes", 0) for n in networks.values()),
            "network_tx_bytes": sum(n.get("tx_bytes", 0) for n in networks.values()),
            "block_read_bytes": sum(b["value"] for b in blkio if b.get("op") == "Read"),
            "block_write_bytes": sum(b["value"] for b in blkio if b.get("op") == "Write"),
        }

    def describe(self, handle: dict) -> str:
        return f"Running in Docker container {handle['name']} (image {handle['image']})"

    # -- helpers ---------------------------------------------------------------------------------

    def _environment(self, request: LaunchRequest) -> dict[str, str]:
        env = visible_envvars(request.envvars)
        pythonpath = env.get("PYTHONPATH") or self._image_env(request.image).get("PYTHONPATH", "")
        env.update(
            api_environment(
                request.run_id, request.api, CONTAINER_API_DIR, CONTAINER_LIB_DIR, pythonpath
            )
        )
        if self.host_network and request.service_token is not None:
            ports = free_ports(request.service_ports, self.service_bind)  # the host's own
            env.update(self.service_environment(request, ports, self.service_bind))
        else:
            env.update(self.service_environment(request, _service_ports(request), "0.0.0.0"))
        env.update(
            PYTHONUNBUFFERED="1",
            TINI_KILL_PROCESS_GROUP="1",  # a stop signals the whole command, not just sh
            NVIDIA_VISIBLE_DEVICES=",".join(map(str, request.gpu_indices)) or "void",
        )
        if os.getuid() != 0:
            env.setdefault("HOME", "/tmp")
        return env

    def _image_env(self, image: str | None) -> dict[str, str]:
        """The image's own environment (ENV lines), which a container's variables replace."""
        import docker.errors

        if not image:
            return {}
        try:
            pairs = self.client.api.inspect_image(image)["Config"].get("Env") or []
        except docker.errors.APIError:
            return {}
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    def _remove(self, container_id: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True, v=True)


def _service_ports(request: LaunchRequest) -> list[int]:
    """The container's ports a serving run listens on (none for other runs)."""
    if request.service_token is None:
        return []
    return [SERVICE_PORT + i for i in range(request.service_ports)]


def _published_addresses(attrs: dict, ports: list[int]) -> list[str]:
    """Where this host reaches a started container's `ports` ("127.0.0.1:PORT" each)."""
    published = attrs.get("NetworkSettings", {}).get("Ports") or {}
    found = []
    for port in ports:
        bindings = published.get(f"{port}/tcp")
        if not bindings:
            raise RuntimeError(f"Docker published no host port for the run's port {port}")
        found.append(f"127.0.0.1:{bindings[0]['HostPort']}")
    return found


def _overlay_safe(mount: HostMount) -> bool:
    """overlayfs options are comma- and colon-separated: paths holding those cannot go in."""
    return not any(c in str(p) for p in (mount.source, mount.upper, mount.scratch) for c in ",:")


def home_key(state_root: Path) -> str:
    """The label value that marks a data directory's containers and volumes."""
    return hashlib.sha1(str(state_root.resolve()).encode()).hexdigest()[:10]


def docker_answers(docker_host: str = "") -> bool:
    """Does the Docker Engine (at `docker_host`, else DOCKER_HOST's) answer within seconds?"""
    try:
        probe = _connect(docker_host, 3)
        probe.ping()
        probe.close()
        return True
    except Exception:
        return False


def _connect(docker_host: str, timeout: float | None):
    import docker

    timeout = int(timeout) if timeout is not None else None
    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    return docker.from_env(timeout=timeout)


class _Cursor:
    """Where a run's log was read to: since (whole seconds) and, per stream, how many entries
    with a timestamp >= since were taken. Kept exact one entry at a time."""

    def __init__(self, since: int, counts: dict[str, int]):
        self.since = since
        self.counts = counts
        self._recent: dict[str, deque[int]] = {"stdout": deque(), "stderr": deque()}

    @classmethod
    def parse(cls, text: str) -> _Cursor:
        data = json.loads(text) if text else {"since": 0, "out": 0, "err": 0}
        return cls(data["since"], {"stdout": data["out"], "stderr": data["err"]})

    def dumps(self) -> str:
        counts = {KEYS[s]: n for s, n in self.counts.items()}
        return json.dumps({"since": self.since, **counts}, separators=(",", ":"))

    @property
    def newest(self) -> int | None:
        """The timestamp of the newest entry taken in this process (None: none yet)."""
        stamps = [recent[-1] for recent in self._recent.values() if recent]
        return max(stamps) if stamps else None

    def taken_since(self, start: int) -> dict[str, int]:
        """Per stream, how many entries taken have a timestamp >= `start` (not older than
        `since`)."""
        return {s: sum(1 for ts in recent if ts >= start) for s, recent in self._recent.items()}

    def seen(self, ts: int, stream: str) -> None:
        """An entry counted already (read again after a reopen): its time is known now."""
        self._recent[stream].append(ts)

    def add(self, ts: int, stream: str) -> None:
        self._recent[stream].append(ts)
        since = max(self.since, (ts - WINDOW_NS) // 1_000_000_000)
        if since != self.since:
            self.since = since
            floor = since * 1_000_000_000
            for name, recent in self._recent.items():
                while recent and recent[0] < floor:
                    recent.popleft()
                self.counts[name] = len(recent)
        else:
            self.counts[stream] += 1


class _LogReader:
    """Reads a container's followed log stream in a thread of its own, from a cursor, into a
    bounded queue of chunks: (nanoseconds, stream, text) lines with the cursor after them. A
    broken stream is opened again from where it was; the stream ending while the container
    runs on is a broken stream too."""

    def __init__(self, backend: DockerBackend, cid: str, cursor: _Cursor, stop: threading.Event):
        self.backend = backend
        self.cid = cid
        self.cursor = cursor  # after the lines read so far (this thread's alone)
        self.stop = stop
        self._chunks: deque[tuple[list, str]] = deque()
        self._queued = 0  # lines in _chunks
        self._current: list = []  # lines read since the last chunk was sealed
        self._ready = threading.Condition()
        self._ended = False
        self._partial: dict[str, tuple[int, bytes]] = {}  # lines still being written
        self._seconds: dict[bytes, int] = {}

    def take(self, timeout: float, most: int = CHUNK_LINES) -> tuple[list, str, bool]:
        """Lines read so far (about `most` at most), the cursor after them, and whether the
        stream has ended and everything was taken."""
        with self._ready:
            if not self._chunks and not self._ended:
                self._ready.wait(timeout)
            lines: list = []
            after = ""
            while self._chunks and len(lines) < most:
                chunk, after = self._chunks.popleft()
                lines += chunk
            self._queued -= len(lines)
            self._ready.notify_all()
            return lines, after, self._ended and not self._chunks

    def run(self) -> None:
        import docker.errors

        try:
            while not self.stop.is_set():
                try:
                    exited = self._read_once()
                    if exited:
                        self._drain()
                except docker.errors.NotFound:
                    return  # the container is gone: its status says `lost`
                except Exception as exc:
                    self.backend.log.warning("Spell: log stream of %s broke: %s", self.cid, exc)
                    exited = False
                    self.stop.wait(1.0)
                if exited:
                    return
        finally:
            self._seal()
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def _read_once(self) -> bool:
        """Read the followed stream from the cursor until it ends; whether the container has
        exited."""
        skip = {"stdout": self.cursor.counts["stdout"], "stderr": self.cursor.counts["stderr"]}
        self._partial = {}
        self._read(self.cursor.since, skip, self._partial, follow=True)
        return not self.stop.is_set() and not self.backend.is_running(self.cid)

    def _drain(self) -> None:
        """Read once more, not followed, from the oldest line not taken: a followed stream
        can end at the container's exit before its last entries (seen on Docker 20.10 after a
        1 MB line). Lines taken already are skipped by their timestamps; a last line without
        its newline is taken as it is."""
        start = min([ts for ts, _ in self._partial.values()] or [self.cursor.newest or 0])
        if not start or start < self.cursor.since * 1_000_000_000:  # not known here: as stored
            since: int | str = self.cursor.since
            skip = dict(self.cursor.counts)
        else:
            since = f"{start // 1_000_000_000}.{start % 1_000_000_000:09d}"
            skip = self.cursor.taken_since(start)
        partial: dict[str, tuple[int, bytes]] = {}
        self._read(since, skip, partial, follow=False)
        for stream, (ts, text) in partial.items():
            self._emit(ts, stream, text, skip)
        self._seal()

    def _read(self, since: int | str, skip: dict, partial: dict, follow: bool) -> None:
        response = self.backend._log_stream(self.cid, since, follow)
        body = _ChunkedBody(response)
        buffer = bytearray()
        try:
            while not self.stop.is_set():
                data = body.read()
                if not data:
                    break
                buffer += data
                position = self._frames(buffer, skip, partial)
                del buffer[:position]
                self._seal()
        finally:
            response.close()
        self._seal()  # whole lines (counted in the cursor); a partial one is read again

    def _frames(self, buffer: bytearray, skip: dict, partial: dict) -> int:
        """Take the whole frames in `buffer` (8-byte header: stream, size); bytes used."""
        position, end = 0, len(buffer)
        while end - position >= 8:
            size = int.from_bytes(buffer[position + 4 : position + 8], "big")
            if end - position - 8 < size:
                break
            stream = STREAMS.get(buffer[position], "stdout")
            payload = bytes(buffer[position + 8 : position + 8 + size])
            position += 8 + size
            match = TIMESTAMP.match(payload)
            if not match:
                continue
            text = payload[match.end() :]
            ts = self._nanoseconds(match)
            if stream in partial:  # the next 16 KiB piece of a long line: its stamp is not output
                first, before = partial.pop(stream)
                ts, text = first, before + text
            if not text.endswith(b"\n"):
                partial[stream] = (ts, text)
                continue
            self._emit(ts, stream, text[:-1], skip)
        return position

    def _emit(self, ts: int, stream: str, text: bytes, skip: dict) -> None:
        if skip[stream]:  # taken before this stream was opened
            skip[stream] -= 1
            self.cursor.seen(ts, stream)
            return
        self.cursor.add(ts, stream)
        self._current.append((ts, stream, text.decode("utf-8", "replace")))
        if len(self._current) >= CHUNK_LINES:
            self._seal()

    def _seal(self) -> None:
        """Queue the lines read since the last chunk, with the cursor after them; wait while
        the queue is full (the run's log pump is behind)."""
        if not self._current:
            return
        with self._ready:
            while self._queued >= MAX_PENDING and not self.stop.is_set():
                self._ready.wait(0.5)
            self._chunks.append((self._current, self.cursor.dumps()))
            self._queued += len(self._current)
            self._ready.notify_all()
        self._current = []

    def _nanoseconds(self, match: re.Match) -> int:
        prefix = match.group(1)
        seconds = self._seconds.get(prefix)
        if seconds is None:
            seconds = calendar.timegm(time.strptime(prefix.decode(), "%Y-%m-%dT%H:%M:%S"))
            if len(self._seconds) > 1000:
                self._seconds.clear()
            self._seconds[prefix] = seconds
        return seconds * 1_000_000_000 + int((match.group(2) or b"0").ljust(9, b"0"))


class _ChunkedBody:
    """A streamed HTTP response's body, as much as has arrived per read. http.client hands a
    chunked body over one chunk per call, and Docker sends one chunk per log line: this reads
    the connection's buffer and undoes the chunking itself."""

    def __init__(self, response):
        raw = response.raw._fp  # http.client.HTTPResponse (docker-py reaches in the same way)
        self.fp = raw.fp
        self.chunked = bool(raw.chunked) and raw.chunk_left is None
        self.pending = bytearray()
        self.left = 0  # bytes of the current chunk still to come
        self.state = "size"
        if not self.chunked:
            self.plain = response.raw

    def read(self) -> bytes:
        """Body bytes (b"" at its end), waiting only until some have arrived."""
        if not self.chunked:
            return self.plain.read1(1 << 16)
        while self.state != "done":
            data = self.fp.read1(1 << 16) if self.fp is not None else b""
            if not data:
                return b""
            self.pending += data
            out = self._decode()
            if out:
                return out
        return b""

    def _decode(self) -> bytes:
        out = bytearray()
        pending = self.pending
        position = 0
        while True:
            if self.state == "size":
                line_end = pending.find(b"\r\n", position)
                if line_end < 0:
                    break
                size = int(bytes(pending[position:line_end]).split(b";")[0], 16)
                position = line_end + 2
                if size == 0:
                    self.state = "done"
                    break
                self.left, self.state = size, "data"
            elif self.state == "data":
                take = min(self.left, len(pending) - position)
                if take <= 0:
                    break
                out += pending[position : position + take]
                position += take
                self.left -= take
                if self.left == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(pending) - position < 2:
                    break
                position += 2
                self.state = "size"
            else:
                break
        del pending[:position]
        return bytes(out)


def _with_hint(message: str) -> str:
    return message + NO_REGISTRY_HINT if NO_REGISTRY.search(message) else message


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(exc).__name__
