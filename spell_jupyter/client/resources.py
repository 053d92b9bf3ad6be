"""SpellFS in the Python API: `client.resources.ls(...)` and `.cp(...)`."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..fs.paths import BadPath, normalize
from .transport import STREAM_TIMEOUT, quote_path

if TYPE_CHECKING:
    from . import SpellClient


class ResourcesService:
    def __init__(self, client: SpellClient):
        self._client = client

    def ls(self, path: str = "") -> list[dict]:
        """Entries of a SpellFS folder (or the one entry of a file): path, name, type, size."""
        clean = _checked(path)
        target = f"resources/{quote_path(clean)}" if clean else "resources"
        return self._client.transport.json("GET", target)["entries"]

    def cp(self, path: str, destination_directory: str = ".", force: bool = False) -> list[str]:
        """Copy a SpellFS file or folder into a local folder; returns the files written.

        Existing files are kept unless `force`; the copy streams as one tar."""
        clean = _checked(path)
        if not clean:
            raise ValueError("give a SpellFS path to copy, such as runs/1")
        dest = Path(destination_directory)
        dest.mkdir(parents=True, exist_ok=True)
        response = self._client.transport.request(
            "GET", f"download/{quote_path(clean)}", stream=True, timeout=STREAM_TIMEOUT
        )
        written: list[str] = []
        with response, tarfile.open(fileobj=response.raw, mode="r|") as tar:
            for member in tar:
                target = dest / member.name
                if member.isfile() and target.exists() and not force:
                    raise FileExistsError(
                        f"{target} exists: use force=True (spell cp -f) to overwrite it"
                    )
                tar.extract(member, dest, filter="data")
                if member.isfile():
                    written.append(os.fspath(target))
        return written


def _checked(path: str) -> str:
    try:
        return normalize(path)
    except BadPath as exc:
        raise ValueError(str(exc)) from None
