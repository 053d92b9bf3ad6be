"""Code sync: a run's code is a commit (sent as a tar archive) plus the uncommitted changes (a
patch), or a git URL at a ref, unpacked into the run's working folder as <repository>/."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..models import CodeSpec
from .base import CodeFailed


def check_out(
    code: CodeSpec, dest: Path, read_blob: Callable[[str], bytes]
) -> tuple[str, list[str]]:
    """Put the run's code at `dest`; returns (the commit, warnings for the run's log)."""
    if dest.exists():
        shutil.rmtree(dest)  # a resumed launch starts the code again
    dest.mkdir(parents=True)
    if code.github_url:
        return _clone(code.github_url, code.github_ref, dest)
    assert code.archive and code.commit  # RunSpec guarantees it
    with tarfile.open(fileobj=io.BytesIO(read_blob(code.archive)), mode="r:*") as tar:
        tar.extractall(dest, filter="data")
    if code.patch:
        _apply(read_blob(code.patch), dest)
    return code.commit, []


def _apply(patch: bytes, dest: Path) -> None:
    import git

    patch_file = dest.parent / f".{dest.name}.patch"
    patch_file.write_bytes(patch)
    try:
        git.Git(dest).apply("--whitespace=nowarn", str(patch_file))
    except git.GitCommandError as exc:
        raise CodeFailed(f"the uncommitted changes do not apply: {_stderr(exc)}") from None
    finally:
        patch_file.unlink(missing_ok=True)


def _clone(url: str, ref: str | None, dest: Path) -> tuple[str, list[str]]:
    import git

    try:
        repo = git.Repo.clone_from(url, dest, no_checkout=ref is not None)
        if ref is not None:
            repo.git.checkout(ref)
        commit = repo.head.commit.hexsha
        warnings = code_warnings(dest)
    except git.GitCommandError as exc:
        raise CodeFailed(
            f"git could not clone {url}" + (f" at {ref}" if ref else "") + f": {_stderr(exc)}"
        ) from None
    except ValueError as exc:  # e.g. an empty repository has no HEAD commit
        raise CodeFailed(f"git could not check out {url}: {exc}") from None
    shutil.rmtree(dest / ".git", ignore_errors=True)
    return commit, warnings


def code_warnings(tree: Path) -> list[str]:
    """Git LFS pointers and submodules are not fetched: say so."""
    warnings = []
    attributes = tree / ".gitattributes"
    if attributes.exists() and "filter=lfs" in attributes.read_text(errors="replace"):
        warnings.append(
            "the repository uses Git LFS: LFS files are pointers in the run; upload the data "
            "(spell upload) and mount it instead"
        )
    if (tree / ".gitmodules").exists():
        warnings.append("the repository has submodules: they are not included in the run's code")
    return warnings


def _stderr(exc) -> str:
    text = (getattr(exc, "stderr", "") or str(exc)).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
