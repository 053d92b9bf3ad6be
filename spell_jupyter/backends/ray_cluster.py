"""RayBackend: runs placed on a Ray cluster by Ray's own scheduler.

Each run reserves its machine type in a named, detached placement group (`spell-run-<id>` in
the backend's namespace): its CPUs, memory and GPUs, and the custom resource `spell-<TYPE>`
when a node declares one (`ray start --resources '{"spell-T4": 1}'`). Ray queues the group
until a node has room, so a run waits in `machine_requested` for the cluster's free capacity.
The run then executes on that node through the node's Spell agent (`ray_node.NodeAgent`, a
named detached actor pinned to the node), as on one host: in a Docker container of its
environment where the node's Docker Engine answers (built there by the engine through the
agent: `NodeImages`), else as a local process; code, mounts and outputs travel through SpellFS
on the shared root (an S3 bucket for a team).
Everything needed to find a run again is in Ray under names derived from its ID, so a new
leader (on any host) reattaches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Float, Unicode, default

from ..errors import InvalidInput, Unavailable
from .base import (
    Backend,
    BuildFailed,
    ImageBuilder,
    LaunchRequest,
    OutputBatches,
    OutputFile,
    ProcessState,
    ProcessStatus,
    Resources,
    StagedCode,
    StatusListener,
)

GROUP_PREFIX = "spell-run-"
AGENT_PREFIX = "spell-node-"
MIB = 1 << 20
CONNECT_WAIT = 10.0  # seconds a request waits on another's connecting to the cluster
NODES_MAX_AGE = 2.0  # seconds the list of live nodes is taken as it was read
INFO_MAX_AGE = 60.0  # seconds what a node's agent said of the node (Docker, NVIDIA) is kept
START_HINT = (
    "start one (`ray start --head`, then `ray start --address HEAD:6379` on each node) or "
    "point RayBackend.address (or RAY_ADDRESS) at yours"
)


def group_name(run_id: int) -> str:
    return f"{GROUP_PREFIX}{run_id}"


def machine_resource(machine_type: str) -> str:
    """The custom resource a node declares to hold runs of `machine_type`."""
    return f"spell-{machine_type}"


class RayBackend(Backend):
    name = "ray"
    places_runs = True

    address = Unicode(
        help="The Ray cluster: 'auto' (a cluster started on this machine), 'HOST:PORT' of its "
        "head's GCS, or 'ray://HOST:10001' (default: RAY_ADDRESS, else 'auto')"
    ).tag(config=True)

    @default("address")
    def _default_address(self) -> str:
        return os.environ.get("RAY_ADDRESS") or "auto"

    namespace = Unicode(
        "spell", help="The Ray namespace of the runs' actors (one per team store)"
    ).tag(config=True)

    call_timeout = Float(60.0, help="Seconds a call to a node's agent may take").tag(config=True)

    output_push_interval = Float(
        300.0,
        help="Seconds between pushes of what a running run wrote into SpellFS (runs/<id>), so a "
        "node that dies loses only what came after the last push; 0: saved at the end only",
    ).tag(config=True)

    node_containers = Bool(
        True,
        help="Run each run in a Docker container of its environment on nodes whose Docker "
        "Engine answers (GPU runs: where it has the NVIDIA runtime), as on one host; False: "
        "always as local processes of the node's Python environment",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if _on_loopback(self.address):  # read as `ray` is imported: without it, Ray takes
            # 127.0.0.1 for this machine's own address, and looks for the head there in vain
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        self._connect_lock = threading.Lock()
        self._groups: dict[int, Any] = {}  # run -> its placement group
        self._placing: dict[int, Any] = {}  # run -> ObjectRef of its group's ready()
        self._placed: dict[int, dict] = {}  # run -> where it was placed (node, node_ip, gpus)
        self._agents: dict[str, Any] = {}  # node ID -> its Spell agent
        self._told: set[str] = set()  # nodes whose agent relays its runs' API calls here
        self._launched: dict[int, dict] = {}  # run -> the handle of its launched command
        self._infos: dict[str, tuple[float, dict]] = {}  # node ID -> (when, what its agent said)
        self._live: tuple[float, list[dict]] = (-NODES_MAX_AGE, [])  # when read, live nodes
        self._watched: dict[Any, tuple[int, str]] = {}  # ObjectRef -> (run, "placed"/"end")
        self._watch_lock = threading.Lock()
        self._on_change: StatusListener | None = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._gpu_task = None
        self._gcs = ThreadPoolExecutor(2, thread_name_prefix="spell-ray-gcs")

    # -- the cluster -----------------------------------------------------------------------------

    def _ray(self):
        """The connected `ray` module (Unavailable when the cluster does not answer)."""
        import ray

        if ray.is_initialized():
            return ray
        if not self._connect_lock.acquire(timeout=CONNECT_WAIT):  # ray.init may take minutes
            raise Unavailable(
                f"this server is still connecting to the Ray cluster at {self.address}; "
                "try again in a moment (its log says why it takes long)"
            )
        try:
            if ray.is_initialized():
                return ray
            self._check_reachable()
            options: dict = {
                "address": self.address,
                "namespace": self.namespace,
                "logging_level": "WARNING",
                "log_to_driver": False,
                "configure_logging": False,
            }
            if _on_loopback(self.address):
                options["_node_ip_address"] = "127.0.0.1"  # or Ray rewrites it and hangs
            # A Ray driver ends its own process once the head has been gone this long (60 s by
            # default): this process is a Jupyter server that must outlive its cluster.
            os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(10 * 365 * 86400))
            try:
                ray.init(**options)
            except Exception as exc:
                raise self._no_answer(exc) from exc
            return ray
        finally:
            self._connect_lock.release()

    def _no_answer(self, why: object) -> Unavailable:
        return Unavailable(
            f"the Ray cluster at {self.address} does not answer ({why}); {START_HINT}. A "
            "cluster with Ray's token authentication needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token) in this server's environment"
        )

    def _check_reachable(self) -> None:
        """Fail fast where the head's port does not answer (ray.init would retry for long)."""
        if self.address in ("", "auto", "local"):
            return
        location = urlsplit("//" + self.address.split("://")[-1])
        port = location.port or (10001 if self.address.startswith("ray://") else 6379)
        try:
            socket.create_connection((location.hostname or "127.0.0.1", port), timeout=3).close()
        except OSError as exc:
            raise self._no_answer(exc.strerror or exc) from exc

    def _nodes(self, max_age: float = 0.0) -> list[dict]:
        """The live nodes (as read at most `max_age` seconds ago); Unavailable when the head
        does not answer within `call_timeout` (a call to a head that is gone waits for it)."""
        read_at, nodes = self._live
        if time.monotonic() - read_at <= max_age:
            return nodes
        ray = self._ray()
        asked = self._gcs.submit(ray.nodes)
        try:
            found = asked.result(timeout=min(self.call_timeout, 10))
        except Exception as exc:
            raise self._no_answer(exc or "no answer in time") from exc
        nodes = [n for n in found if n.get("Alive")]
        self._live = (time.monotonic(), nodes)
        return nodes

    def _alive(self, node: str) -> bool:
        return any(n["NodeID"] == node for n in self._nodes(NODES_MAX_AGE))

    def capacity(self) -> list[dict]:
        return [
            {
                "node": n["NodeID"],
                "node_ip": n.get("NodeManagerAddress", ""),
                "cpus": n["Resources"].get("CPU", 0),
                "memory_mib": int(n["Resources"].get("memory", 0) // MIB),
                "gpus": int(n["Resources"].get("GPU", 0)),
                "machine_types": sorted(
                    k.removeprefix("spell-") for k in n["Resources"] if k.startswith("spell-")
                ),
            }
            for n in self._nodes()
        ]

    def check_submission(self, *, gpus: int, wants_environment: bool) -> None:
        if not wants_environment:
            return
        if not self.node_containers:
            raise InvalidInput(
                "runs on this Ray cluster execute as processes of each node's Python "
                "environment (RayBackend.node_containers is off), so --framework, "
                "--docker-image, --apt, --pip, --pip-req, --conda-file and --deps-from-env "
                "cannot be honoured there: install what the run needs on the nodes"
            )
        nodes = [  # the nodes that could hold the run (their agents are asked)
            n for n in self._nodes(NODES_MAX_AGE) if n["Resources"].get("GPU", 0) >= gpus
        ]
        if not any(self._containers_on(n["NodeID"], gpus) for n in nodes):
            needs = " with the NVIDIA runtime" if gpus else ""
            raise InvalidInput(
                f"no node of the Ray cluster has a Docker Engine{needs} answering, so "
                "--framework, --docker-image, --apt, --pip, --pip-req, --conda-file and "
                "--deps-from-env cannot be honoured there: install Docker on the nodes "
                "(scripts/team/node.sh) or install what the run needs on them"
            )

    def _info(self, node: str) -> dict:
        """What the agent of `node` says of it (asked again after INFO_MAX_AGE seconds: a
        node's Docker Engine may come up or go)."""
        asked, info = self._infos.get(node, (-INFO_MAX_AGE, {}))
        if time.monotonic() - asked >= INFO_MAX_AGE:
            info = self._call(node, "info")
            self._infos[node] = (time.monotonic(), info)
        return info

    def _containers_on(self, node: str, gpus: int) -> bool:
        """Whether runs (with `gpus` GPUs) on `node` are containers."""
        if not self.node_containers:
            return False
        info = self._info(node)
        return bool(info["docker"] and (info["nvidia"] or not gpus))

    def images_for(self, placed: dict) -> ImageBuilder | None:
        node = placed.get("node")
        if node is None or not self._containers_on(node, len(placed.get("gpus") or ())):
            return None
        return NodeImages(self, node)

    def _demand(self, resources: Resources, nodes: list[dict]) -> dict[str, float]:
        """The bundle reserving `resources` (with the type's own resource when a node
        declares it)."""
        custom = machine_resource(resources.machine_type)
        bundle = {
            "CPU": resources.cpus,
            "GPU": resources.gpus,
            "memory": resources.memory_mib * MIB,
        }
        if any(custom in n["Resources"] for n in nodes):
            bundle[custom] = 1
        return {k: v for k, v in bundle.items() if v}

    def check_resources(self, resources: Resources) -> None:
        nodes = self._nodes()
        demand = self._demand(resources, nodes)

        def holds(node: dict) -> bool:
            return all(node["Resources"].get(k, 0) >= v for k, v in demand.items())

        if any(holds(n) for n in nodes):
            return
        shown = "; ".join(
            f"{c['node_ip']}: {c['cpus']:g} CPUs, {c['memory_mib']} MiB, {c['gpus']} GPUs"
            + (f", {', '.join(c['machine_types'])}" if c["machine_types"] else "")
            for c in self.capacity()
        )
        gpus = f", {resources.gpus} GPU(s)" if resources.gpus else ""
        raise InvalidInput(
            f"machine type {resources.machine_type} cannot run on this Ray cluster: no node "
            f"holds {resources.cpus:g} CPUs, {resources.memory_mib} MiB{gpus}. The cluster "
            f"has: {shown or 'no nodes'}"
        )

    # -- placing ---------------------------------------------------------------------------------

    def place(self, run_id: int, resources: Resources) -> dict | None:
        if run_id in self._placed:
            return self._placed[run_id]
        ray = self._ray()
        group = self._group(run_id)
        if group is None:
            from ray.util import placement_group

            bundle = self._demand(resources, self._nodes(NODES_MAX_AGE))
            group = placement_group(
                [bundle], strategy="STRICT_PACK", name=group_name(run_id), lifetime="detached"
            )
            self._groups[run_id] = group
        ref = self._placing.get(run_id)
        if ref is None:
            ref = self._placing[run_id] = group.ready()
            self._watch(ref, run_id, "placed")
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return None
        self._placing.pop(run_id, None)
        placed = self._where(group, resources.gpus)
        self._placed[run_id] = placed
        return placed

    def _group(self, run_id: int):
        """The run's placement group, found by name after a restart (None: it has none)."""
        group = self._groups.get(run_id)
        if group is None:
            from ray.util import get_placement_group

            try:
                group = get_placement_group(group_name(run_id))
            except ValueError:
                return None
            self._groups[run_id] = group
        return group

    def _where(self, group, gpus: int) -> dict:
        """The node a placed group is on, and the GPUs of that node it holds."""
        ray = self._ray()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        node = _group_node(group)
        ip = next(
            (n["NodeManagerAddress"] for n in self._nodes(NODES_MAX_AGE) if n["NodeID"] == node),
            "",
        )
        indices: list[int] = []
        if gpus:  # the GPUs Ray hands a task inside the group are the run's
            from .ray_node import gpu_ids

            if self._gpu_task is None:  # max_calls=0: GPU tasks reuse their worker process
                self._gpu_task = ray.remote(max_calls=0)(gpu_ids)
            task = self._gpu_task.options(
                num_cpus=0,
                num_gpus=gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group),
            )
            indices = ray.get(task.remote(), timeout=self.call_timeout)
        return {"node": node, "node_ip": ip, "gpus": indices}

    def _agent(self, node: str):
        """The Spell agent of `node` (made once; it serves every run placed there), told of
        this server once when it leads."""
        agent = self._agents.get(node) or self._new_agent(node)
        if self._on_change is not None and self.api_url and node not in self._told:
            ray = self._ray()
            try:
                ray.get(agent.lead.remote(self.api_url), timeout=self.call_timeout)
            except ray.exceptions.RayError as exc:  # told again at the next call
                self.log.warning("Spell: the agent of Ray node %s was not told: %s", node, exc)
            else:
                self._told.add(node)
        return agent

    def _new_agent(self, node: str):
        ray = self._ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .ray_node import NodeAgent

        settings = self.fs.settings()
        options = [settings, self.bucket_options, self.node_containers, self.namespace]
        digest = hashlib.sha256(
            json.dumps(options, sort_keys=True, default=str).encode()
        ).hexdigest()[:12]
        agent = (
            ray.remote(NodeAgent)
            .options(
                name=f"{AGENT_PREFIX}{node[:16]}-{digest}",  # one per node, SpellFS and namespace
                namespace=self.namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_concurrency=256,
                max_restarts=-1,  # restarted where its node lives on; its runs are found again
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            )
            .remote(settings, self.bucket_options, self.node_containers, digest)
        )
        self._agents[node] = agent
        return agent

    def _node_of(self, run_id: int) -> str:
        placed = self._placed.get(run_id)
        if placed is None:
            group = self._group(run_id)
            if group is None:
                raise self._ray().exceptions.RayActorError()
            placed = {"node": _group_node(group)}
        return placed["node"]

    def _forget(self, run_id: int) -> None:
        self._groups.pop(run_id, None)
        self._placing.pop(run_id, None)
        self._placed.pop(run_id, None)

    def _call(self, node: str, method: str, *args, timeout: float | None = None):
        """Call the agent of `node` and wait; an exception raised there is raised here."""
        ray = self._ray()
        if not self._alive(node):  # its agent would wait for the node to come back
            raise ray.exceptions.RayActorError()  # the node is gone, and its runs with it
        ref = getattr(self._agent(node), method).remote(*args)
        try:
            return ray.get(ref, timeout=timeout or self.call_timeout)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None

    def _stream(self, node: str, method: str, *args, on_line: Callable[[str], None]) -> None:
        """Call a streaming method of the agent of `node`, each line it yields to `on_line`."""
        ray = self._ray()
        if not self._alive(node):
            raise BuildFailed(f"the Ray node {node[:12]} is gone")
        try:
            for ref in getattr(self._agent(node), method).remote(*args):
                on_line(ray.get(ref))
        except ray.exceptions.RayTaskError as exc:
            cause = _cause(exc)
            raise (cause if isinstance(cause, BuildFailed) else BuildFailed(str(cause))) from None
        except ray.exceptions.RayError as exc:
            raise BuildFailed(f"the Ray node {node[:12]} was lost ({exc})") from None

    def _run_call(self, run_id: int, method: str, *args, timeout: float | None = None):
        return self._call(self._node_of(run_id), method, *args, timeout=timeout)

    # -- staging ---------------------------------------------------------------------------------

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        return self._run_call(request.run_id, "stage_code", request, timeout=3600)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        return self._run_call(request.run_id, "stage_mounts", request, timeout=3600)

    # -- the process -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> dict:
        if request.host_folder:  # a notebook's folder of the server's host is not on the node:
            request = replace(request, host_folder=None)  # the kernel works in its run's folder
        if request.api is not None and not self.api_url:  # no server to relay to
            request = replace(request, api=None)
        handle = self._run_call(request.run_id, "launch", request, self.output_push_interval)
        handle["group"] = group_name(request.run_id)
        self.attach(request.run_id, handle)
        return handle

    def _lost(self, handle: dict) -> ProcessStatus:
        where = handle.get("node_ip") or "?"
        return ProcessStatus(
            ProcessState.LOST,
            None,
            f"the Ray node {where} ({str(handle.get('node', ''))[:12]}) running it was lost",
        )

    def status(self, handle: dict) -> ProcessStatus:
        ray = self._ray()
        try:  # asked of the node it was launched on (a lost node's group moves elsewhere)
            found = self._call(handle["node"], "status", handle)
        except ray.exceptions.RayActorError:
            return self._lost(handle)
        except ray.exceptions.GetTimeoutError:
            return ProcessStatus(ProcessState.RUNNING)  # its node is slow to answer: ask later
        return found or ProcessStatus(ProcessState.STARTING)

    def watch(self, on_change: StatusListener) -> None:
        """This process leads the runs now: their status changes go to `on_change`, and the
        agents (as each is first called) relay their runs' API calls to this server."""
        self._on_change = on_change
        self._told.clear()

    def attach(self, run_id: int, handle: dict) -> None:
        with self._watch_lock:
            if (run_id, "end") in self._watched.values():
                return
            self._launched[run_id] = handle
        self._await_end(run_id)

    def _await_end(self, run_id: int) -> None:
        """Watch for the end of a launched run's command (or of its node)."""
        ray = self._ray()
        handle = self._launched.get(run_id)
        if handle is None:  # cleaned up meanwhile
            return
        try:
            if not self._alive(handle["node"]):
                raise ray.exceptions.RayActorError()
            ref = self._agent(handle["node"]).wait_end.remote(handle, 30.0)
        except (ray.exceptions.RayActorError, Unavailable):
            if self._on_change is not None:
                self._on_change(run_id)  # its node is gone: its status says so
            return
        self._watch(ref, run_id, "end")

    def _watch(self, ref, run_id: int, what: str) -> None:
        with self._watch_lock:
            self._watched[ref] = (run_id, what)
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._monitor_loop, name="spell-ray-monitor", daemon=True
                )
                self._monitor.start()

    def _monitor_loop(self) -> None:
        """Tell the engine when a run is placed or its command ends (or its node dies)."""
        ray = self._ray()
        while not self._stopping.is_set():
            with self._watch_lock:
                refs = list(self._watched)
            if not refs:
                self._stopping.wait(0.2)
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            for ref in ready:
                with self._watch_lock:
                    run_id, what = self._watched.pop(ref, (None, ""))
                if run_id is None:
                    continue
                if what == "end":  # watched again while the command still runs
                    try:
                        state = ray.get(ref)
                    except ray.exceptions.RayError:  # its agent restarts, or its node is gone
                        if run_id in self._launched:
                            threading.Timer(0.5, self._await_end, [run_id]).start()
                        continue
                    if (state is None or not state.ended) and run_id in self._launched:
                        self._await_end(run_id)
                        continue
                if self._on_change is not None:
                    self._on_change(run_id)

    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        ray = self._ray()
        while not stop.is_set():
            try:
                lines, cursor, done = self._call(
                    handle["node"], "output", handle, cursor, 1.0, timeout=30
                )
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError:
                if self._alive(handle["node"]):
                    continue  # its agent was started again: it reads on from the cursor
                return  # its node is gone: the status says so
            if lines:
                yield lines, cursor
            if done:
                return

    def signal(self, handle: dict, signum: int) -> bool:
        ray = self._ray()
        try:
            return bool(self._call(handle["node"], "signal", handle, signum))
        except ray.exceptions.RayActorError:
            return True  # nothing left to signal: its status is lost

    def stats(self, handle: dict) -> dict:
        return self._call(handle["node"], "stats", handle)

    def describe(self, handle: dict) -> str:
        how = (
            f"in Docker container {handle['name']} (image {handle['image']})"
            if "container" in handle
            else "as a local process"
        )
        return f"Running on Ray node {handle.get('node_ip', '?')} ({handle['node'][:12]}) {how}"

    # -- after the process -----------------------------------------------------------------------

    def _ran_on(self, run_id: int) -> str:
        launched = self._launched.get(run_id)
        return launched["node"] if launched else self._node_of(run_id)

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        ray = self._ray()
        try:
            return self._call(self._ran_on(request.run_id), "list_outputs", request, timeout=3600)
        except ray.exceptions.RayActorError:
            return []  # the node is gone, and what the run wrote there with it

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        ray = self._ray()
        with contextlib.suppress(ray.exceptions.RayActorError):  # its node is gone
            self._call(self._ran_on(request.run_id), "save_outputs", request, files, timeout=3600)

    def cleanup(self, run_id: int, handle: dict | None) -> None:
        ray = self._ray()
        from ray.util import remove_placement_group

        handle = handle or self._launched.get(run_id)
        node = (handle or {}).get("node")
        if node is None and run_id in self._placed:
            node = self._placed[run_id]["node"]  # staged there, never launched
        if node is not None:
            with contextlib.suppress(ray.exceptions.RayError):  # its node is gone
                self._call(node, "cleanup", run_id, handle, timeout=120)
        group = self._group(run_id)
        if group is not None:
            remove_placement_group(group)
        self._forget(run_id)
        self._launched.pop(run_id, None)

    def remove_leftovers(self, active_run_ids: set[int]) -> list[int]:
        self._ray()
        from ray.util import get_placement_group, placement_group_table, remove_placement_group

        names = {
            g.get("name", "")
            for g in placement_group_table().values()
            if g.get("state") != "REMOVED"
        }
        removed = []
        for name in sorted(names):
            run_id = name[len(GROUP_PREFIX) :] if name.startswith(GROUP_PREFIX) else ""
            if not run_id.isdigit() or int(run_id) in active_run_ids:
                continue
            try:
                group = get_placement_group(name)  # this namespace's alone
            except ValueError:
                continue
            remove_placement_group(group)
            removed.append(int(run_id))
        return removed

    def close(self) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)


class NodeImages(ImageBuilder):
    """The images of one node's Docker Engine, built and pulled there through its agent."""

    def __init__(self, backend: RayBackend, node: str):
        self.backend = backend
        self.node = node

    def has_image(self, image: str) -> bool:
        return bool(self.backend._call(self.node, "has_image", image))

    def image_id(self, image: str) -> str | None:
        return self.backend._call(self.node, "image_id", image)

    def pull_image(self, image: str, on_line: Callable[[str], None]) -> None:
        self.backend._stream(self.node, "pull_lines", image, on_line=on_line)

    def build_image(
        self, dockerfile: str, files: dict[str, bytes], tag: str, on_line: Callable[[str], None]
    ) -> None:
        self.backend._stream(self.node, "build_lines", dockerfile, files, tag, on_line=on_line)


def _on_loopback(address: str) -> bool:
    """Whether the head's address is this machine's loopback (a cluster started here)."""
    host = urlsplit("//" + address.split("://")[-1]).hostname or ""
    return host in ("127.0.0.1", "localhost")


def _group_node(group) -> str:
    """The node a placed group's bundle is on."""
    from ray.util import placement_group_table

    return placement_group_table(group)["bundles_to_node_id"][0]


def _cause(exc: Exception) -> Exception:
    """What a Ray task raised on its node."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc
