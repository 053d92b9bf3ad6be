"""The shared vocabulary: runs, their statuses, specs and log entries (pydantic v2).

Validation of anything a user sends lives here, so REST, the engine and tests agree on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .status import FINAL_STATUSES, RunAction, RunKind, Status

__all__ = ["FINAL_STATUSES", "RunAction", "RunKind", "Status"]


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@+-]{0,63}$")

Label = Annotated[str, StringConstraints(strip_whitespace=True)]


def check_label(value: str) -> str:
    """A label: 1-64 characters, letters, digits, space and `_ . : @ + -`, no leading symbol."""
    value = value.strip()
    if not LABEL.match(value):
        raise ValueError(
            f"invalid label {value!r}: use 1-64 letters, digits, spaces or _ . : @ + - "
            "and start with a letter or digit"
        )
    return value


def check_relative_path(value: str, what: str) -> str:
    """A relative POSIX path that stays inside its root (no `..`, not absolute); '' is the root."""
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL bytes")
    if value.startswith("/"):
        raise ValueError(f"{what} must be a relative path, not {value!r}")
    parts = PurePosixPath(value).parts
    if ".." in parts:
        raise ValueError(f"{what} must not contain '..': {value!r}")
    return "/".join(p for p in parts if p != ".")


class RunSpec(BaseModel):
    """What a user asks for: the body of `POST /spell/api/v1/runs`."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(description="A shell command, run with /bin/sh -c")
    envvars: dict[str, str] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    description: str = Field(default="", max_length=2000)
    machine_type: str = "CPU"
    cwd: str = Field(default="", description="Subdirectory of the run's working directory")
    kind: RunKind = RunKind.RUN

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the command is empty: give the command to run")
        if "\x00" in value:
            raise ValueError("the command must not contain NUL bytes")
        return value

    @field_validator("envvars")
    @classmethod
    def _envvars(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not ENV_NAME.match(name):
                raise ValueError(
                    f"invalid environment variable name {name!r}: use letters, digits and _"
                )
            if "\x00" in val:
                raise ValueError(f"environment variable {name} must not contain NUL bytes")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(check_label(v) for v in value))

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str) -> str:
        return check_relative_path(value, "cwd")


class StatusChange(BaseModel):
    """One step of a run's status history."""

    status: Status
    at: datetime
    message: str = ""


class Run(BaseModel):
    """A run as the store knows it."""

    id: int
    kind: RunKind
    command: str
    spec: RunSpec
    status: Status
    status_message: str = ""
    status_history: list[StatusChange] = Field(default_factory=list)
    user_exit_code: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    labels: list[str] = Field(default_factory=list)
    description: str = ""
    machine_type: str = "CPU"
    archived: bool = False
    requested_action: RunAction | None = None
    backend: str | None = None
    allocation: dict | None = Field(
        default=None, description="Resources held while running: cpus, memory_mib, gpus"
    )


class LogEntry(BaseModel):
    """One numbered log line: user output or a status event (Spell's LogEntry fields)."""

    offset: int
    timestamp: datetime
    status: Status
    status_event: bool = False
    level: str = "info"
    stream: str | None = None
    text: str


class RunPage(BaseModel):
    """A page of runs, newest first."""

    runs: list[Run]
    total: int
    offset: int
    limit: int


class FileInfo(BaseModel):
    """An entry of a SpellFS listing."""

    path: str
    name: str
    type: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class OutputLine:
    """A line of user output as a backend captured it."""

    timestamp: datetime
    stream: str
    text: str
