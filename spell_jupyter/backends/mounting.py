"""Mounting: where on this machine each of a run's resources is read from.

A SpellFS path on a local root is used in place (no copy); one on an S3 root, and any bucket
URL, is fetched once through fsspec into a cache keyed by the resource's listing (names,
sizes, ETags), so later runs reuse it and a changed resource is fetched again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec

from ..fs.paths import BUCKET_URL, BadPath
from ..fs.spellfs import SpellFileSystem
from .base import MountFailed


@dataclass(frozen=True)
class Source:
    path: Path
    how: str  # for the run's log: "in place", "fetched", "cached"


class MountSources:
    """Resolves mount resources to local paths."""

    def __init__(self, fs: SpellFileSystem, cache_root: Path, bucket_options: dict | None = None):
        self.fs = fs
        self.cache_root = cache_root  # private: fetched copies may be anyone's data
        self.bucket_options = bucket_options or {}

    def source_of(self, resource: str) -> Source:
        try:
            if BUCKET_URL.match(resource):
                target_fs, target = fsspec.core.url_to_fs(resource, **self.bucket_options)
                return self._cached(target_fs, target, resource)
            local = self.fs.local_path(resource)
            if local is not None:
                if not os.path.lexists(local):
                    raise FileNotFoundError(resource)
                return Source(local, "in place")
            target_fs, target = self.fs.resolved(resource)
            return self._cached(target_fs, target, resource)
        except (FileNotFoundError, NotADirectoryError):
            raise MountFailed(f"{resource} does not exist") from None
        except (BadPath, PermissionError, ValueError, OSError) as exc:
            raise MountFailed(f"{resource}: {exc}") from None

    def _cached(self, target_fs, target: str, resource: str) -> Source:
        info = target_fs.info(target)
        is_dir = info["type"] == "directory"
        listing = target_fs.find(target, detail=True) if is_dir else {target: info}
        fingerprint = hashlib.sha256(
            json.dumps(
                sorted(
                    (name, entry.get("size"), str(entry.get("ETag") or entry.get("mtime")))
                    for name, entry in listing.items()
                )
            ).encode()
        ).hexdigest()[:24]
        key = hashlib.sha256(resource.encode()).hexdigest()[:16]
        dest = self.cache_root / key / fingerprint / (target.rstrip("/").rsplit("/", 1)[-1] or "x")
        if dest.exists():
            return Source(dest, "cached")
        self.cache_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.cache_root, 0o700)
        staging = dest.parent / f".fetching-{uuid.uuid4().hex}"
        staging.mkdir(mode=0o700, parents=True)
        try:
            if is_dir:
                for name in listing:
                    rel = name[len(target.rstrip("/")) + 1 :] if name != target else ""
                    local = staging / "x" / rel
                    local.parent.mkdir(parents=True, exist_ok=True)
                    target_fs.get_file(name, str(local))
                (staging / "x").mkdir(exist_ok=True)
            else:
                target_fs.get_file(target, str(staging / "x"))
            os.replace(staging / "x", dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Source(dest, "fetched")
