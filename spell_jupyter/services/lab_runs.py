"""Runs asked for from a file of the Jupyter server's own folder ("Run on Spell" in JupyterLab's
file browser, the notebook toolbar): the run a `spell run` in that file's folder would make, as
a new-run form for the Lab's dialog to show and submit.

The code is the folder's as `spell run` takes it (the repository's commit and uncommitted changes,
stored as code blobs); a file git does not hold (outside git, untracked) is shipped with the run
(kept once by content under uploads/notebook-cells/) and mounted where the command expects it."""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from jupyter_core.paths import is_hidden

from ..code_snapshot import CodeError, holds_file, read_code
from ..errors import Conflict, InvalidInput, NotFound
from ..models import UploadFile
from ..notebook_runs import executor_command, read_notebook, shipped_name
from .spellfs import MAX_CHUNK, SpellFSManager

RUNNERS = {".py": "python", ".sh": "bash"}  # and .ipynb: executed as a notebook run
MAX_SHIPPED = 256 << 20  # bytes of a file sent with a run from here


class LabRuns:
    """Prepares runs of files under `root_dir` (the Jupyter server's root)."""

    def __init__(self, root_dir: str | Path, resources: SpellFSManager, allow_hidden: bool = False):
        """`allow_hidden`: the server's ContentsManager.allow_hidden (hidden files are run
        only where Jupyter shows them)."""
        self.root = Path(root_dir).resolve()
        self.resources = resources
        self.allow_hidden = allow_hidden

    def prepare(self, path: str) -> dict:
        """The new-run form for the file at `path` (relative to the root, as the Lab names it):
        {command, code, cwd, mounts, warnings}."""
        local = self._file(path)
        suffix = local.suffix.lower()
        try:
            if suffix == ".ipynb":
                read_notebook(local, path)
            code = read_code(local.parent)
        except (CodeError, ValueError) as exc:
            raise InvalidInput(str(exc)) from None
        form: dict = {"mounts": [], "warnings": [], "code": None, "cwd": ""}
        if code is not None:
            form["code"] = {
                "repository": code.repository,
                "commit": code.commit,
                "archive": self.resources.put_code_blob(code.archive),
                "patch": self.resources.put_code_blob(code.patch) if code.patch else None,
            }
            form["cwd"] = code.cwd
            form["warnings"] += code.warnings
        if not holds_file(code, local):
            form["mounts"].append({"resource": self._ship(local), "path": local.name})
            where = "in git" if code is None else "committed or added to git"
            form["warnings"].append(f"{path} is not {where}: it travels with the run as it is now")
        name = shlex.quote(local.name)
        form["command"] = (
            executor_command(local.name) if suffix == ".ipynb" else f"{RUNNERS[suffix]} {name}"
        )
        return form

    def _file(self, path: str) -> Path:
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise InvalidInput("name the file to run, relative to the Jupyter server's folder")
        rel = PurePosixPath(path.strip().lstrip("/"))
        if ".." in rel.parts:
            raise InvalidInput(f"{path!r}: the file must be inside the Jupyter server's folder")
        suffix = rel.suffix.lower()
        if suffix not in (*RUNNERS, ".ipynb"):
            raise InvalidInput(
                f"{path}: Spell runs .py and .sh files and .ipynb notebooks, not {suffix or 'this'}"
            )
        if not self.allow_hidden and is_hidden(str(self.root / rel), str(self.root)):
            raise InvalidInput(
                f"{path} is hidden: Jupyter serves hidden files only with "
                "ContentsManager.allow_hidden = True"
            )
        local = (self.root / rel).resolve()
        if not local.is_relative_to(self.root):
            raise InvalidInput(f"{path!r}: the file must be inside the Jupyter server's folder")
        if not local.is_file():
            raise NotFound(f"there is no file {path} in the Jupyter server's folder")
        return local

    def _ship(self, local: Path) -> str:
        """Keep `local` under uploads/notebook-cells/<digest>/ once; its SpellFS path."""
        data = local.read_bytes() if local.stat().st_size <= MAX_SHIPPED else None
        if data is None:
            raise InvalidInput(
                f"{local.name} is over {MAX_SHIPPED >> 20} MiB: commit it, or upload it "
                "(spell upload) and mount it"
            )
        name = shipped_name(data, local.name)
        path = f"uploads/{name}"
        try:
            if self.resources.fs.exists(path):
                return path  # that very content was sent before
            begun = self.resources.begin_upload(name, [UploadFile(path="", size=len(data))])
            held = begun["received"][""]  # a cut attempt resumes
            while held < len(data):
                held = self.resources.upload_chunk(name, "", held, data[held : held + MAX_CHUNK])
            return self.resources.commit_upload(name)
        except Conflict:
            if self.resources.fs.exists(path):
                return path  # sent meanwhile by another request
            raise
