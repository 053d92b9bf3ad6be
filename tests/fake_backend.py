"""FakeBackend: the Backend interface over in-memory processes the test drives (print, exit,
vanish), with gates that hold any step (staging, launch, build, save) until the test opens
them. The engine cannot tell it from a real backend: the same methods, events and cursors."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from spell_jupyter.backends.base import (
    Backend,
    BuildFailed,
    ImageBuilder,
    LaunchRequest,
    OutputBatches,
    OutputFile,
    ProcessState,
    ProcessStatus,
    StagedCode,
    StatusListener,
)
from spell_jupyter.models import OutputLine


@dataclass
class FakeProcess:
    run_id: int
    request: LaunchRequest
    lines: list[OutputLine] = field(default_factory=list)
    state: ProcessState = ProcessState.RUNNING
    exit_code: int | None = None
    ignores_sigterm: bool = False
    signals: list[int] = field(default_factory=list)


class Gate:
    """Holds a step until opened; a step can also be told to fail."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.opened.set()

    def close(self) -> Gate:
        self.opened.clear()
        return self

    def pass_through(self) -> None:
        self.entered.set()
        assert self.opened.wait(30), "a test never opened a gate"


class FakeBackend(Backend, ImageBuilder):
    name = "fake"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.processes: dict[int, FakeProcess] = {}
        self.changed = threading.Condition()
        self.on_change: StatusListener | None = None
        self.gates: dict[str, Gate] = {}
        self.failures: dict[str, Exception] = {}  # step -> the error it raises (once)
        self.broken: dict[str, Exception] = {}  # step -> the error it raises every time
        self.images_built: set[str] = {"fake/base"}
        self.saved: dict[int, list[OutputFile]] = {}
        self.outputs: dict[int, list[OutputFile]] = {}  # what each run "wrote"
        self.cleaned: list[int] = []
        self.launches: list[int] = []
        self.events: list[str] = []  # the order steps finished in, across runs
        self.leftovers: set[int] = set()

    # -- what tests call -------------------------------------------------------------------------

    def gate(self, step: str) -> Gate:
        return self.gates.setdefault(step, Gate())

    def print(self, run_id: int, *texts: str, stream: str = "stdout") -> None:
        with self.changed:
            now = datetime.now(timezone.utc)
            self.processes[run_id].lines += [OutputLine(now, stream, t) for t in texts]
            self.changed.notify_all()

    def exit(self, run_id: int, code: int) -> None:
        self._end(run_id, ProcessState.EXITED, code)

    def vanish(self, run_id: int) -> None:
        self._end(run_id, ProcessState.LOST, None)

    def _end(self, run_id: int, state: ProcessState, code: int | None) -> None:
        with self.changed:
            process = self.processes[run_id]
            process.state, process.exit_code = state, code
            self.changed.notify_all()
        if self.on_change is not None:
            self.on_change(run_id)

    def _step(self, name: str) -> None:
        if name in self.gates:
            self.gates[name].pass_through()
        error = self.failures.pop(name, None) or self.broken.get(name)
        if error is not None:
            raise error

    # -- Backend ---------------------------------------------------------------------------------

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        self._step("code")
        assert request.code is not None
        return StagedCode(request.code.commit or "0" * 40, ["a warning"])

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        self._step("mounts")
        return [f"Mounting {m.resource} at {m.target} (fake)" for m in request.mounts]

    def launch(self, request: LaunchRequest) -> dict:
        self._step("launch")
        with self.changed:
            self.launches.append(request.run_id)
            self.processes.setdefault(request.run_id, FakeProcess(request.run_id, request))
        return {"fake": request.run_id}

    def status(self, handle: dict) -> ProcessStatus:
        process = self.processes.get(handle["fake"])
        if process is None:
            return ProcessStatus(ProcessState.LOST, None, "no such process")
        return ProcessStatus(process.state, process.exit_code)

    def watch(self, on_change: StatusListener) -> None:
        self.on_change = on_change

    def follow_output(self, handle: dict, cursor: str, stop: threading.Event) -> OutputBatches:
        process = self.processes[handle["fake"]]
        position = int(cursor or 0)
        while not stop.is_set():
            with self.changed:
                if position >= len(process.lines) and process.state == ProcessState.RUNNING:
                    self.changed.wait(0.5)
                lines = process.lines[position:]
                ended = process.state != ProcessState.RUNNING
            if lines:
                self._step("follow_output")  # a read that fails (told by the test)
                position += len(lines)
                yield lines, str(position)
            elif ended:
                return

    def signal(self, handle: dict, signum: int) -> bool:
        process = self.processes[handle["fake"]]
        process.signals.append(signum)
        if signum == signal.SIGKILL or not process.ignores_sigterm:
            self.exit(process.run_id, 128 + signum)
        return True

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        self._step("list")
        return list(self.outputs.get(request.run_id, []))

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        self._step("save")
        self.saved[request.run_id] = files
        self.events.append(f"saved {request.run_id}")

    def cleanup(self, run_id: int, handle: dict | None) -> None:
        self.cleaned.append(run_id)

    def remove_leftovers(self, active_run_ids: set[int]) -> list[int]:
        removed = sorted(self.leftovers - active_run_ids)
        self.leftovers -= set(removed)
        return removed

    # -- ImageBuilder ----------------------------------------------------------------------------

    def has_image(self, image: str) -> bool:
        return image in self.images_built

    def pull_image(self, image: str, on_line: Callable[[str], None]) -> None:
        raise BuildFailed(f"could not pull {image}: there is no registry here")

    def build_image(
        self, dockerfile: str, files: dict[str, bytes], tag: str, on_line: Callable[[str], None]
    ) -> None:
        on_line(f"building {tag}")
        self._step(f"build {files.get('requirements.txt', b'').decode().strip()}")
        self.images_built.add(tag)
        self.events.append(f"built {tag}")
