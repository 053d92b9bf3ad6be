"""What the client reads from the submitter's machine for a run's environment."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .errors import InvalidArgument

MAX_FILE = 1 << 20  # the server refuses larger requirements/conda files too


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a requirements or conda file, or an error naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE:
            raise InvalidArgument(f"the {what} {path} is larger than 1 MiB")
        return path.read_text()
    except FileNotFoundError:
        raise InvalidArgument(f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgument(f"the {what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"the {what} {path} is not a UTF-8 text file") from None


def top_level_packages() -> list[str]:
    """`name==version` of each installed distribution no other installed one requires: what a
    user installed by hand in the active virtualenv or conda env."""
    versions: dict[str, tuple[str, str]] = {}
    required: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if not name:
            continue
        versions[_canonical(name)] = (name, dist.version)
        for requirement in dist.requires or []:
            if "extra ==" in requirement.replace("extra==", "extra =="):
                continue  # only needed for an optional extra
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match:
                required.add(_canonical(match.group(1)))
    return sorted(
        f"{name}=={version}"
        for key, (name, version) in versions.items()
        if key not in required and not _is_local_version(version)
    )


def _is_local_version(version: str) -> bool:
    return "+" in version and "dev" in version  # editable/dev builds cannot be installed by pip


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
