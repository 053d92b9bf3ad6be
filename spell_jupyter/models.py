"""The shared vocabulary: runs, their statuses, specs and log entries (pydantic v2).

Validation of anything a user sends lives here, so REST, the engine and tests agree on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from .fs.paths import BUCKET_URL, BadPath, check_name_lengths, normalize, split_mount
from .search_spec import SearchSpec, check_placeholders
from .status import FINAL_STATUSES, RunAction, RunKind, Status
from .stop_conditions import parse_stop_conditions

__all__ = ["FINAL_STATUSES", "RunAction", "RunKind", "Status"]


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@+-]{0,63}$")

# Package names and image references go into files and API calls, never into a shell; these
# patterns still refuse anything that is not plainly a name, so mistakes fail before a build.
APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
_VERSION_CLAUSE = r"\s*(==|>=|<=|!=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+"
PIP_SPEC = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,\s*[A-Za-z0-9._-]+)*\])?"
    rf"({_VERSION_CLAUSE}(\s*,{_VERSION_CLAUSE})*)?$"
)
DOCKER_IMAGE = re.compile(
    r"^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
FRAMEWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
GIT_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@+-]{0,199}$")
GIT_URL = re.compile(r"^((https?|git|ssh|file)://[^\s]+|[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[^\s]+)$")
REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # a URL path segment as it is
WORKDIR = "/spell"  # a run's working directory inside its container
HIDDEN_ENV_PREFIXES = ("SPELL_", "JPY_", "JUPYTER_TOKEN")  # the server's own, never a run's
RESERVED_MOUNT_TARGETS = ("/", WORKDIR, "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/lib")
MAX_ENV_FILE = 1 << 20  # bytes of a requirements or conda file


def visible_envvars(env: dict[str, str]) -> dict[str, str]:
    """`env` without the server's own variables (its token, its data directory)."""
    return {k: v for k, v in env.items() if not k.startswith(HIDDEN_ENV_PREFIXES)}


def check_apt_package(value: str) -> str:
    if not APT_PACKAGE.fullmatch(value):
        raise ValueError(
            f"invalid apt package {value!r}: give a Debian package name such as jq or "
            "libsndfile1 (optionally name=version), nothing else"
        )
    return value


def check_pip_spec(value: str) -> str:
    value = value.strip()
    if not PIP_SPEC.fullmatch(value):
        raise ValueError(
            f"invalid pip package {value!r}: give a name with optional extras and version "
            "specifiers (==, >=, <=, <, >), e.g. 'torch==2.5.1' or 'six>=1.16,<2'"
        )
    return value


def check_env_file(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError(f"the {what} must be a text file (it contains NUL bytes)")
    if len(value.encode()) > MAX_ENV_FILE:
        raise ValueError(f"the {what} is larger than {MAX_ENV_FILE >> 20} MiB")
    return value


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


def check_repo_label(value: str) -> str:
    """A workflow repository's label (`--repo LABEL=PATH`)."""
    if not REPOSITORY_NAME.fullmatch(value):
        raise ValueError(
            f"invalid repository label {value!r}: letters, digits, '_', '.', '-' (at most 100)"
        )
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, e.g. `labels.0: invalid label ...`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def saved_path(rel: str, repository: str | None) -> str:
    """Where a file at `rel` (under the run's working folder, /spell) is saved under
    runs/<id>: relative to the repository's folder when the run has code, as Spell did (files
    saved in /spell/<repo> land in runs/<id>; a subfolder keeps its name), else as it is."""
    if repository and (rel == repository or rel.startswith(repository + "/")):
        return rel[len(repository) + 1 :]
    return rel


def check_workspace_name(value: str) -> str:
    """A workspace's name: it is a segment of the workspace's URL, /spell/workspaces/<name>/."""
    if not WORKSPACE_NAME.fullmatch(value):
        raise ValueError(
            f"invalid workspace name {value!r}: use 1-63 letters, digits, _ or -, starting with "
            "a letter or digit (it becomes part of the workspace's URL)"
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
    check_name_lengths(parts, what)
    return "/".join(p for p in parts if p != ".")


# The kernel's limits: one argument or environment string (MAX_ARG_STRLEN), and a share of
# ARG_MAX (2 MiB here) left for the environment beside a command of the longest length.
MAX_ARGUMENT = 128 * 1024
MAX_ENVIRONMENT = 1024 * 1024


class Mount(BaseModel):
    """`RESOURCE[:PATH]`: a SpellFS path (runs/<id>[/sub], uploads/…, public/…, a link alias)
    or a bucket URL, shown at PATH: the resource's name under the working directory when PATH
    is empty, under the working directory when relative, as given when absolute."""

    model_config = ConfigDict(extra="forbid")

    resource: str
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Mount:
        """`runs/3/out:/mnt/out`, `uploads/data`, `s3://bucket/prefix:data`."""
        resource, path = split_mount(text)
        return cls(resource=resource, path=path)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        value = value.strip()
        if BUCKET_URL.match(value):
            scheme, _, rest = value.partition("://")
            if scheme not in ("s3", "gs", "file") or not rest.strip("/") or ".." in rest.split("/"):
                raise ValueError(
                    f"invalid bucket URL {value!r}: give s3://bucket[/prefix] (or gs://, file://)"
                )
            return value.rstrip("/")
        try:
            clean = normalize(value)
        except BadPath as exc:
            raise ValueError(str(exc)) from None
        if clean in ("", "runs", "uploads", "public"):
            raise ValueError(
                f"mount {value!r} names a whole namespace: mount runs/<id>, uploads/<name>, "
                "public/<path> or a link alias"
            )
        return clean

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if "\x00" in value or ".." in PurePosixPath(value).parts:
            raise ValueError(f"invalid mount path {value!r}: '..' and NUL are not allowed")
        return value.rstrip("/") if value not in ("", "/") else value

    def target(self, cwd: str) -> str:
        """The absolute path inside the run where the resource appears."""
        base = PurePosixPath(WORKDIR, cwd)
        if not self.path:
            name = self.resource.rstrip("/").rsplit("/", 1)[-1]
            return str(base / name)
        return str(PurePosixPath(self.path) if self.path.startswith("/") else base / self.path)

    def __str__(self) -> str:
        return f"{self.resource}:{self.path}" if self.path else self.resource


class CodeSpec(BaseModel):
    """The code a run starts with: a commit (sent as an archive) plus the uncommitted changes
    as a patch, or a git URL at a ref that the engine clones. Unpacked at /spell/<repository>."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(description="The folder name the code is unpacked into")
    commit: str | None = Field(default=None, description="The commit hash (40 hex digits)")
    archive: str | None = Field(default=None, description="sha256 of the commit's tar (POST /code)")
    patch: str | None = Field(default=None, description="sha256 of the uncommitted changes")
    github_url: str | None = None
    github_ref: str | None = None

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not REPOSITORY_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"invalid repository name {value!r}")
        return value

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        if value is not None and not COMMIT.fullmatch(value):
            raise ValueError(f"invalid commit hash {value!r}: give 40 hex digits")
        return value

    @field_validator("archive", "patch")
    @classmethod
    def _blob(cls, value: str | None) -> str | None:
        if value is not None and not SHA256.fullmatch(value):
            raise ValueError(f"{value!r} is not the sha256 of an uploaded code blob")
        return value

    @field_validator("github_url")
    @classmethod
    def _github_url(cls, value: str | None) -> str | None:
        if value is not None and not GIT_URL.fullmatch(value):
            raise ValueError(
                f"invalid git URL {value!r}: give https://…, ssh://…, git://…, file://… or "
                "user@host:path"
            )
        return value

    @field_validator("github_ref")
    @classmethod
    def _github_ref(cls, value: str | None) -> str | None:
        if value is not None and (not GIT_REF.fullmatch(value) or ".." in value):
            raise ValueError(f"invalid git ref {value!r}: give a branch, tag or commit hash")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CodeSpec:
        if self.github_url:
            if self.archive or self.patch:
                raise ValueError("code comes from a git URL or from an archive, not both")
        elif not (self.archive and self.commit):
            raise ValueError("code needs a commit and its archive, or a github_url")
        return self


class WorkspaceSpec(BaseModel):
    """What makes a run a workspace (kind workspace): Jupyter serving its working folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    notebook: StrictBool = Field(
        default=False, description="Jupyter Notebook 7 instead of JupyterLab"
    )
    idle_timeout_minutes: float | None = Field(
        default=None,
        gt=0,
        le=525600,
        description="Stop it (files saved) after this many minutes with no kernel activity "
        "and no open client",
    )
    resumes: int | None = Field(
        default=None, ge=1, description="The earlier run whose files it starts with"
    )
    base_url: str = Field(
        default="", description="The path the host serves it under (set by the server)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_workspace_name(value)


class KernelRunSpec(BaseModel):
    """What makes a run a remote kernel (kind kernel): ipykernel working in a folder of this
    host (its notebook's), read-write."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(description="The notebook's folder on this host (set by the server)")
    kernel_id: str = Field(default="", description="The Jupyter kernel it serves")


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
    framework: str = Field(default="default", description="Base image, by framework name")
    docker_image: str | None = Field(
        default=None, description="A custom image, used as it is (excludes every other field)"
    )
    apt_packages: list[str] = Field(default_factory=list)
    pip_packages: list[str] = Field(default_factory=list)
    requirements: str | None = Field(default=None, description="A requirements file's text")
    conda_env: str | None = Field(default=None, description="A conda environment file's text")
    pip_from_env: list[str] = Field(
        default_factory=list,
        description="The submitter's top-level packages (--deps-from-env); below requirements "
        "and pip_packages in precedence",
    )
    timeout_minutes: float | None = Field(
        default=None, gt=0, description="Stop the run (outputs saved) after this many minutes"
    )
    mounts: list[Mount] = Field(default_factory=list, description="Resources shown to the run")
    code: CodeSpec | None = Field(default=None, description="The code the run starts with")
    stop_conditions: list[str] = Field(
        default_factory=list,
        description="Stop the run (outputs saved) once one holds: 'METRIC OP NUMBER[:MIN_INDEX]', "
        "clauses joined by && (at most 5)",
    )
    repos: dict[str, CodeSpec] = Field(
        default_factory=dict,
        description="A workflow's repositories by label, snapshotted at submit (kind workflow)",
    )
    commit_label: str | None = Field(
        default=None,
        description="Inside a workflow: start with the workflow's repository of this label",
    )
    local: bool = Field(
        default=False,
        description="A workflow whose master runs on the submitter's machine (--local), "
        "reporting to the server; its workers are runs as any",
    )
    hyper_params: dict[str, StrictInt | float | StrictStr] = Field(
        default_factory=dict, description="The values of a search's parameters for this run"
    )
    project: str | None = Field(default=None, description="Spell's project the run is filed in")
    search: SearchSpec | None = Field(
        default=None, description="What a search runs (kind hyper): its runs fill :NAME:"
    )
    workspace: WorkspaceSpec | None = Field(
        default=None, description="What a workspace serves (kind workspace)"
    )
    kernel: KernelRunSpec | None = Field(
        default=None, description="What a remote kernel works in (kind kernel)"
    )
    tensorboard_dir: str | None = Field(
        default=None,
        description="Where the run writes TensorBoard logs (relative to cwd, or under /spell): "
        "served at <base_url>spell/runs/<id>/tensorboard/",
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the command is empty: give the command to run")
        if "\x00" in value:
            raise ValueError("the command must not contain NUL bytes")
        size = len(value.encode("utf-8", "surrogatepass"))
        if size >= MAX_ARGUMENT:
            raise ValueError(
                f"the command is {size} bytes: the system runs commands of at most "
                f"{MAX_ARGUMENT - 1} (put a longer script in a file of the run's code)"
            )
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
            if len(f"{name}={val}".encode("utf-8", "surrogatepass")) >= MAX_ARGUMENT:
                raise ValueError(
                    f"environment variable {name} is longer than the system allows "
                    f"({MAX_ARGUMENT - 1} bytes with its name)"
                )
        total = sum(len(f"{k}={v}".encode("utf-8", "surrogatepass")) + 1 for k, v in value.items())
        if total > MAX_ENVIRONMENT:
            raise ValueError(
                f"the environment variables take {total} bytes: at most {MAX_ENVIRONMENT} fit "
                "beside the command"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(check_label(v) for v in value))

    @field_validator("stop_conditions")
    @classmethod
    def _stop_conditions(cls, value: list[str]) -> list[str]:
        return [str(c) for c in parse_stop_conditions(value)]

    @field_validator("repos")
    @classmethod
    def _repos(cls, value: dict[str, CodeSpec]) -> dict[str, CodeSpec]:
        for label in value:
            check_repo_label(label)
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        if value is not None and not LABEL.fullmatch(value):
            raise ValueError(
                f"invalid project name {value!r}: letters, digits, spaces and _.:@+- "
                "(at most 64, starting with a letter or digit)"
            )
        return value

    @field_validator("commit_label")
    @classmethod
    def _commit_label(cls, value: str | None) -> str | None:
        return None if value is None else check_repo_label(value)

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str) -> str:
        return check_relative_path(value, "cwd")

    @field_validator("tensorboard_dir")
    @classmethod
    def _tensorboard_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value == WORKDIR or value.startswith(WORKDIR + "/"):
            return WORKDIR + "/" + check_relative_path(value[len(WORKDIR) + 1 :], "tensorboard_dir")
        if value.startswith("/"):
            raise ValueError(
                f"tensorboard_dir {value!r}: give a folder of the run's working directory "
                f"({WORKDIR}/...) or one relative to where the command starts"
            )
        return check_relative_path(value, "tensorboard_dir") or "."

    def tensorboard_folder(self) -> str | None:
        """The TensorBoard folder relative to the working directory (WORKDIR)."""
        if self.tensorboard_dir is None:
            return None
        if self.tensorboard_dir.startswith(WORKDIR):
            return self.tensorboard_dir[len(WORKDIR) + 1 :]
        joined = PurePosixPath(self.cwd or ".") / self.tensorboard_dir
        return check_relative_path(str(joined), "tensorboard_dir")

    def saved_tensorboard_folder(self) -> str | None:
        """Where the TensorBoard folder is saved under runs/<id> once the run ends."""
        folder = self.tensorboard_folder()
        if folder is None:
            return None
        return saved_path(folder, self.code.repository if self.code else None)

    @field_validator("framework")
    @classmethod
    def _framework(cls, value: str) -> str:
        if not FRAMEWORK.fullmatch(value):
            raise ValueError(f"invalid framework name {value!r}")
        return value

    @field_validator("docker_image")
    @classmethod
    def _docker_image(cls, value: str | None) -> str | None:
        if value is not None and not DOCKER_IMAGE.fullmatch(value):
            raise ValueError(
                f"invalid Docker image {value!r}: give a reference such as "
                "'ubuntu:22.04' or 'registry.example.com:5000/team/image:tag'"
            )
        return value

    @field_validator("apt_packages")
    @classmethod
    def _apt(cls, value: list[str]) -> list[str]:
        return sorted(set(map(check_apt_package, value)))

    @field_validator("pip_packages", "pip_from_env")
    @classmethod
    def _pip(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(map(check_pip_spec, value)))

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: str | None) -> str | None:
        return check_env_file(value, "requirements file")

    @field_validator("conda_env")
    @classmethod
    def _conda(cls, value: str | None) -> str | None:
        return check_env_file(value, "conda file")

    @model_validator(mode="after")
    def _mount_targets_differ(self) -> RunSpec:
        seen: dict[str, Mount] = {}
        for mount in self.mounts:
            target = mount.target(self.cwd)
            reserved = next(
                (
                    r
                    for r in RESERVED_MOUNT_TARGETS
                    if target == r or (r != "/" and r != WORKDIR and target.startswith(r + "/"))
                ),
                None,
            )
            if reserved:
                raise ValueError(f"mount {mount} cannot be placed at {target}: choose /mnt/...")
            if target in seen:
                raise ValueError(f"mounts {seen[target]} and {mount} both go to {target}")
            seen[target] = mount
        if self.code and not (self.cwd + "/").startswith(self.code.repository + "/"):
            raise ValueError(
                f"cwd {self.cwd!r} must be inside the code's folder {self.code.repository!r}"
            )
        return self

    @model_validator(mode="after")
    def _local_is_a_workflows(self) -> RunSpec:
        if self.local and self.kind != RunKind.WORKFLOW:
            raise ValueError("local is for a workflow's master (spell workflow --local)")
        return self

    @model_validator(mode="after")
    def _search_is_a_hyper_runs(self) -> RunSpec:
        if (self.search is not None) != (self.kind == RunKind.HYPER):
            raise ValueError("a search (kind hyper) and its search spec go together")
        if self.search is not None:
            check_placeholders(self.command, self.search.params)
        return self

    @model_validator(mode="after")
    def _workspace_is_a_workspaces(self) -> RunSpec:
        if (self.workspace is not None) != (self.kind == RunKind.WORKSPACE):
            raise ValueError("a workspace (kind workspace) and its workspace spec go together")
        if (self.kernel is not None) != (self.kind == RunKind.KERNEL):
            raise ValueError("a remote kernel (kind kernel) and its kernel spec go together")
        return self

    @model_validator(mode="after")
    def _custom_image_is_exclusive(self) -> RunSpec:
        if self.docker_image is None:
            return self
        clashes = [
            flag
            for flag, given in (
                ("--framework", self.framework != "default"),
                ("--apt", self.apt_packages),
                ("--pip", self.pip_packages),
                ("--pip-req", self.requirements is not None),
                ("--conda-file", self.conda_env is not None),
                ("--deps-from-env", self.pip_from_env),
            )
            if given
        ]
        if clashes:
            raise ValueError(
                f"--docker-image cannot be combined with {', '.join(clashes)}: "
                "install those packages in the image instead"
            )
        return self

    @property
    def wants_environment(self) -> bool:
        """Does it name an image or packages (anything a plain local process cannot give)?"""
        return bool(
            self.docker_image
            or self.framework != "default"
            or self.apt_packages
            or self.pip_packages
            or self.pip_from_env
            or self.requirements is not None
            or self.conda_env is not None
        )


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
    workflow_id: int | None = Field(
        default=None, description="The workflow (its master run's ID) the run belongs to"
    )
    search_id: int | None = Field(
        default=None, description="The hyperparameter search the run belongs to"
    )
    owner: str | None = Field(
        default=None, description="The Jupyter user who created the run (its creator)"
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
    """An entry of a SpellFS listing; links carry their target."""

    path: str
    name: str
    type: str
    size: int
    modified: datetime | None = None
    target: str | None = None


@dataclass(frozen=True)
class OutputLine:
    """A line of user output as a backend captured it."""

    timestamp: datetime
    stream: str
    text: str


# -- REST request bodies (one model per request, as the handlers take them) ---------------------


class UploadFile(BaseModel):
    """One file an upload declares: its path in the upload ('' for a file upload), size, and
    mode when it has one to keep (0o755 keeps a script executable)."""

    path: StrictStr = ""
    size: int
    mode: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        size = data.get("size") if isinstance(data, dict) else None
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError("each file of an upload is {path: str, size: int}")
        if size < 0:
            raise ValueError(f"{data.get('path', '')!r} has a negative size")
        mode = data.get("mode")
        if mode is not None and (
            isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777
        ):
            raise ValueError(f"a file mode is an integer from 0 to 0o7777, not {mode!r}")
        return data


class BeginUpload(BaseModel):
    """POST /uploads: begin (or resume) an upload."""

    name: StrictStr
    files: list[UploadFile]
    force: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        if isinstance(data, dict):
            if not isinstance(data.get("name"), str):
                raise ValueError("an upload needs a name")
            if not isinstance(data.get("files"), list) or not data["files"]:
                raise ValueError("an upload declares its files: [{path, size}, ...]")
        return data


class LocalSource(BaseModel):
    """A client's file as it described it: absolute path, inode and modification time."""

    path: StrictStr
    inode: StrictInt
    mtime_ns: StrictInt

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        if not (
            isinstance(data, dict)
            and isinstance(data.get("path"), str)
            and isinstance(data.get("inode"), int)
            and isinstance(data.get("mtime_ns"), int)
        ):
            raise ValueError("a local source is {path: str, inode: int, mtime_ns: int}")
        if not data["path"].startswith("/"):
            raise ValueError(f"a local source path is absolute, not {data['path']!r}")
        return data


class CopyFile(BaseModel):
    """`length` bytes at `offset` of a client's file, for the upload's file `path`."""

    path: StrictStr = ""
    offset: int
    length: int
    source: LocalSource

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        if not isinstance(data, dict) or not isinstance(data.get("path", ""), str):
            raise ValueError("each file of a copy is {path, offset, length, source}")
        offset, length = data.get("offset"), data.get("length")
        if not (
            isinstance(offset, int)
            and isinstance(length, int)
            and not isinstance(offset, bool)
            and not isinstance(length, bool)
            and offset >= 0
            and length > 0
        ):
            raise ValueError("a copy gives a byte range: {offset: int >= 0, length: int > 0}")
        return data


class CopyIntoUpload(BaseModel):
    """POST /uploads/copy: byte ranges of files on the server's host, into an upload."""

    name: StrictStr
    files: list[CopyFile]

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        if isinstance(data, dict) and (
            not isinstance(data.get("name"), str)
            or not isinstance(data.get("files"), list)
            or not data["files"]
        ):
            raise ValueError("a copy names its upload and files: {name, files: [...]}")
        return data


class CommitUpload(BaseModel):
    """POST /uploads/commit: make a complete upload uploads/<name>."""

    name: StrictStr
    force: StrictBool = False


class PrepareRun(BaseModel):
    """POST /lab/prepare-run: the run of a file of the Jupyter server's folder."""

    path: StrictStr = Field(description="The .py, .sh or .ipynb file, as the Lab names it")


class LinkRequest(BaseModel):
    """PUT /links/<alias>: what the alias points at."""

    target: StrictStr


METRIC_NAME_MAX = 128
MAX_METRIC_TEXT = 4096
MAX_METRIC_BATCH = 10_000
HARDWARE_METRIC_PREFIX = "spell/"  # the engine's own samples (spell/cpu_percent, ...)


def check_metric_name(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("a metric name is empty")
    if len(value) > METRIC_NAME_MAX:
        raise ValueError(
            f"a metric name is at most {METRIC_NAME_MAX} characters: {value[:40]!r}..."
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"metric name {value!r} holds control characters")
    return value


class MetricValue(BaseModel):
    """One value a run sends: a finite number or a text, at an index (counted on when left
    out), at a time (the server's when left out)."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    value: StrictInt | float | StrictStr
    index: StrictInt | None = Field(default=None, ge=0, le=2**62)
    timestamp: datetime | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_metric_name(value)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"a metric value is a number or a text, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a metric value must be finite (NaN and infinities are refused)")
        if isinstance(value, int) and abs(value) > 2**53:
            raise ValueError("an integer metric value is at most 2**53 in size (a float keeps it)")
        if isinstance(value, str) and len(value) > MAX_METRIC_TEXT:
            raise ValueError(f"a text metric value is at most {MAX_METRIC_TEXT} characters")
        return value


class SendMetrics(BaseModel):
    """POST /runs/<id>/metrics: a batch of values."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricValue] = Field(max_length=MAX_METRIC_BATCH)


class LocalReport(BaseModel):
    """POST /workflows/<id>/local from the submitter running a --local master: a heartbeat,
    a request for the master's token, or its exit code."""

    model_config = ConfigDict(extra="forbid")

    token: StrictBool = False
    exit_code: StrictInt | None = Field(default=None, ge=-255, le=255)


class NewWorkspace(BaseModel):
    """POST /workspaces: start a workspace, or resume it with the files its last run saved.
    `spec` holds what any run takes (machine type, environment, mounts, code) except the
    command and kind, which are the workspace's own."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    notebook: StrictBool = False
    idle_timeout_minutes: float | None = Field(default=None, gt=0, le=525600)
    spec: dict = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_workspace_name(value)

    @field_validator("spec")
    @classmethod
    def _spec(cls, value: dict) -> dict:
        taken = sorted({"command", "kind", "workspace"} & set(value))
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: a workspace's command and kind are its own (Jupyter); "
                "leave them out"
            )
        return value


class Workspace(BaseModel):
    """A workspace: its name and its newest run (the live one while it runs)."""

    name: str
    run: Run
    url: str = Field(description="Where the host's Jupyter server serves it (a path)")
    runs: list[int] = Field(description="Its runs, newest first: each resumed the one before")
    ready: bool = Field(default=False, description="Its Jupyter answers (through the proxy)")
