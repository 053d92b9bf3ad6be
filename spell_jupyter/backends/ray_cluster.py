"""RayBackend: runs placed on a Ray cluster by Ray's own scheduler.

Each run is a named, detached actor (`spell-run-<id>` in the backend's namespace) asking for
its machine type's CPUs, memory and GPUs, and for the custom resource `spell-<TYPE>` when a
node declares one (`ray start --resources '{"spell-T4": 1}'`). Ray queues the actor until a
node has room, so a run waits in `machine_requested` for the cluster's free capacity. On its
node the actor runs the command as the local backend does on one host (`ray_node.RunOnNode`);
code, mounts and outputs travel through SpellFS on the shared root (an S3 bucket for a team).
Everything needed to find a run again is its actor's name, so a new leader (on any host)
reattaches.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from traitlets import Float, Unicode, default

from ..errors import InvalidInput, Unavailable
from .base import (
    Backend,
    LaunchRequest,
    OutputBatches,
    OutputFile,
    ProcessState,
    ProcessStatus,
    Resources,
    StagedCode,
    StatusListener,
)

ACTOR_PREFIX = "spell-run-"
MIB = 1 << 20
START_HINT = (
    "start one (`ray start --head`, then `ray start --address HEAD:6379` on each node) or "
    "point RayBackend.address (or RAY_ADDRESS) at yours"
)


def actor_name(run_id: int) -> str:
    return f"{ACTOR_PREFIX}{run_id}"


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
        import os

        return os.environ.get("RAY_ADDRESS") or "auto"

    namespace = Unicode(
        "spell", help="The Ray namespace of the runs' actors (one per team store)"
    ).tag(config=True)

    call_timeout = Float(60.0, help="Seconds a call to a run's actor may take").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._connect_lock = threading.Lock()
        self._actors: dict[int, Any] = {}
        self._placing: dict[int, Any] = {}  # run -> ObjectRef of its actor's where()
        self._watched: dict[Any, tuple[int, str]] = {}  # ObjectRef -> (run, "where"/"end")
        self._placed: set[int] = set()  # runs whose actor holds its node's resources
        self._watch_lock = threading.Lock()
        self._on_change: StatusListener | None = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._remote_class = None

    # -- the cluster -----------------------------------------------------------------------------

    def _ray(self):
        """The connected `ray` module (Unavailable when the cluster does not answer)."""
        import ray

        with self._connect_lock:
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
            host = urlsplit("//" + self.address.split("://")[-1]).hostname or ""
            if host in ("127.0.0.1", "localhost"):
                options["_node_ip_address"] = "127.0.0.1"  # or Ray rewrites it and hangs
            try:
                ray.init(**options)
            except Exception as exc:
                raise Unavailable(
                    f"the Ray cluster at {self.address} does not answer ({exc}); {START_HINT}"
                ) from exc
            return ray

    def _check_reachable(self) -> None:
        """Fail fast where the head's port does not answer (ray.init would retry for long)."""
        if self.address in ("", "auto", "local"):
            return
        location = urlsplit("//" + self.address.split("://")[-1])
        port = location.port or (10001 if self.address.startswith("ray://") else 6379)
        try:
            socket.create_connection((location.hostname or "127.0.0.1", port), timeout=3).close()
        except OSError as exc:
            raise Unavailable(
                f"the Ray cluster at {self.address} does not answer ({exc.strerror or exc}); "
                f"{START_HINT}"
            ) from exc

    def _nodes(self) -> list[dict]:
        ray = self._ray()
        try:
            return [n for n in ray.nodes() if n.get("Alive")]
        except Exception as exc:
            raise Unavailable(f"the Ray cluster at {self.address} does not answer ({exc})") from exc

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

    def _demand(self, resources: Resources, nodes: list[dict]) -> dict:
        """The actor options asking for `resources` (the type's own resource when a node
        declares it)."""
        custom = machine_resource(resources.machine_type)
        declared = any(custom in n["Resources"] for n in nodes)
        return {
            "num_cpus": resources.cpus,
            "num_gpus": resources.gpus,
            "memory": resources.memory_mib * MIB or None,
            "resources": {custom: 1} if declared else {},
        }

    def check_resources(self, resources: Resources) -> None:
        nodes = self._nodes()
        demand = self._demand(resources, nodes)

        def holds(node: dict) -> bool:
            have = node["Resources"]
            return (
                have.get("CPU", 0) >= demand["num_cpus"]
                and have.get("GPU", 0) >= demand["num_gpus"]
                and have.get("memory", 0) >= (demand["memory"] or 0)
                and all(have.get(k, 0) >= v for k, v in demand["resources"].items())
            )

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

    def _actor_class(self):
        if self._remote_class is None:
            ray = self._ray()
            from .ray_node import RunOnNode

            self._remote_class = ray.remote(RunOnNode)
        return self._remote_class

    def place(self, run_id: int, resources: Resources) -> dict | None:
        ray = self._ray()
        actor = self._actors.get(run_id)
        if actor is None:
            demand = self._demand(resources, self._nodes())
            actor = (
                self._actor_class()
                .options(
                    name=actor_name(run_id),
                    namespace=self.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    max_restarts=0,
                    max_concurrency=32,
                    num_cpus=demand["num_cpus"],
                    num_gpus=demand["num_gpus"],
                    memory=demand["memory"],
                    resources=demand["resources"],
                )
                .remote(run_id, self.fs.settings(), self.bucket_options)
            )
            self._actors[run_id] = actor
        ref = self._placing.get(run_id)
        if ref is None:
            ref = self._placing[run_id] = actor.where.remote()
            self._watch(ref, run_id, "where")
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return None
        self._placing.pop(run_id, None)
        try:
            placed = ray.get(ref)
        except ray.exceptions.RayError:  # the actor died before it was placed: place it again
            self._forget(run_id)
            return None
        self._placed.add(run_id)
        return placed

    def _actor(self, run_id: int):
        """The run's actor, found by name after a restart (None when it is gone)."""
        actor = self._actors.get(run_id)
        if actor is None:
            ray = self._ray()
            try:
                actor = ray.get_actor(actor_name(run_id), namespace=self.namespace)
            except ValueError:
                return None
            self._actors[run_id] = actor
        return actor

    def _forget(self, run_id: int) -> None:
        self._actors.pop(run_id, None)
        self._placing.pop(run_id, None)
        self._placed.discard(run_id)

    def _call(self, run_id: int, method: str, *args, timeout: float | None = None):
        """Call the run's actor and wait; an exception raised there is raised here as is."""
        ray = self._ray()
        actor = self._actor(run_id)
        if actor is None:
            raise ray.exceptions.RayActorError()
        ref = getattr(actor, method).remote(*args)
        try:
            return ray.get(ref, timeout=timeout or self.call_timeout)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc) from None

    # -- staging ---------------------------------------------------------------------------------

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        return self._call(request.run_id, "stage_code", request, timeout=3600)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        return self._call(request.run_id, "stage_mounts", request, timeout=3600)

    # -- the process -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> dict:
        if request.api is not None:  # this host's socket is out of reach: the API over TCP
            envvars = dict(request.envvars)
            if self.api_url:
                envvars.update({"SPELL_BASE_URL": self.api_url, "SPELL_TOKEN": request.api.token})
            request = replace(request, api=None, envvars=envvars)
        handle = self._call(request.run_id, "launch", request)
        handle["actor"] = actor_name(request.run_id)
        self.attach(request.run_id, handle)
        return handle

    @staticmethod
    def _run_of(handle: dict) -> int:
        return int(handle["actor"].removeprefix(ACTOR_PREFIX))

    def _lost(self, handle: dict) -> ProcessStatus:
        where = handle.get("node_ip") or "?"
        return ProcessStatus(
            ProcessState.LOST,
            None,
            f"the Ray node {where} ({str(handle.get('node', ''))[:12]}) running it was lost",
        )

    def status(self, handle: dict) -> ProcessStatus:
        ray = self._ray()
        try:
            found = self._call(self._run_of(handle), "status")
        except ray.exceptions.RayActorError:
            return self._lost(handle)
        except ray.exceptions.GetTimeoutError:
            return ProcessStatus(ProcessState.RUNNING)  # its node is slow to answer: ask later
        return found or ProcessStatus(ProcessState.STARTING)

    def watch(self, on_change: StatusListener) -> None:
        self._on_change = on_change

    def attach(self, run_id: int, handle: dict) -> None:
        ray = self._ray()
        actor = self._actor(run_id)
        if actor is None:
            if self._on_change is not None:
                self._on_change(run_id)  # gone while no one watched: its status says so
            return
        with self._watch_lock:
            if (run_id, "end") in self._watched.values():
                return
        try:
            ref = actor.wait_end.remote(30.0)
        except ray.exceptions.RayActorError:
            ref = None
        if ref is None:
            if self._on_change is not None:
                self._on_change(run_id)
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
        """Tell the engine when a run is placed or its command ends (or its actor dies)."""
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
                again = False
                if what == "end":  # re-armed while the command still runs
                    try:
                        state = ray.get(ref)
                        again = state is None or not state.ended
                    except ray.exceptions.RayError:
                        again = False
                if again:
                    actor = self._actors.get(run_id)
                    if actor is not None:
                        self._watch(actor.wait_end.remote(30.0), run_id, "end")
                        continue
                if self._on_change is not None:
                    self._on_change(run_id)

    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        ray = self._ray()
        run_id = self._run_of(handle)
        while not stop.is_set():
            try:
                lines, cursor, done = self._call(run_id, "output", cursor, 1.0, timeout=30)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError:
                return  # its node is gone: the status says so
            if lines:
                yield lines, cursor
            if done:
                return

    def signal(self, handle: dict, signum: int) -> bool:
        ray = self._ray()
        try:
            return bool(self._call(self._run_of(handle), "signal", signum))
        except ray.exceptions.RayActorError:
            return True  # nothing left to signal: its status is lost

    def describe(self, handle: dict) -> str:
        return (
            f"Running on Ray node {handle.get('node_ip', '?')} "
            f"({str(handle.get('node', ''))[:12]}) as a local process"
        )

    def stats(self, handle: dict) -> dict:
        return self._call(self._run_of(handle), "stats")

    # -- after the process -----------------------------------------------------------------------

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        ray = self._ray()
        try:
            return self._call(request.run_id, "list_outputs", request, timeout=3600)
        except ray.exceptions.RayActorError:
            return []  # the node is gone, and what the run wrote there with it

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        ray = self._ray()
        with contextlib.suppress(ray.exceptions.RayActorError):  # its node is gone
            self._call(request.run_id, "save_outputs", request, files, timeout=3600)

    def cleanup(self, run_id: int, handle: dict | None) -> None:
        ray = self._ray()
        actor = self._actor(run_id)
        placed = run_id in self._placed or handle is not None
        self._forget(run_id)
        if actor is None:
            return
        if placed:  # its node holds its folders (an actor still waiting for one holds none)
            with contextlib.suppress(ray.exceptions.RayError):  # its node is gone
                ray.get(actor.cleanup.remote(), timeout=120)
        ray.kill(actor, no_restart=True)

    def remove_leftovers(self, active_run_ids: set[int]) -> list[int]:
        ray = self._ray()
        from ray.util import list_named_actors

        removed = []
        for name in list_named_actors(all_namespaces=False):
            if not name.startswith(ACTOR_PREFIX) or not name[len(ACTOR_PREFIX) :].isdigit():
                continue
            run_id = int(name[len(ACTOR_PREFIX) :])
            if run_id in active_run_ids:
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
            except ValueError:
                continue
            removed.append(run_id)
        return removed

    def close(self) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)
