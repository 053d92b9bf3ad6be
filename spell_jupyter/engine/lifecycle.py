"""RunEngine: the one engine per data directory that moves runs through their lifecycle.

machine_requested -> building -> mounting -> running -> saving -> pushing -> complete | failed |
stopped; `killed` skips saving; `interrupted` when a run's process vanished. Each status has a
step (the table `steps`) that does what it can now and says whether the run moved on, waits or
ended. Every move is written to the store first, so a restarted engine resumes any run from the
status it finds.

Event-driven: the loop sleeps until something happens (a submission or request in this
process, one seen in the store from another, a backend status event, background work done, a
log pump drained, a deadline such as a timeout or a stop's grace period). Work that takes time
goes to pools of its own (builds; code and mount fetches; launches; saves), and each running
run's output is moved by a LogPump of its own.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from functools import partial
from pathlib import Path

from traitlets import Float, Int, default
from traitlets.config import LoggingConfigurable

from ..backends.base import (
    Backend,
    BuildFailed,
    CodeFailed,
    ImageBuilder,
    LaunchRequest,
    MountFailed,
    MountRequest,
    OutputFile,
    ProcessState,
    ProcessStatus,
    Resources,
)
from ..backends.run_api import RunApi
from ..errors import Unavailable
from ..home_config import engine_info_path, write_private_json
from ..humanize import human_size
from ..models import OutputLine, RunAction, RunKind, RunSpec, Status
from ..store.metrics import MetricStore
from ..store.repository import ActiveRun, RunStore
from .disk_reserve import DiskReserve, is_disk_full
from .environments import Environment, Frameworks, environment_for
from .hardware_metrics import HardwareSampler
from .leader import leader_lock_for
from .log_pump import LogPump
from .machine_types import Allocation, MachineTypes
from .searches import SearchDriver, is_search
from .service_tokens import ServiceTokens
from .workspace_status import idle_seconds

KERNEL_PORTS = 5  # shell, iopub, stdin, control, heartbeat

MAX_CONSECUTIVE_ERRORS = 5
IMAGE_RECHECK_SECONDS = 60.0


class Step(str, Enum):
    """What a lifecycle step did, when it did not move the run on (then it returns the run in
    its next status, whose step runs at once)."""

    WAIT = "wait"  # nothing more to do until an event
    ENDED = "ended"  # the run is final


@dataclass
class Pass:
    """What one pass knows: the resources held, the runs placed, the next deadline."""

    held: list[Allocation]
    occupied: int
    dirty: set[int]
    everything_dirty: bool
    deadline: float = math.inf

    def due(self, run_id: int) -> bool:
        return self.everything_dirty or run_id in self.dirty

    def wake_at(self, when: float) -> None:
        self.deadline = min(self.deadline, when)


def holds_machine(run: ActiveRun) -> bool:
    """Whether the run takes a slot and resources once placed (searches and --local workflow
    masters take none)."""
    return not (is_search(run) or run.spec.local)


SUBMITTER = "submitter"  # the `backend` of a --local master: its submitter's machine
PLACEMENT_NOTE_DELAY = 2.0  # seconds a cluster may take to place a run before it is "waiting"


class RunEngine(LoggingConfigurable):
    """Schedules queued runs under a concurrency limit and carries each through its steps."""

    concurrency_limit = Int(
        help="How many runs may be past machine_requested at once "
        "(env SPELL_CONCURRENCY_LIMIT; default: the CPU count, or no limit where a cluster "
        "places runs: its free capacity is the limit)"
    ).tag(config=True)

    @default("concurrency_limit")
    def _default_concurrency_limit(self) -> int:
        if os.environ.get("SPELL_CONCURRENCY_LIMIT"):
            return int(os.environ["SPELL_CONCURRENCY_LIMIT"])
        if getattr(self, "backend", None) is not None and self.backend.places_runs:
            return 1_000_000
        return os.cpu_count() or 1

    stop_grace_period = Float(
        help="Seconds between SIGTERM and SIGKILL when a run is stopped "
        "(env SPELL_STOP_GRACE_PERIOD; default 10)"
    ).tag(config=True)

    @default("stop_grace_period")
    def _default_stop_grace_period(self) -> float:
        return float(os.environ.get("SPELL_STOP_GRACE_PERIOD") or 10.0)

    activity_check_interval = Float(
        0.25,
        help="Seconds between looks at the store for submissions and requests made through "
        "another server of this data directory (two indexed lookups)",
    ).tag(config=True)
    reconcile_interval = Float(
        30.0, help="Seconds between looks at every running run's process, besides its events"
    ).tag(config=True)
    build_workers = Int(2, help="Environment builds and pulls that may run at once").tag(
        config=True
    )
    fetch_workers = Int(4, help="Code checkouts and mount fetches that may run at once").tag(
        config=True
    )
    launch_workers = Int(4, help="Runs that may be starting (a container created) at once").tag(
        config=True
    )
    save_workers = Int(2, help="Output listings and saves that may run at once").tag(config=True)
    leader_retry_interval = Float(
        1.0, help="Seconds between attempts of a standby engine to become the leader"
    ).tag(config=True)
    local_master_timeout = Float(
        30.0,
        help="Seconds a --local workflow master may go without reporting before it is "
        "ended interrupted (its submitter reports every few seconds)",
    ).tag(config=True)
    idle_check_interval = Float(
        help="Seconds between looks at whether a workspace with an idle timeout is idle "
        "(env SPELL_IDLE_CHECK_INTERVAL; default 30)"
    ).tag(config=True)

    @default("idle_check_interval")
    def _default_idle_check_interval(self) -> float:
        return float(os.environ.get("SPELL_IDLE_CHECK_INTERVAL") or 30.0)

    hardware_interval = Float(
        5.0,
        help="Seconds between samples of running container runs' CPU, memory and GPU use, "
        "recorded as their spell/* metrics (0: none)",
    ).tag(config=True)

    def __init__(
        self,
        *,
        store: RunStore,
        backend: Backend,
        home: Path,
        machine_types: MachineTypes,
        frameworks: Frameworks | None = None,
        ca_files: list[Path] | None = None,
        pip_installer: str = "auto",
        leader_record: dict | None = None,
        run_api_dir: Path | None = None,
        metrics: MetricStore | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.leader_record = leader_record or {}  # written to engine.json while leading
        # The folder of the server's socket for code inside runs (None: runs get no API).
        self.run_api_dir = run_api_dir
        self.leading_hooks: list[Callable[[], None]] = []  # called as this engine begins leading
        self.searches = SearchDriver(store, metrics)
        self.hardware = (
            HardwareSampler(backend, metrics, self._running_handles, self.hardware_interval)
            if metrics is not None
            else None
        )
        self.store = store
        self.backend = backend
        self.home = home
        self.machine_types = machine_types
        self.frameworks = frameworks or Frameworks({})
        self.ca_files = ca_files or []
        self.pip_installer = pip_installer
        self.pools: dict[str, Executor] = {
            "build": ThreadPoolExecutor(self.build_workers, thread_name_prefix="spell-build"),
            "fetch": ThreadPoolExecutor(self.fetch_workers, thread_name_prefix="spell-fetch"),
            "launch": ThreadPoolExecutor(self.launch_workers, thread_name_prefix="spell-launch"),
            "save": ThreadPoolExecutor(self.save_workers, thread_name_prefix="spell-save"),
        }
        self.steps: dict[Status, Callable[[ActiveRun, Pass], Step | ActiveRun]] = {
            Status.MACHINE_REQUESTED: self._step_queued,
            Status.BUILDING: self._step_building,
            Status.MOUNTING: self._step_mounting,
            Status.RUNNING: self._step_running,
            Status.SAVING: self._step_saving,
            Status.PUSHING: self._step_pushing,
        }
        self.service_tokens = ServiceTokens(store, home)
        self.leader_lock = leader_lock_for(store.engine, home)
        self.disk_reserve = DiskReserve(home / "engine.reserve")
        self._forget_leading_state()
        self._led_before = False  # hooks, backend events and samplers are set up once
        self._dirty: set[int] = set()
        self._everything_dirty = True
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reconcile = 0.0

    def _forget_leading_state(self) -> None:
        """What a leader keeps of the runs it drives, as a process that never led has it."""
        self.pumps: dict[int, LogPump] = {}
        self._builds: dict[str, _Build] = {}  # image -> its build (or pull), shared by runs
        self._images_seen: dict[str, float] = {}  # image -> when it was last seen to exist
        self._environments: dict[int, Environment] = {}  # run -> its environment
        self._prepared: set[int] = set()  # runs whose image exists
        self._staged: set[int] = set()  # runs whose mounts are ready
        self._tasks: dict[tuple[int, str], Future] = {}  # (run, what) -> background work
        self._outputs: dict[int, list[OutputFile]] = {}  # listed while saving, for pushing
        self._ended: dict[int, ProcessStatus] = {}  # runs whose process ended, draining
        self._ending: dict[int, tuple[Status, str, int | None]] = {}  # cleaning up, then final
        self._terminated: set[int] = set()  # runs sent SIGTERM by this process
        self._killed: set[int] = set()  # runs sent SIGKILL by this process
        self._errors: dict[int, int] = {}
        self._idle_checks: dict[int, float] = {}  # workspace -> when it is looked at next
        self._noted_waiting: set[int] = set()  # queued runs told why they wait
        self._placing_since: dict[int, float] = {}  # queued runs a cluster is asked to place

    # -- the narrow interface the services use -----------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.leader_lock.held

    def wake(self, run_id: int | None = None) -> None:
        """Something changed (for `run_id`, or for any run): take a pass soon."""
        with self._dirty_lock:
            if run_id is None:
                self._everything_dirty = True
            else:
                self._dirty.add(run_id)
        self._wake.set()

    def check_submission(self, spec: RunSpec) -> None:
        """Refuse, before a run is created, what this engine's backend cannot run."""
        self.backend.check_submission(
            gpus=self.machine_types.types[spec.machine_type].gpus,
            wants_environment=spec.wants_environment,
        )
        self.backend.check_mounts([m.target(spec.cwd) for m in spec.mounts])
        if self.backend.places_runs:
            self.backend.check_resources(self.resources_of(spec.machine_type))

    def resources_of(self, machine_type: str) -> Resources:
        mtype = self.machine_types.types[machine_type]
        return Resources(mtype.name, mtype.cpus, mtype.memory_mib, mtype.gpus, mtype.gpu)

    def cluster_capacity(self) -> list[dict] | None:
        """The nodes of a placing backend's cluster (None: this host alone)."""
        return self.backend.capacity()

    def run_stats(self, handle: dict) -> dict:
        return self.backend.stats(handle)

    def signal_run(self, run_id: int, signum: int) -> bool:
        """Send a signal to a running run's command (a kernel's interrupt); False before it
        has a process."""
        handle = self.store.handle_of(run_id)
        return bool(handle) and self.backend.signal(handle, signum)

    def live_folder(self, run_id: int) -> Path | None:
        """An active run's working folder on this host (None where the backend keeps none)."""
        return self.backend.local_folder(run_id)

    def held_allocations(self) -> list[Allocation]:
        """What the placed runs hold of this host."""
        return [
            self.allocation_of(r)
            for r in self.store.active_runs()
            if r.status != Status.MACHINE_REQUESTED and holds_machine(r)
        ]

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread; it waits to become the leader if another is."""
        self._thread = threading.Thread(target=self._main, name="spell-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self.hardware is not None:
            self.hardware.stop()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for pump in list(self.pumps.values()):
            pump.stop(timeout=1.0)
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.backend.close()
        self.leader_lock.release()

    def _main(self) -> None:
        while not self._stopping.is_set():
            if not self.leader_lock.try_acquire():
                self._stopping.wait(self.leader_retry_interval)
                continue
            self.log.info("Spell engine: leading runs in %s", self.home)
            write_private_json(
                engine_info_path(self.home), {**self.leader_record, "pid": os.getpid()}
            )
            try:
                self.begin_leading()
            except Exception:  # the passes go on; what failed is logged and met again there
                self.log.exception("Spell engine: starting to lead failed")
            self._lead()
            if not self._stopping.is_set():
                self._step_down()

    def begin_leading(self) -> None:
        """What a new leader does before its first pass."""
        if not self._led_before:
            self._led_before = True
            for hook in self.leading_hooks:
                hook()
            self.backend.watch(self._on_backend_event)
            if self.hardware is not None:
                self.hardware.start()
        self.sweep_leftovers()
        self.disk_reserve.hold()
        self.wake()

    def _still_leading(self) -> bool:
        """Whether the leader lock is still ours; a database lock lost with its connection is
        taken again at once when no other server took it meanwhile."""
        if self.leader_lock.still_held():
            return True
        self.leader_lock.release()
        if self.leader_lock.try_acquire():
            self.log.warning("Spell engine: the store's connection was lost; leading again")
            return True
        return False

    def _step_down(self) -> None:
        """Another server leads now (or the store is out of reach): stop following runs and
        forget them; whoever leads next picks them up from the store, as after a restart."""
        self.log.warning("Spell engine: no longer the leader; waiting to lead again")
        for pump in list(self.pumps.values()):
            pump.stop(timeout=1.0)
        self._forget_leading_state()
        self.disk_reserve.release()

    def _lead(self) -> None:
        mark: object = None
        next_check = 0.0
        deadline = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_check:
                if not self._still_leading():
                    return
                try:
                    current = self.store.activity_mark()
                except Exception:
                    current = object()  # the store did not answer: look again by a pass
                if current != mark:
                    mark = current
                    self.wake()
                next_check = now + self.activity_check_interval
            if self._wake.is_set() or now >= deadline:
                self._wake.clear()
                try:
                    deadline = self.tick()
                except Exception as exc:  # the store may be briefly unavailable; keep leading
                    if not self._made_room(exc):
                        self.log.exception("Spell engine: pass failed")
                    deadline = time.monotonic() + 1.0
                    self.wake()
                if not self.disk_reserve.held:
                    self.disk_reserve.hold()  # once the disk has room again
            self._wake.wait(max(0.0, min(next_check, deadline) - time.monotonic()))

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until something wakes the engine, or `timeout` (for a driver that calls
        `tick` itself, as the loop and the in-process tests do)."""
        self._wake.wait(max(0.0, timeout))
        self._wake.clear()

    def _on_backend_event(self, run_id: int | None) -> None:
        self.wake(run_id)

    # -- one pass ---------------------------------------------------------------------------------

    def tick(self) -> float:
        """Take each active run as far as it can go now. Returns when (time.monotonic()) the
        next pass is due without an event: a timeout, a grace period, a retry."""
        now = time.monotonic()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            everything = self._everything_dirty or now >= self._next_reconcile
            self._everything_dirty = False
        if everything:
            self._next_reconcile = now + self.reconcile_interval
        runs = self.store.active_runs()
        placed = [r for r in runs if r.status != Status.MACHINE_REQUESTED and not is_search(r)]
        this = Pass(
            held=[self.allocation_of(r) for r in placed],
            occupied=len(placed),
            dirty=dirty,
            everything_dirty=everything,
            deadline=self._next_reconcile,
        )
        for run in runs:
            try:
                self._advance(run, this)
            except Exception as exc:
                self._on_error(run, exc)
                this.wake_at(time.monotonic() + 1.0)  # try the step again
        self._forget_gone({r.id for r in runs})
        return this.deadline

    def _advance(self, run: ActiveRun, this: Pass) -> None:
        """Run the run's steps while it moves on (a run can go from queued to running in one
        pass when nothing needs waiting for)."""
        if run.id in self._ending:
            self._finish_ending(run)
            return
        if run.spec.local:  # a workflow master on the submitter's machine
            self._step_local_master(run, this)
            return
        foreign = self._launched_elsewhere(run)
        if foreign:  # this engine cannot follow it: left as it is for a leader that can
            self._note_waiting(
                run,
                f"waiting: it was started by the {foreign} backend, and the server leading "
                f"now runs the {self.backend.name} backend; start the servers of this store "
                f"with SpellJupyter.backend = '{foreign}'",
            )
            return
        if is_search(run):  # it holds no machine: its step creates and watches its runs
            if not this.due(run.id):
                return  # its runs' ends and any request wake every run
            if self.searches.step(run):
                self.wake()  # the runs it made are not in this pass
            return
        while True:
            outcome = self.steps[run.status](run, this)
            if outcome != Step.WAIT:
                self._errors.pop(run.id, None)  # it moved on: errors in a row start again
            if not isinstance(outcome, ActiveRun):
                return
            run = outcome
            this.dirty.add(run.id)

    def _launched_elsewhere(self, run: ActiveRun) -> str | None:
        """The backend that launched (or a cluster that placed) a run, when not this one's."""
        if run.backend and run.backend != self.backend.name and run.backend != SUBMITTER:
            return run.backend
        placed_by = (run.allocation or {}).get("placed_by")  # a cluster's, not launched yet
        if placed_by and placed_by != self.backend.name:
            return placed_by
        return None

    def _forget_gone(self, active: set[int]) -> None:
        """Drop what this process keeps for runs that are no longer active."""
        for run_id in self._remembered() - active:
            self._forget(run_id)

    def _memories(self) -> tuple[dict, ...]:
        return (
            self._environments,
            self._outputs,
            self._ended,
            self._errors,
            self._ending,
            self._idle_checks,
        )

    def _run_sets(self) -> tuple[set[int], ...]:
        return (self._prepared, self._staged, self._terminated, self._killed, self._noted_waiting)

    def _remembered(self) -> set[int]:
        found = set(self.pumps) | {run_id for run_id, _ in self._tasks}
        for memory in self._memories():
            found.update(memory)
        return found.union(*self._run_sets())

    def _forget(self, run_id: int) -> None:
        """Drop what this process keeps for one run (work still going is let finish; its
        result is not wanted)."""
        self._stop_pump(run_id)
        for memory in self._memories():
            memory.pop(run_id, None)
        for runs in self._run_sets():
            runs.discard(run_id)
        for key in [k for k in self._tasks if k[0] == run_id]:
            del self._tasks[key]

    def _stop_pump(self, run_id: int) -> None:
        pump = self.pumps.pop(run_id, None)
        if pump is not None:
            pump.stop_event.set()

    # -- steps -----------------------------------------------------------------------------------

    def _step_queued(self, run: ActiveRun, this: Pass) -> Step | ActiveRun:
        if run.requested_action is not None:
            return self._cancel(run)
        if this.occupied >= self.concurrency_limit:
            self._note_waiting(
                run,
                f"waiting for a free slot: {this.occupied} runs are active and the "
                f"concurrency limit is {self.concurrency_limit}",
            )
            return Step.WAIT
        allocation = self.machine_types.allocate(run.spec.machine_type, this.held)
        if allocation is None:
            self._note_waiting(
                run, f"waiting for a {run.spec.machine_type} machine: none is free yet"
            )
            return Step.WAIT
        node: dict = {}  # where a cluster placed it
        if self.backend.places_runs:
            try:
                placed = self.backend.place(run.id, self.resources_of(run.spec.machine_type))
            except Unavailable as exc:
                self._note_waiting(run, f"waiting: {exc.message}")
                this.wake_at(time.monotonic() + self.leader_retry_interval * 5)
                return Step.WAIT
            if placed is None:  # the backend wakes the engine once it is placed
                asked = self._placing_since.setdefault(run.id, time.monotonic())
                if time.monotonic() - asked < PLACEMENT_NOTE_DELAY:
                    this.wake_at(asked + PLACEMENT_NOTE_DELAY)  # most runs are placed by then
                    return Step.WAIT
                self._note_waiting(
                    run,
                    f"waiting for a {run.spec.machine_type} machine: no node of the cluster "
                    "has room for one yet",
                )
                return Step.WAIT
            self._placing_since.pop(run.id, None)
            allocation = replace(allocation, gpu_indices=tuple(placed.get("gpus", ())))
            node = {k: placed[k] for k in ("node", "node_ip") if k in placed}
            node["placed_by"] = self.backend.name
            where = placed.get("node_ip") or placed.get("node", "?")
            self.store.add_status_note(run.id, f"Placed on node {where}")
        this.held.append(allocation)
        this.occupied += 1
        self._noted_waiting.discard(run.id)
        held = {**allocation.as_json(), **node}
        self.store.set_status(run.id, Status.BUILDING, "Building", allocation=held)
        return replace(run, status=Status.BUILDING, allocation=held)

    def _step_building(self, run: ActiveRun, this: Pass) -> Step | ActiveRun:
        if run.requested_action is not None:
            return self._cancel(run)
        images = self._images(run)
        if images is not None and run.id not in self._prepared:
            ready = self._prepare(run, images)
            if not ready:
                return Step.WAIT if ready is None else Step.ENDED
            self._prepared.add(run.id)  # said once, however long the code takes
        elif images is None and run.spec.wants_environment:  # a cluster's node without Docker
            where = (run.allocation or {}).get("node_ip") or "the node it was placed on"
            self.store.add_status_note(
                run.id,
                f"Build failed: {where} runs commands as local processes (no Docker Engine "
                "there can run this machine type), so the run's environment cannot be built: "
                "declare its machine type only on nodes with Docker",
            )
            self.store.set_status(run.id, Status.BUILD_FAILED, "Environment build failed")
            self._cleanup(run.id, None)
            return Step.ENDED
        if run.requested_action is not None:
            return self._cancel(run)
        if run.spec.code is not None:
            code = run.spec.code
            if code.github_url and (run.id, "code") not in self._tasks:
                where = f" at {code.github_ref}" if code.github_ref else ""
                self.store.add_status_note(run.id, f"Cloning {code.github_url}{where}")
            work = partial(self.backend.stage_code, self._request(run))
            staged = self._fetch(run.id, "code", work, CodeFailed, "Code sync failed")
            if isinstance(staged, Step):
                return staged
            for warning in staged.warnings:
                self.store.add_status_note(run.id, f"Warning: {warning}")
            if code.commit != staged.commit:
                self.store.record_commit(run.id, staged.commit)
            patched = " with the uncommitted changes" if code.patch else ""
            self.store.add_status_note(
                run.id, f"Code: {code.repository} at commit {staged.commit[:12]}{patched}"
            )
        self.store.set_status(run.id, Status.MOUNTING, "Mounting")
        return replace(run, status=Status.MOUNTING)

    def _step_mounting(self, run: ActiveRun, this: Pass) -> Step | ActiveRun:
        if run.requested_action is not None and not self._launching(run.id):
            return self._cancel(run)
        request = self._request(run)
        if run.id not in self._staged:
            work = partial(self.backend.stage_mounts, request)
            notes = self._fetch(run.id, "mounts", work, MountFailed, "Mount failed")
            if isinstance(notes, Step):
                return notes
            for note in notes:
                self.store.add_status_note(run.id, note)
            self._staged.add(run.id)
        launched = self._background(run.id, "launch", "launch", partial(self._launch, run, request))
        if launched is None:
            return Step.WAIT
        handle = launched.result()  # a failure is this step's error: tried again
        self.store.set_handle(run.id, self.backend.name, handle)
        self.store.add_status_note(run.id, self.backend.describe(handle))
        self.store.set_status(run.id, Status.RUNNING, "Run is running")
        self._follow(run.id, handle, "")
        return replace(run, status=Status.RUNNING, handle=handle, started_at=_now())

    def _step_running(self, run: ActiveRun, this: Pass) -> Step | ActiveRun:
        handle = run.handle or {}
        if run.id not in self.pumps:  # a run this engine finds running: reattach
            self._follow(run.id, handle, run.output_cursor)
            this.dirty.add(run.id)
        if self._timed_out(run):
            self.store.add_status_note(
                run.id, f"Run timed out after {run.spec.timeout_minutes:g} minutes: stopping"
            )
            self.store.request_action(run.id, RunAction.STOP)
            run = replace(run, requested_action=RunAction.STOP, requested_at=_now())
        elif run.requested_action is None and run.spec.timeout_minutes is not None:
            left = run.spec.timeout_minutes * 60 - _seconds_since(run.started_at)
            this.wake_at(time.monotonic() + max(left, 0.0))
        self._carry_out_request(run, handle, this)
        if run.requested_action is None and run.id not in self._ended:
            self._check_idle(run, handle, this)
        if run.id not in self._ended:
            if not this.due(run.id):
                return Step.WAIT
            state = self.backend.status(handle)
            if not state.ended:
                return Step.WAIT
            self._ended[run.id] = state
        if not self.pumps[run.id].drained.is_set():
            return Step.WAIT  # its pump wakes the engine once the last line is stored
        state = self._ended.pop(run.id)
        self.pumps.pop(run.id)
        if state.state == ProcessState.LOST:
            self.store.add_status_note(
                run.id,
                "The run's process ended without an exit code (was the machine restarted?)"
                + (f": {state.detail}" if state.detail else ""),
            )
        elif state.detail:
            self.store.add_status_note(run.id, f"The run ended: {state.detail}")
        if run.requested_action == RunAction.KILL:
            self._end(run, Status.KILLED, "Run killed", state.exit_code)
            return Step.ENDED
        self.store.set_status(run.id, Status.SAVING, "Saving", user_exit_code=state.exit_code)
        return replace(run, status=Status.SAVING, user_exit_code=state.exit_code)

    def _step_saving(self, run: ActiveRun, this: Pass) -> Step | ActiveRun:
        if run.requested_action == RunAction.KILL and (run.id, "outputs") not in self._tasks:
            self._end(run, Status.KILLED, "Run killed", self._exit_code(run))
            return Step.ENDED
        if (run.id, "outputs") not in self._tasks:
            self.store.add_status_note(run.id, "Retrieving modified or new files from the run")
        request = self._request(run)
        done = self._background(
            run.id, "outputs", "save", partial(self.backend.list_outputs, request)
        )
        if done is None:
            return Step.WAIT
        files = done.result()
        self._outputs[run.id] = files
        if files:
            total = human_size(sum(f.size for f in files))
            self.store.add_status_note(run.id, f"Found {_count(files)} to save ({total})")
        else:
            self.store.add_status_note(run.id, "No modified or new files found")
        self.store.set_status(run.id, Status.PUSHING, "Pushing")
        return replace(run, status=Status.PUSHING)

    def _step_pushing(self, run: ActiveRun, this: Pass) -> Step:
        request = self._request(run)
        listed = self._outputs.get(run.id)

        def push() -> list[OutputFile]:
            files = listed if listed is not None else self.backend.list_outputs(request)
            self.backend.save_outputs(request, files)
            return files

        done = self._background(run.id, "save", "save", push)
        if done is None:
            return Step.WAIT
        files = done.result()  # a failure is this step's error: the save is tried again
        if files:
            self.store.add_status_note(run.id, f"Saved {_count(files)} to runs/{run.id}")
        final, message, code = _final(run.requested_action, self._exit_code(run))
        if run.spec.kind == RunKind.WORKSPACE and final == Status.FAILED:
            final, message = Status.INTERRUPTED, f"Workspace interrupted (exit code {code})"
        self._end(run, final, message, code)
        return Step.ENDED

    # -- what the steps share --------------------------------------------------------------------

    def _request(self, run: ActiveRun) -> LaunchRequest:
        allocation = self.allocation_of(run)
        images = self._images(run)
        environment = self._environment_of(run, images) if images is not None else None
        workspace, kernel = run.spec.workspace, run.spec.kernel
        return LaunchRequest(
            run_id=run.id,
            command=run.spec.command,
            cwd=run.spec.cwd,
            envvars=run.spec.envvars,
            gpu_indices=allocation.gpu_indices,
            cpus=allocation.cpus,
            memory_mib=allocation.memory_mib,
            image=environment.image if environment else None,
            code=run.spec.code,
            mounts=tuple(MountRequest(m.resource, m.target(run.spec.cwd)) for m in run.spec.mounts),
            service_token=self.service_tokens.token(run.id) if workspace or kernel else None,
            service_ports=KERNEL_PORTS if kernel else 1,
            host_folder=kernel.folder if kernel else None,
            restore=f"runs/{workspace.resumes}" if workspace and workspace.resumes else None,
        )

    def _check_idle(self, run: ActiveRun, handle: dict, this: Pass) -> None:
        """Stop a workspace once it was idle for its idle timeout (asked of its Jupyter in
        the fetch pool, every idle_check_interval at most)."""
        workspace = run.spec.workspace
        if workspace is None or not workspace.idle_timeout_minutes or "address" not in handle:
            return
        limit = workspace.idle_timeout_minutes * 60
        now = time.monotonic()
        if now < self._idle_checks.get(run.id, 0.0) and (run.id, "idle") not in self._tasks:
            this.wake_at(self._idle_checks[run.id])
            return
        token = self.service_tokens.token(run.id)
        ask = partial(idle_seconds, handle["address"], workspace.base_url, token)
        done = self._background(run.id, "idle", "fetch", ask)
        if done is None:
            return
        idle = done.result() if done.exception() is None else None
        if idle is not None and idle >= limit:
            self.store.add_status_note(
                run.id,
                f"Idle for {workspace.idle_timeout_minutes:g} minutes (no kernel activity, "
                "no open client): stopping",
            )
            self.store.request_action(run.id, RunAction.STOP)
            self.wake(run.id)
            return
        wait = min(self.idle_check_interval, limit - (idle or 0.0))
        self._idle_checks[run.id] = time.monotonic() + max(wait, 0.05)
        this.wake_at(self._idle_checks[run.id])

    def _step_local_master(self, run: ActiveRun, this: Pass) -> None:
        """A --local master runs on its submitter's machine, which reports to the server
        (heartbeats, then its exit code, which ends it there); here it is only started, and
        ended `interrupted` when the reports stop."""
        if run.status == Status.MACHINE_REQUESTED:
            self.store.set_handle(run.id, SUBMITTER, {"heartbeat": time.time()})
            self.store.set_status(
                run.id, Status.RUNNING, "Running on the submitter's machine (--local)"
            )
            this.wake_at(time.monotonic() + self.local_master_timeout)
            return
        silent = time.time() - float((run.handle or {}).get("heartbeat", 0))
        if silent > self.local_master_timeout:
            self.store.set_status(
                run.id,
                Status.INTERRUPTED,
                f"The submitter's machine stopped reporting ({silent:.0f} s without a word)",
            )
            self.store.revoke_tokens(run.id)
            self.wake()
        else:
            this.wake_at(time.monotonic() + self.local_master_timeout - silent + 0.1)

    def _running_handles(self) -> dict[int, tuple[dict, list[int]]]:
        """The running runs' handles and GPUs (for sampling)."""
        return {
            run.id: (run.handle, list(self.allocation_of(run).gpu_indices))
            for run in self.store.active_runs()
            if run.status == Status.RUNNING and run.handle
        }

    def _launch(self, run: ActiveRun, request: LaunchRequest) -> dict:
        """Launch with a token of the run's own (a workflow's master may act on its workflow),
        valid until the run ends."""
        if self.run_api_dir is not None:
            scope = "workflow" if run.spec.kind == RunKind.WORKFLOW else "run"
            token = self.store.issue_token(run.id, scope)
            request = replace(request, api=RunApi(str(self.run_api_dir), token))
        return self.backend.launch(request)

    def _follow(self, run_id: int, handle: dict, cursor: str) -> None:
        """Start the run's log pump and follow its status events."""
        self.pumps[run_id] = LogPump(
            run_id=run_id,
            handle=handle,
            cursor=cursor,
            backend=self.backend,
            store=self.store,
            on_done=self.wake,
            on_error=self._made_room,
            log=self.log,
        ).start()
        self.backend.attach(run_id, handle)

    def _cancel(self, run: ActiveRun) -> Step:
        """A run stopped or killed before its process started."""
        final = Status.KILLED if run.requested_action == RunAction.KILL else Status.STOPPED
        self._placing_since.pop(run.id, None)
        self._end(run, final, f"Run {final.value} before it started", None, handle=None)
        return Step.ENDED

    def _end(
        self,
        run: ActiveRun,
        final: Status,
        message: str,
        exit_code: int | None,
        handle: dict | bool | None = True,
    ) -> None:
        """End the run: the backend cleans up in the save pool (removing a container takes a
        while), then the final status is set, so a final run has left nothing behind. Cut
        short, the run is finished again by the next leader (its outputs are saved already)."""
        self._stop_pump(run.id)
        self._ending[run.id] = (final, message, exit_code)
        handle = run.handle if handle is True else handle
        self._background(run.id, "end", "save", partial(self.backend.cleanup, run.id, handle))

    def _finish_ending(self, run: ActiveRun) -> None:
        done = self._background(run.id, "end", "save", lambda: None)  # begun by _end
        if done is None:
            return
        if done.exception() is not None:  # left for the leftover sweep
            self.log.warning(
                "Spell engine: cleaning up run %s failed: %s", run.id, done.exception()
            )
        final, message, exit_code = self._ending.pop(run.id)
        self.store.set_status(run.id, final, message, user_exit_code=exit_code)
        self.store.revoke_tokens(run.id)  # dead already (the run is final): now gone too
        self._forget(run.id)
        self.wake()  # its slot and machine are free: queued runs may start now

    def _cleanup(self, run_id: int, handle: dict | None) -> None:
        """Forget a final run; the backend cleans up in the save pool (a container's removal
        takes a while). Cut short, what is left is removed by the next leader's sweep."""
        self._forget(run_id)
        cleaning = self.pools["save"].submit(self.backend.cleanup, run_id, handle)
        cleaning.add_done_callback(partial(self._cleaned, run_id))

    def _cleaned(self, run_id: int, done: Future) -> None:
        error = done.exception()
        if error is not None:
            self.log.warning("Spell engine: cleaning up after run %s failed: %s", run_id, error)

    def _launching(self, run_id: int) -> bool:
        """Was the run's launch begun (its process may exist: it is not cut off, but stopped
        or killed once it runs)?"""
        return (run_id, "launch") in self._tasks

    def _background(
        self, run_id: int, what: str, pool: str, work: Callable[[], object]
    ) -> Future | None:
        """Start `work` in `pool` once per run; the future once it is done (then forgotten)."""
        key = (run_id, what)
        if key not in self._tasks:
            future = self.pools[pool].submit(work)
            self._tasks[key] = future
            future.add_done_callback(lambda _: self.wake(run_id))
        future = self._tasks[key]
        if not future.done():
            return None
        del self._tasks[key]
        return future

    def _fetch(self, run_id: int, what: str, work: Callable, expected: type, message: str):
        """Stage the run's code or mounts in the fetch pool: what it returned once it did,
        WAIT while it works, ENDED when it failed (build_failed for code, else mount_failed)."""
        done = self._background(run_id, what, "fetch", work)
        if done is None:
            return Step.WAIT
        final = Status.BUILD_FAILED if what == "code" else Status.MOUNT_FAILED
        if self._failed(run_id, done, expected, message, final):
            return Step.ENDED
        return done.result()

    def _failed(self, run_id: int, done: Future, expected: type, what: str, final: Status) -> bool:
        """End the run in `final` if its background work failed (the error in its log)."""
        error = done.exception()
        if error is None:
            return False
        message = str(error) if isinstance(error, expected) else repr(error)
        self.store.add_status_note(run_id, f"{what}: {message}")
        self.store.set_status(run_id, final, what)
        self._cleanup(run_id, None)
        return True

    def _note_waiting(self, run: ActiveRun, why: str) -> None:
        """Tell a queued run once why it waits (the first reason it meets)."""
        if run.id not in self._noted_waiting:
            self._noted_waiting.add(run.id)
            self.store.add_status_note(run.id, why)

    def allocation_of(self, run: ActiveRun) -> Allocation:
        if run.allocation:
            return Allocation.from_json(run.allocation)
        mtype = self.machine_types.types.get(run.spec.machine_type)  # runs from before 0002
        return Allocation(mtype.cpus, mtype.memory_mib) if mtype else Allocation(0, 0)

    def _images(self, run: ActiveRun) -> ImageBuilder | None:
        """The images the run runs in (on a cluster: its node's), None for a process."""
        return self.backend.images_for(run.allocation or {})

    def _environment_of(self, run: ActiveRun, images: ImageBuilder) -> Environment:
        """The run's environment, worked out (CA files read, context hashed) once per run."""
        if run.id not in self._environments:
            environment = environment_for(
                run.spec, self.frameworks, self.ca_files, self.pip_installer
            )
            if environment.context is not None:
                base_id = images.image_id(environment.base_image) or ""
                context = dataclasses.replace(environment.context, base_id=base_id)
                environment = dataclasses.replace(environment, context=context)
            self._environments[run.id] = environment
        return self._environments[run.id]

    def _prepare(self, run: ActiveRun, images: ImageBuilder) -> bool | None:
        """Make sure the run's image exists (where it runs: a cluster's node has its own):
        True when it does, None while it is being built or pulled (output streams into the
        run's logs), False when that failed."""
        run_id = run.id
        environment = self._environment_of(run, images)
        image = environment.image
        key = f"{(run.allocation or {}).get('node', '')}/{image}"
        build = self._builds.get(key)
        if build is None:
            if self._image_exists(key, image, images):
                if environment.context is not None:
                    self.store.add_status_note(run_id, f"Retrieving cached environment {image}")
                return True
            if environment.context is None:
                self.store.add_status_note(run_id, f"Pulling {image}")
                work = lambda sink: images.pull_image(image, sink)  # noqa: E731
            else:
                self.store.add_status_note(run_id, f"Building environment {image}")
                context = environment.context
                work = lambda sink: images.build_image(  # noqa: E731
                    context.dockerfile, context.files, image, sink
                )
            build = _Build(self.pools["build"].submit(self._build, run_id, work), run_id)
            build.future.add_done_callback(lambda _: self.wake())
            self._builds[key] = build
        if not build.future.done():
            if run_id != build.run_id and run_id not in self._noted_waiting:
                self._noted_waiting.add(run_id)
                self.store.add_status_note(
                    run_id, f"Waiting for environment {image}, which run {build.run_id} builds"
                )
            return None
        self._noted_waiting.discard(run_id)
        error = build.future.exception()
        if error is None:
            if run_id != build.run_id:
                self.store.add_status_note(run_id, f"Retrieving cached environment {image}")
            return True
        if run_id == build.run_id:
            self._builds.pop(key, None)  # a later run may try again
        message = str(error) if isinstance(error, BuildFailed) else repr(error)
        self.store.add_status_note(run_id, f"Build failed: {message}")
        self.store.set_status(run_id, Status.BUILD_FAILED, "Environment build failed")
        self._cleanup(run_id, None)
        return False

    def _image_exists(self, key: str, image: str, images: ImageBuilder) -> bool:
        """Whether the image exists, asked at most once a minute per image (and node) that
        did (one API call less per run; a removed image fails its launch, retried)."""
        now = time.monotonic()
        if now - self._images_seen.get(key, -math.inf) < IMAGE_RECHECK_SECONDS:
            return True
        if not images.has_image(image):
            return False
        self._images_seen[key] = now
        return True

    def _build(self, run_id: int, work) -> None:
        """Run a build or pull in a worker thread, its output batched into the run's logs."""
        pending: list[OutputLine] = []
        last = time.monotonic()

        def flush() -> None:
            nonlocal last
            if pending:
                self.store.append_output(run_id, list(pending))
                pending.clear()
            last = time.monotonic()

        def sink(line: str) -> None:
            pending.append(OutputLine(_now(), "build", line))
            if len(pending) >= 50 or time.monotonic() - last > 0.2:
                flush()

        try:
            work(sink)
        finally:
            flush()

    @staticmethod
    def _timed_out(run: ActiveRun) -> bool:
        limit = run.spec.timeout_minutes
        return (
            run.requested_action is None
            and limit is not None
            and _seconds_since(run.started_at) > limit * 60
        )

    def _carry_out_request(self, run: ActiveRun, handle: dict, this: Pass) -> None:
        """Signal a stop (SIGTERM, then SIGKILL after the grace period) or a kill, once each;
        a process not started yet is signalled again shortly."""
        if run.id in self._ended or run.requested_action is None:
            return
        now = time.monotonic()
        if run.requested_action == RunAction.STOP and run.id not in self._terminated:
            if not self.backend.signal(handle, signal.SIGTERM):
                this.wake_at(now + 0.1)
                return
            self._terminated.add(run.id)
            self.store.add_status_note(
                run.id, f"Stopping: sent SIGTERM, SIGKILL in {self.stop_grace_period:g}s"
            )
        if run.id in self._killed:
            return
        if run.requested_action == RunAction.STOP:
            left = self.stop_grace_period - _seconds_since(run.requested_at)
            if left > 0:
                this.wake_at(now + left + 0.01)
                return
        if self.backend.signal(handle, signal.SIGKILL):
            self._killed.add(run.id)
        else:
            this.wake_at(now + 0.1)

    def _exit_code(self, run: ActiveRun) -> int | None:
        """The exit code recorded when the run left `running` (asked of the backend for a run
        from before it was recorded)."""
        if run.user_exit_code is not None or not run.handle:
            return run.user_exit_code
        state = self.backend.status(run.handle)
        return state.exit_code if state.state == ProcessState.EXITED else None

    def sweep_leftovers(self) -> None:
        """Remove what runs left behind when their cleanup was cut short. Only runs the store
        says are no longer active are touched: if it does not answer, nothing is."""
        try:
            active = {r.id for r in self.store.active_runs()}
        except Exception:
            self.log.exception("Spell engine: the store did not answer; nothing was swept")
            return
        for run_id in self.backend.remove_leftovers(active):
            self.log.info("Spell engine: removed what run %s left behind", run_id)

    def _made_room(self, exc: BaseException) -> bool:
        """When the disk is full, free the engine's reserve so the step can be tried again
        (and the run's end recorded); whether that was done."""
        if is_disk_full(exc) and self.disk_reserve.release():
            self.log.warning(
                "Spell engine: the disk of %s is full; released %s to go on",
                self.home,
                self.disk_reserve.path,
            )
            return True
        return False

    def _on_error(self, run: ActiveRun, exc: Exception) -> None:
        if self._made_room(exc):
            return  # the next pass tries this step again, with room
        count = self._errors.get(run.id, 0) + 1
        self._errors[run.id] = count
        self.log.exception("Spell engine: run %s failed a step (%s in a row)", run.id, count)
        self.wake(run.id)
        if count >= MAX_CONSECUTIVE_ERRORS:
            self.store.add_status_note(run.id, f"The engine could not advance this run: {exc}")
            self.store.set_status(run.id, Status.FAILED, f"Run failed: {exc}")
            self._errors.pop(run.id, None)
            self._cleanup(run.id, run.handle)


@dataclass(frozen=True)
class _Build:
    future: Future
    run_id: int  # the run whose logs show the build


def _final(action: RunAction | None, exit_code: int | None) -> tuple[Status, str, int | None]:
    if action == RunAction.STOP:
        return Status.STOPPED, "Run stopped", exit_code
    if exit_code is None:
        return Status.INTERRUPTED, "Run interrupted", None
    if exit_code == 0:
        return Status.COMPLETE, "Run complete", 0
    return Status.FAILED, f"Run failed with exit code {exit_code}", exit_code


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _seconds_since(when: datetime | None) -> float:
    if when is None:
        return 0.0
    return (_now() - when).total_seconds()


def _count(files: list) -> str:
    return f"{len(files)} file{'s' if len(files) != 1 else ''}"
