"""HostBackend: the middle layer of backends whose runs execute on this host (Docker, local).

Each run gets a working folder under `$SPELL_HOME/work/<id>`: its code is unpacked there, its
mounts are resolved to folders on this host (bucket and S3 resources fetched into a cache), a
manifest records the folder as the run starts, and afterwards what is new or changed (and what
the run wrote under its folder mounts) is saved into SpellFS. A backend placing runs elsewhere
(a cluster) implements the same operations with its own staging.
"""

from __future__ import annotations

import json
import shutil
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from traitlets import Unicode

from ..models import WORKDIR, saved_path
from .base import Backend, LaunchRequest, MountFailed, OutputFile, StagedCode
from .code_sync import check_out
from .mounting import MountSources
from .outputs import changed_files, mount_writes, write_manifest


@dataclass(frozen=True)
class HostMount:
    """A resource at `source` on this host, shown at `target`; writes under a folder mount go
    to `upper` (the source never changes), `scratch` is overlayfs' work folder beside it."""

    source: Path
    target: str
    upper: Path
    scratch: Path

    @property
    def is_dir(self) -> bool:
        return self.source.is_dir()

    def workdir_relative(self) -> str | None:
        """The target relative to the working directory, or None when it is outside it."""
        if self.target == WORKDIR or not self.target.startswith(WORKDIR + "/"):
            return None
        return self.target[len(WORKDIR) + 1 :]


class HostBackend(Backend):
    """Stages runs in folders of this host; subclasses start and follow the processes."""

    state_root = Unicode(help="The data directory's folder for this backend's state").tag(
        config=True
    )
    service_bind = Unicode(
        "127.0.0.1",
        help="The address a serving run (workspace, kernel) listens on: this host alone by "
        "default; a Ray node's own address, so the leading server reaches it from its host",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.state_root:
            self.state_root = str(self.home / self.name)
        self.work_root = self.home / "work"
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.mount_sources = MountSources(
            self.fs, self.home / "cache" / "mounts", self.bucket_options
        )

    # -- folders ---------------------------------------------------------------------------------

    def workdir(self, run_id: int) -> Path:
        return self.work_root / str(run_id)

    def local_folder(self, run_id: int) -> Path | None:
        return self.workdir(run_id)

    def _mounts_dir(self, run_id: int) -> Path:
        return self.work_root / f"{run_id}.mounts"

    def _manifest(self, run_id: int) -> Path:
        return self.work_root / f"{run_id}.manifest.json"

    # -- staging ---------------------------------------------------------------------------------

    def stage_code(self, request: LaunchRequest) -> StagedCode:
        code = request.code
        assert code is not None
        commit, warnings = check_out(
            code, self.workdir(request.run_id) / code.repository, self.fs.read_blob
        )
        return StagedCode(commit, warnings)

    def stage_mounts(self, request: LaunchRequest) -> list[str]:
        """Resolve every mount to a folder of this host, make them visible (or ready to be),
        then record the working folder as the run starts. Done once: a resumed launch finds
        the manifest and says nothing again."""
        workdir = self.workdir(request.run_id)
        notes = []
        if not self._manifest(request.run_id).exists():
            (workdir / request.cwd).mkdir(parents=True, exist_ok=True)
            mounts = []
            for index, mount in enumerate(request.mounts):
                source = self.mount_sources.source_of(mount.resource)
                notes.append(f"Mounting {mount.resource} at {mount.target} ({source.how})")
                mounts.append(self._host_mount(request.run_id, index, mount.target, source.path))
            if mounts:
                self._write_sources(request.run_id, mounts)
                notes.append(f"Mounts: {self.place_mounts(workdir, tuple(mounts))}")
            write_manifest(workdir, self._manifest(request.run_id))
        if request.restore and not self._restored(request.run_id).exists():
            notes.append(self._restore(request))
        return notes

    def _restored(self, run_id: int) -> Path:
        return self.work_root / f"{run_id}.restored"

    def _restore(self, request: LaunchRequest) -> str:
        """Copy an earlier run's outputs into the working folder after the manifest was
        written (so they are saved again as this run's outputs), where its outputs came from:
        the code's folder when there is code. Copied again whole if cut short."""
        assert request.restore is not None
        if not self.fs.exists(request.restore):  # the earlier run saved no file
            self._restored(request.run_id).touch()
            return f"{request.restore} holds no files to restore"
        source = self.mount_sources.source_of(request.restore).path
        dest = self.workdir(request.run_id) / (request.repository or "")
        if source.is_dir():
            shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
        self._restored(request.run_id).touch()
        return f"Restored the files of {request.restore}"

    def _host_mount(self, run_id: int, index: int, target: str, source: Path) -> HostMount:
        folder = self._mounts_dir(run_id) / str(index)
        return HostMount(source, target, folder / "upper", folder / "work")

    def _write_sources(self, run_id: int, mounts: list[HostMount]) -> None:
        folder = self._mounts_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sources.json").write_text(json.dumps([str(m.source) for m in mounts]))

    def host_mounts(self, request: LaunchRequest) -> tuple[HostMount, ...]:
        """The mounts as `stage_mounts` resolved them."""
        if not request.mounts:
            return ()
        try:
            sources = json.loads((self._mounts_dir(request.run_id) / "sources.json").read_text())
        except FileNotFoundError:
            raise MountFailed("the mounts were never staged (start the run again)") from None
        return tuple(
            self._host_mount(request.run_id, index, mount.target, Path(source))
            for index, (mount, source) in enumerate(zip(request.mounts, sources, strict=True))
        )

    @abstractmethod
    def place_mounts(self, workdir: Path, mounts: tuple[HostMount, ...]) -> str:
        """Make the mounts visible (or ready to be) before the working folder is recorded;
        a line for the run's log saying how."""

    # -- outputs ---------------------------------------------------------------------------------

    def list_outputs(self, request: LaunchRequest) -> list[OutputFile]:
        """Files new or changed in the working folder, and what the run wrote under its folder
        mounts (the overlays' upper folders)."""
        workdir = self.workdir(request.run_id)
        repository = request.repository
        found = [
            OutputFile(str(workdir / rel), saved_path(rel, repository), size)
            for rel, size in changed_files(workdir, self._manifest(request.run_id))
        ]
        for index, mount in enumerate(request.mounts):
            target = mount.target
            base = target[len(WORKDIR) + 1 :] if target.startswith(WORKDIR + "/") else target[1:]
            upper = self._mounts_dir(request.run_id) / str(index) / "upper"
            found += [
                OutputFile(str(upper / rel), saved_path(f"{base}/{rel}", repository), size)
                for rel, size in mount_writes(upper)
            ]
        return found

    def save_outputs(self, request: LaunchRequest, files: list[OutputFile]) -> None:
        """Move (local root) or push the files to runs/<id>."""
        self.fs.save_run_outputs(
            request.run_id, self.workdir(request.run_id), [(f.source, f.path) for f in files]
        )

    # -- forgetting ------------------------------------------------------------------------------

    def cleanup(self, run_id: int, handle: dict | None) -> None:
        if handle:
            self.release(handle)
        shutil.rmtree(self.workdir(run_id), ignore_errors=True)
        shutil.rmtree(self._mounts_dir(run_id), ignore_errors=True)
        self._manifest(run_id).unlink(missing_ok=True)
        self._restored(run_id).unlink(missing_ok=True)

    @abstractmethod
    def release(self, handle: dict) -> None:
        """Remove the process's own leftovers (a container, a supervisor's folder)."""

    def remove_leftovers(self, active_run_ids: set[int]) -> list[int]:
        removed = set(self.remove_orphans(active_run_ids))
        for entry in self.work_root.iterdir():
            run_id = entry.name.split(".", 1)[0]
            if run_id.isdigit() and int(run_id) not in active_run_ids:
                removed.add(int(run_id))
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        return sorted(removed)

    def remove_orphans(self, active_run_ids: set[int]) -> list[int]:
        """Remove processes (containers) of runs that are no longer active; their IDs."""
        return []
