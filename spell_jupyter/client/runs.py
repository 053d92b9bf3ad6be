"""Runs in the Python API, with Spell's names: `client.runs.new(...)`, `Run.wait_status(...)`."""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..code_snapshot import CodeError, holds_file
from ..notebook_runs import shipped_name
from ..status import FINAL_STATUSES, Status
from ..stop_conditions import parse_stop_conditions
from .environment import read_text_file, top_level_packages
from .errors import InvalidArgument, UnsupportedArgument, WaitError
from .notebooks import prepare_notebook
from .transport import STREAM_TIMEOUT, quote_segment

if TYPE_CHECKING:
    from . import SpellClient

# Every other keyword of Spell's runs.new: not built yet, so passing one is an error that names
# it (never silently ignored).
NOT_YET_SUPPORTED = (
    "auto_resume",
    "distributed",
    "idempotent",
    "provider",
    "run_type",
    "workflow_id",
    "workspace_id",
)
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute_params(command: str, params: dict[str, object] | None) -> str:
    """Spell's params: each `:name:` in the command (or `:NAME:`, upper-cased) becomes its
    value."""
    if not params:
        return command
    if not isinstance(params, dict):
        raise InvalidArgument("params must be a dict of {name: value}")
    for name, value in params.items():
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            raise InvalidArgument(
                f"param name {name!r} must be letters, digits and _ (it fills :{name}: in the "
                "command)"
            )
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidArgument(f"param {name} must be a string or a number, not {value!r}")
        found = [p for p in dict.fromkeys((f":{name}:", f":{name.upper()}:")) if p in command]
        if not found:
            raise InvalidArgument(f"param {name}: the command has no :{name}: to replace")
        for placeholder in found:
            command = command.replace(placeholder, str(value))
    return command


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class LogEntry:
    """One log line: user output, or a status event when `status_event` is true."""

    def __init__(self, data: dict):
        self.raw = data
        self.offset: int = data["offset"]
        self.timestamp = _parse_time(data["timestamp"])
        self.status: str = data["status"]
        self.status_event: bool = data["status_event"]
        self.level: str = data["level"]
        self.stream: str | None = data.get("stream")
        self.text: str = data["text"]
        self.log: str = self.text  # Spell's name

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"LogEntry(offset={self.offset}, status={self.status!r}, text={self.text!r})"


class Run:
    """A run. Attributes are as of the last `refresh()`."""

    def __init__(self, client: SpellClient, data: dict):
        self._client = client
        self._update(data)

    def _update(self, data: dict) -> None:
        self.raw = data
        self.id: int = data["id"]
        self.status: str = data["status"]
        self.status_message: str = data.get("status_message", "")
        self.user_exit_code: int | None = data.get("user_exit_code")
        self.command: str = data["command"]
        self.kind: str = data["kind"]
        self.created_at = _parse_time(data["created_at"])
        self.started_at = _parse_time(data.get("started_at"))
        self.ended_at = _parse_time(data.get("ended_at"))
        self.labels: list[str] = data.get("labels", [])
        self.environment_vars: dict[str, str] = data["spec"].get("envvars", {})
        self.description: str = data.get("description", "")
        self.project: str | None = data["spec"].get("project")
        self.machine_type: str = data.get("machine_type", "")
        self.archived: bool = data.get("archived", False)
        self.workflow_id: int | None = data.get("workflow_id")
        self.search_id: int | None = data.get("search_id")
        spec = data["spec"]
        code = spec.get("code") or {}
        self.commit_hash: str | None = code.get("commit")
        self.git_commit_hash = self.commit_hash  # Spell's name
        self.repository: str | None = code.get("repository")
        self.has_patch: bool = bool(code.get("patch"))
        self.github_url: str | None = code.get("github_url")
        self.docker_image: str | None = spec.get("docker_image")
        self.framework: str = spec.get("framework", "default")
        self.pip_packages: list[str] = spec.get("pip_packages", [])
        self.apt_packages: list[str] = spec.get("apt_packages", [])
        self.attached_resources: dict[str, str] = {
            m["resource"]: m.get("path") or "" for m in spec.get("mounts", [])
        }
        self.hyper_params: dict = spec.get("hyper_params", {})
        self.stop_conditions: list[str] = spec.get("stop_conditions", [])
        self.tensorboard_directory: str | None = spec.get("tensorboard_dir")
        self.owner: str | None = data.get("owner")  # the user who created it
        self.creator = self.owner  # Spell's name
        self.already_existed: bool = False  # Spell's idempotent runs; every run here is new
        self.status_history: list[dict] = [
            {**change, "at": _parse_time(change["at"])} for change in data.get("status_history", [])
        ]

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.status}>"

    @property
    def gpu(self) -> str | None:
        """The GPU model of the run's machine type (None for CPU types), as Spell's `gpu`."""
        return self._client.machine_type_gpus().get(self.machine_type)

    @property
    def tensorboard_url(self) -> str | None:
        """Where the server shows the run's TensorBoard (runs with a tensorboard_directory)."""
        if self.tensorboard_directory is None:
            return None
        return self._client.base_url.rstrip("/") + f"/spell/runs/{self.id}/tensorboard/"

    @property
    def outputs_url(self) -> str:
        """The REST listing of the run's outputs (runs/<id> in SpellFS)."""
        return self._http.url(f"resources/runs/{self.id}")

    def _repr_html_(self) -> str:
        """The run as a table in a notebook (any HTML frontend)."""
        from .run_html import run_html

        return run_html(self)

    def __str__(self) -> str:
        labels = f" [{', '.join(self.labels)}]" if self.labels else ""
        return f"Run {self.id} ({self.status}, {self.machine_type}): {self.command}{labels}"

    @property
    def _http(self):
        return self._client.transport

    def refresh(self) -> None:
        self._update(self._http.json("GET", f"runs/{self.id}"))

    def wait_status(self, *statuses: str, timeout: float | None = None) -> None:
        """Block until the run is in one of `statuses`; WaitError if it ends in another."""
        wanted = {str(getattr(s, "value", s)) for s in statuses}
        unknown = wanted - set(RunsService.ALL)
        if unknown:
            raise ValueError(f"unknown status {sorted(unknown)}: use the RunsService constants")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, deadline - time.monotonic())
            data = self._http.json(
                "GET",
                f"runs/{self.id}/wait",
                params={"status": sorted(wanted), "timeout": int(min(left, 30.0))},
                timeout=min(left, 30.0) + 30,
            )
            self._update(data)
            if self.status in wanted:
                return
            if self.status in RunsService.FINAL:
                raise WaitError(
                    f"run {self.id} ended {self.status}, not {' or '.join(sorted(wanted))}"
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {self.status} after {timeout}s")

    def wait_change(self, timeout: int = 30) -> bool:
        """Block until the run's status is another than it is now, at most `timeout` seconds
        (a long poll: no polling here); whether it changed. The attributes are refreshed."""
        before = self.status
        others = [s for s in RunsService.ALL if s != before]
        data = self._http.json(
            "GET",
            f"runs/{self.id}/wait",
            params={"status": others, "timeout": int(timeout)},
            timeout=timeout + 30,
        )
        self._update(data)
        return self.status != before

    def logs(
        self, follow: bool = False, offset: int = 0, tail: int | None = None
    ) -> Iterator[LogEntry]:
        """The run's log entries from `offset` (a negative one counts from the end, as
        Spell's did), or the last `tail`; `follow` until it ends."""
        if offset < 0:
            offset, tail = 0, -offset if tail is None else min(tail, -offset)
        params: dict = {"follow": str(follow).lower(), "offset": offset}
        if tail is not None:
            params["tail"] = tail
        timeout = STREAM_TIMEOUT if follow else 0
        for data in self._http.ndjson(f"runs/{self.id}/logs", params, timeout=timeout):
            yield LogEntry(data)

    def metrics(
        self, metric_name: str, follow: bool = False, start: int | datetime | None = None
    ) -> Iterator[tuple[datetime, int, float | str]]:
        """The metric's values as (timestamp, index, value), in the order they arrived, from
        index `start` (or, given a datetime, from that time); `follow` until the run ends."""
        params: dict = {"follow": str(follow).lower()}
        since = None
        if isinstance(start, datetime):
            since = start
        elif start is not None:
            params["start"] = int(start)
        timeout = STREAM_TIMEOUT if follow else 0
        path = f"runs/{self.id}/metrics/{quote_segment(metric_name)}"
        for timestamp, index, value in self._http.ndjson(path, params, timeout=timeout):
            when = _parse_time(timestamp)
            if since is None or when >= since:
                yield when, index, value

    def metric_names(self) -> list[dict]:
        """Each metric of the run: name, count, and its last index, timestamp and value."""
        return self._http.json("GET", f"runs/{self.id}/metrics")["metrics"]

    def wait_metric(self, metric_name: str, condition: str, value: float) -> None:
        """Block until a value of the metric meets `condition` (RunsService.LESS_THAN, ...)
        against `value`; WaitError if the run ends first."""
        compare = METRIC_CONDITIONS.get(condition)
        if compare is None:
            raise ValueError(
                f"unknown condition {condition!r}: use one of {', '.join(RunsService.CONDITIONS)}"
            )
        for _, _, sent in self.metrics(metric_name, follow=True):
            if isinstance(sent, int | float) and compare(sent, value):
                return
        self.refresh()
        raise WaitError(
            f"run {self.id} ended {self.status} before {metric_name} {condition} {value}"
        )

    def stop(self) -> None:
        self._update(self._http.json("POST", f"runs/{self.id}/stop"))

    def kill(self) -> None:
        self._update(self._http.json("POST", f"runs/{self.id}/kill"))

    def add_label(self, label: str) -> None:
        self._update(self._http.json("PUT", f"runs/{self.id}/labels/{quote_segment(label)}"))

    def remove_label(self, label: str) -> None:
        self._update(self._http.json("DELETE", f"runs/{self.id}/labels/{quote_segment(label)}"))

    def archive(self) -> None:
        self._update(self._http.json("POST", f"runs/{self.id}/archive"))

    def patch(self) -> bytes:
        """The uncommitted changes (a git patch) the run's code was made with."""
        return self._http.request("GET", f"runs/{self.id}/patch").read()

    def stats(self) -> dict:
        """One sample of the running run's CPU %, memory, network and block I/O (and GPUs)."""
        return self._http.json("GET", f"runs/{self.id}/stats")

    def cp(
        self, source_path: str = "", destination_directory: str | None = None, quiet: bool = False
    ) -> list[str]:
        """Copy `runs/<id>/<source_path>` into `destination_directory` (default: cwd)."""
        path = f"runs/{self.id}/{source_path.strip('/')}".rstrip("/")
        return self._client.resources.cp(path, destination_directory or ".", quiet=quiet)


METRIC_CONDITIONS = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class RunsService:
    """`client.runs`: create, find and list runs."""

    MACHINE_REQUESTED = Status.MACHINE_REQUESTED.value
    BUILDING = Status.BUILDING.value
    MOUNTING = Status.MOUNTING.value
    RUNNING = Status.RUNNING.value
    SAVING = Status.SAVING.value
    PUSHING = Status.PUSHING.value
    COMPLETE = Status.COMPLETE.value
    FAILED = Status.FAILED.value
    BUILD_FAILED = Status.BUILD_FAILED.value
    MOUNT_FAILED = Status.MOUNT_FAILED.value
    STOPPED = Status.STOPPED.value
    KILLED = Status.KILLED.value
    INTERRUPTED = Status.INTERRUPTED.value
    FINAL = tuple(s.value for s in Status if s in FINAL_STATUSES)
    ALL = [s.value for s in Status]

    # Conditions of `Run.wait_metric`, with Spell's names and values.
    EQUALS = "eq"
    GREATER_THAN = "gt"
    GREATER_THAN_EQUALS = "gte"
    LESS_THAN = "lt"
    LESS_THAN_EQUALS = "lte"
    CONDITIONS = (EQUALS, GREATER_THAN, GREATER_THAN_EQUALS, LESS_THAN, LESS_THAN_EQUALS)

    def __init__(self, client: SpellClient):
        self._client = client

    def new(self, command: str, **kwargs) -> Run:
        """Create a run of `command` (run by /bin/sh -c) and return it at once.

        The environment is `framework`'s image plus `apt_packages`, `pip_packages`, a
        `requirements_file`, a `conda_file` and (with `deps_from_env`) this Python
        environment's top-level packages; or `docker_image` alone. `timeout` is in minutes.

        Code: with `cwd` (a local folder) or `commit_ref`/`commit_hash`, the git repository the
        folder is in is sent: the commit (HEAD by default) plus, for HEAD, the uncommitted
        changes; the run starts in the same subfolder. `github_url` (+ `github_ref`) is cloned
        by the server instead. `attached_resources` is Spell's {resource: mount path};
        `mounts` takes `RESOURCE[:PATH]` strings. `params` ({name: value}) replaces each
        `:NAME:` in the command, as Spell did. `stop_conditions` (['loss < 0.1:100', ...])
        stop the run once one holds. Inside a workflow, `commit_label` starts the run with the
        workflow's repository of that label.
        """
        return self._create(*self.body(command, **kwargs))

    def body(
        self,
        command: str,
        *,
        envvars: dict[str, str] | None = None,
        labels: list[str] | None = None,
        description: str | None = None,
        machine_type: str = "CPU",
        cwd: str | None = None,
        framework: str | None = None,
        docker_image: str | None = None,
        apt_packages: list[str] | None = None,
        pip_packages: list[str] | None = None,
        requirements_file: str | None = None,
        conda_file: str | None = None,
        deps_from_env: bool = False,
        timeout: float | None = None,
        attached_resources: dict[str, str] | None = None,
        mounts: list[str] | None = None,
        commit_ref: str | None = None,
        commit_hash: str | None = None,
        github_url: str | None = None,
        github_ref: str | None = None,
        params: dict[str, object] | None = None,
        stop_conditions: list[str] | None = None,
        commit_label: str | None = None,
        project: str | None = None,
        tensorboard_directory: str | None = None,
        **unsupported,
    ) -> tuple[dict, list[str]]:
        """The REST body of a new run from `new`'s keywords, and warnings about its code."""
        for name in unsupported:
            if name in NOT_YET_SUPPORTED:
                raise UnsupportedArgument(
                    f"runs.new({name}=...) is a Spell option this version does not support yet"
                )
            raise UnsupportedArgument(f"runs.new() got an unknown keyword argument {name!r}")
        command = substitute_params(command, params)
        body = {
            "command": command,
            "envvars": dict(envvars or {}),
            "labels": list(labels or []),
            "description": description or "",
            "machine_type": machine_type,
            "framework": framework or "default",
            "docker_image": docker_image,
            "apt_packages": list(apt_packages or []),
            "pip_packages": list(pip_packages or []),
            "timeout_minutes": timeout,
        }
        if requirements_file is not None:
            body["requirements"] = read_text_file(requirements_file, "requirements file")
        if conda_file is not None:
            body["conda_env"] = read_text_file(conda_file, "conda file")
        if deps_from_env:
            body["pip_from_env"] = top_level_packages()
        body["mounts"] = mount_list(attached_resources, mounts)
        if stop_conditions:
            try:
                parse_stop_conditions(list(stop_conditions))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            body["stop_conditions"] = list(stop_conditions)
        if project is not None:
            body["project"] = project
        if tensorboard_directory is not None:
            body["tensorboard_dir"] = tensorboard_directory
        if commit_label is not None:
            if cwd is not None or commit_ref or commit_hash or github_url:
                raise InvalidArgument("commit_label names the code: leave out cwd/commit_ref")
            body["commit_label"] = commit_label
        local_code = self._read_code(cwd, commit_ref or commit_hash, github_url)
        body["code"], body["cwd"], warnings = self.code(
            cwd, commit_ref or commit_hash, github_url, github_ref, local_code
        )
        remote_code = bool(github_url or commit_label)  # the notebook is in code cloned there
        notebook = prepare_notebook(
            command,
            None if remote_code else Path(cwd or "."),
            lambda path: holds_file(local_code, path),
        )
        if notebook is not None:
            body["command"] = notebook.command
            warnings += notebook.warnings
            if notebook.shipped:
                name = shipped_name(notebook.local.read_bytes(), notebook.local.name)
                resource = self._client.resources.upload_once(notebook.local, name)
                body["mounts"].append({"resource": resource, "path": notebook.path})
        return body, warnings

    @staticmethod
    def _read_code(folder: str | None, commit_ref: str | None, url: str | None):
        if url or (folder is None and not commit_ref):
            return None
        from ..code_snapshot import read_code

        try:
            return read_code(folder or ".", commit_ref)
        except CodeError as exc:
            raise InvalidArgument(str(exc)) from None

    def _create(self, body: dict, warnings: list[str]) -> Run:
        run = Run(self._client, self._client.transport.json("POST", "runs", json=body))
        run.code_warnings = warnings
        return run

    def code(
        self,
        folder: str | None,
        commit_ref: str | None,
        url: str | None,
        ref: str | None,
        local=False,
    ) -> tuple[dict | None, str, list[str]]:
        """(the spec's code, the run's starting folder, warnings for the user); `local` is the
        LocalCode already read, when it was."""
        if url:
            if folder is not None or commit_ref:
                raise InvalidArgument("github_url clones its own code: leave out cwd/commit_ref")
            name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
            repository = "".join(c if c.isalnum() or c in "_.-" else "-" for c in name) or "code"
            code = {"repository": repository, "github_url": url, "github_ref": ref}
            return code, repository, []
        if ref:
            raise InvalidArgument("github_ref needs github_url")
        if folder is None and not commit_ref:
            return None, "", []
        if local is False:
            local = self._read_code(folder, commit_ref, url)
        if local is None:
            if commit_ref:
                raise InvalidArgument(f"{folder or '.'} is not in a git repository")
            return None, "", []
        code = {
            "repository": local.repository,
            "commit": local.commit,
            "archive": self._send_blob(local.archive),
            "patch": self._send_blob(local.patch) if local.patch else None,
        }
        warnings = list(local.warnings)
        if local.untracked:
            shown = ", ".join(local.untracked[:20])
            more = f" and {len(local.untracked) - 20} more" if len(local.untracked) > 20 else ""
            warnings.append(
                f"{len(local.untracked)} untracked file(s) are not part of the run: "
                f"{shown}{more} (git add them to include them)"
            )
        return code, local.cwd, warnings

    def _send_blob(self, data: bytes) -> str:
        """Store a code archive or patch on the server once (it is named by its sha256)."""
        import hashlib

        from .errors import APIError

        digest = hashlib.sha256(data).hexdigest()
        try:
            self._client.transport.request("HEAD", f"code/{digest}")
            return digest
        except APIError as exc:
            if exc.status_code != 404:
                raise
        return self._client.transport.json("POST", "code", content=data)["digest"]

    def get(self, id: int) -> Run:
        return Run(self._client, self._client.transport.json("GET", f"runs/{int(id)}"))

    def list(
        self,
        number: int = 50,
        labels: list[str] | None = None,
        statuses: list[str] | None = None,
        kinds: list[str] | None = None,
        archived: bool | None = False,
        offset: int = 0,
        project: str | None = None,
        mine: bool = False,
        creator: str | None = None,
    ) -> list[Run]:
        """The newest `number` runs with any of `labels`, any of `statuses`, any of `kinds`,
        in `project`; with `mine`, those the caller created; with `creator`, that user's."""
        params: dict = {
            "project": project,
            "owner": creator,
            "mine": "true" if mine else None,
            "limit": number,
            "offset": offset,
            "label": list(labels or []),
            "status": list(statuses or []),
            "kind": list(kinds or []),
            "archived": "any" if archived is None else str(archived).lower(),
        }
        page = self._client.transport.json("GET", "runs", params=params)
        return [Run(self._client, data) for data in page["runs"]]


def mount_list(attached: dict[str, str] | None, mounts: list[str] | None) -> list[dict]:
    """Spell's attached_resources {resource: path} and RESOURCE[:PATH] strings, as the spec's
    mounts (the server validates them)."""
    from ..fs.paths import split_mount

    found = [{"resource": r, "path": p or ""} for r, p in (attached or {}).items()]
    for text in mounts or []:
        resource, path = split_mount(text)
        found.append({"resource": resource, "path": path})
    return found
