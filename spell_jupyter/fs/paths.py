"""SpellFS path rules: relative, no `..`, under a known namespace.

Import-light: the CLI and the client use it."""

from __future__ import annotations

from pathlib import PurePosixPath

NAMESPACES = ("runs", "uploads", "public")


class BadPath(ValueError):
    """A SpellFS path that would leave SpellFS or names nothing it has."""


def normalize(path: str) -> str:
    """`runs/3/out/` -> `runs/3/out`; '' is the root. Raises BadPath for escapes."""
    if "\x00" in path:
        raise BadPath("a SpellFS path must not contain NUL bytes")
    if path.startswith(("/", "~")) or "\\" in path:
        raise BadPath(
            f"{path!r} is not a SpellFS path: use a relative path such as runs/1 or uploads/data"
        )
    parts = [p for p in PurePosixPath(path).parts if p not in ("", ".")]
    if ".." in parts:
        raise BadPath(f"{path!r} leaves SpellFS: '..' is not allowed in SpellFS paths")
    if parts and parts[0] not in NAMESPACES:
        raise BadPath(
            f"{path!r} is not in SpellFS: paths start with one of {', '.join(NAMESPACES)}"
        )
    if len(parts) >= 2 and parts[0] == "runs" and not parts[1].isdigit():
        raise BadPath(f"{path!r}: runs are named by their numeric ID, as in runs/12")
    return "/".join(parts)


def run_path(run_id: int) -> str:
    return f"runs/{run_id}"
