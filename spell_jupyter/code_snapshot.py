"""A run's code as it is read where the run is asked for (GitPython): a folder's repository, the
commit to run, its uncommitted changes as a patch, and the files git does not track. Shared by the
client (`spell run` here) and the server (a run asked for from a file of the Lab's root).

The commit travels as a tar archive, stored by its sha256 so each commit is sent once."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path


class CodeError(ValueError):
    """Code that cannot be read as asked (no commits yet, a bare repository, no such ref)."""


@dataclass
class LocalCode:
    """What a run's code is made of, read from a local repository."""

    repository: str  # the folder name the code is unpacked into
    root: Path
    commit: str
    archive: bytes
    patch: bytes | None
    subdir: str  # where the user is, relative to the repository's top
    untracked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    with_changes: bool = False  # HEAD plus the working tree's changes (no --commit-ref)

    @property
    def cwd(self) -> str:
        """The run's starting folder, relative to /spell."""
        return f"{self.repository}/{self.subdir}".rstrip("/") if self.subdir else self.repository


def find_repository(folder: str | os.PathLike[str]):
    """The git repository `folder` is in, or None."""
    import git

    try:
        return git.Repo(folder, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def read_code(folder: str | os.PathLike[str], commit_ref: str | None = None) -> LocalCode | None:
    """The code of the repository `folder` is in (None outside one): `commit_ref` (default
    HEAD) and, for HEAD, the uncommitted changes to tracked files as a binary-safe patch."""
    import git

    repo = find_repository(folder)
    if repo is None:
        return None
    if repo.bare or repo.working_tree_dir is None:
        raise CodeError(f"{folder} is in a bare repository: run from a checkout")
    root = Path(repo.working_tree_dir).resolve()
    try:
        commit = repo.commit(commit_ref or "HEAD")
    except (git.BadName, ValueError, git.GitCommandError):
        if commit_ref:
            raise CodeError(f"--commit-ref {commit_ref!r} names no commit in {root}") from None
        raise CodeError(
            f"the repository {root} has no commits yet: commit your code first"
        ) from None
    archive = io.BytesIO()
    repo.archive(archive, treeish=commit.hexsha, format="tar")
    patch = None
    if commit_ref is None:
        diff = repo.git.diff("HEAD", "--binary", "--full-index", stdout_as_string=False)
        if diff.strip():
            patch = diff if diff.endswith(b"\n") else diff + b"\n"
    here = Path(folder).resolve()
    subdir = here.relative_to(root).as_posix() if here != root else ""
    return LocalCode(
        repository=_folder_name(root.name),
        root=root,
        commit=commit.hexsha,
        archive=archive.getvalue(),
        patch=patch,
        subdir="" if subdir == "." else subdir,
        untracked=sorted(repo.untracked_files),
        warnings=_warnings(root, commit),
        with_changes=commit_ref is None,
    )


def _warnings(root: Path, commit) -> list[str]:
    warnings = []
    try:
        attributes = (commit.tree / ".gitattributes").data_stream.read().decode(errors="replace")
    except KeyError:
        attributes = ""
    if "filter=lfs" in attributes:
        warnings.append(
            "this repository uses Git LFS: LFS files reach the run as pointers; upload the "
            "data (spell upload) and mount it instead"
        )
    try:
        commit.tree / ".gitmodules"
        warnings.append("this repository has submodules: they are not part of the run's code")
    except KeyError:
        pass
    return warnings


def _folder_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "_.-" else "-" for c in name).lstrip(".-")
    return clean or "code"


def blob_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def holds_file(code: LocalCode | None, path: Path) -> bool:
    """Whether the run made from `code` has the file at local `path`: in its commit, or (for
    HEAD) added to git since (the patch carries it). Untracked and ignored files are not."""
    import git

    if code is None:
        return False
    try:
        rel = path.resolve().relative_to(code.root).as_posix()
    except ValueError:
        return False
    repo = git.Repo(code.root)
    if code.with_changes:
        try:
            repo.git.ls_files("--error-unmatch", "--", rel)
            return True
        except git.GitCommandError:
            return False
    try:
        repo.commit(code.commit).tree / rel
        return True
    except KeyError:
        return False
