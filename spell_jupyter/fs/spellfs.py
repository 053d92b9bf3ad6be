"""SpellFileSystem: the fsspec filesystem of the `spell://` protocol.

One namespace (`runs/<id>/…`, `uploads/<name>/…`, `public/…` and link aliases) kept on a root
filesystem given by URL: a local folder by default, `s3://bucket/prefix` (through s3fs) for
teams. Users write only under `uploads/`; run outputs are written by the engine through
`save_run_outputs`, and `public/` is read-only, served from its own source. Every path is
checked by `paths.split`; on a local root no path may resolve (symlinks included) outside it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from .paths import NAMESPACES, WRITABLE, BadPath, check_alias, normalize, run_path

META = ".spell"  # beside the namespaces on the root: links and code blobs
TAR_BLOCK = 4 << 20  # bytes per read of a file written into a tar
PROTOCOL = "spell"


class ReadOnlyPath(PermissionError):
    """A write into runs/ or public/ (or the namespace roots)."""


class SpellFileSystem(AbstractFileSystem):
    """SpellFS over a root filesystem; paths are `runs/1/out.txt` or `spell://runs/1/out.txt`."""

    protocol = (PROTOCOL,)
    root_marker = ""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        public: str | None = None,
        root_options: dict[str, Any] | None = None,
        output_umask: int = 0o077,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.output_umask = output_umask  # bits a run's saved outputs never have (local root)
        url = os.fspath(root) if root else os.environ.get("SPELL_FS_ROOT") or _default_root()
        self.root_url = url
        self.public_url = public
        self.root_options = dict(root_options or {})
        self.root_fs, self.root_path = _open_root(url, root_options or {})
        self.is_local = isinstance(self.root_fs, LocalFileSystem)
        if public:
            self.public_fs, self.public_path = _open_root(public, root_options or {})
        else:
            self.public_fs, self.public_path = self.root_fs, self._join(self.root_path, "public")
        if self.is_local:
            for namespace in (*NAMESPACES, META):
                os.makedirs(self._join(self.root_path, namespace), exist_ok=True)
            self._real_root = os.path.realpath(self.root_path)

    def settings(self) -> dict[str, Any]:
        """What opens this SpellFS again in another process (a cluster node's): with the
        options in effect here (fsspec's FSSPEC_* configuration included)."""
        effective = {} if self.is_local else dict(self.root_fs.storage_options)
        return {
            "root": self.root_url,
            "public": self.public_url,
            "root_options": {**effective, **self.root_options},
            "output_umask": self.output_umask,
        }

    # -- path mapping ----------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.rstrip("/")

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{name}"

    def clean(self, path: str) -> str:
        """The normalised SpellFS path (aliases kept); BadPath for what could escape."""
        return normalize(self._strip_protocol(path))

    def _resolve(self, path: str, *, write: bool = False) -> tuple[AbstractFileSystem, str, str]:
        """(filesystem, its path, the SpellFS path with aliases replaced) for a SpellFS path."""
        clean = self.clean(path)
        resolved = self._expand_alias(clean)
        parts = resolved.split("/") if resolved else []
        if write and (len(parts) < 2 or parts[0] not in WRITABLE):
            where = parts[0] if parts else "the SpellFS root"
            raise ReadOnlyPath(
                f"{clean or '/'} is read-only: users write only under uploads/<name> "
                f"({where} is {'kept by the engine' if where == 'runs' else 'read-only'})"
            )
        if parts and parts[0] == "public":
            target_fs, target = self.public_fs, self._join(self.public_path, *parts[1:])
            if isinstance(target_fs, LocalFileSystem):
                self._check_inside(target, clean, os.path.realpath(self.public_path))
        else:
            target_fs, target = self.root_fs, self._join(self.root_path, *parts)
            if self.is_local:
                self._check_inside(target, clean, self._real_root)
        return target_fs, target, resolved

    def _expand_alias(self, clean: str) -> str:
        head, _, rest = clean.partition("/")
        if not head or head in NAMESPACES:
            return clean
        target = self.link_target(head)
        return f"{target}/{rest}" if rest else target

    @staticmethod
    def _check_inside(local: str, shown: str, real_root: str) -> None:
        """Refuse a local path whose real location (symlinks followed) is outside its root."""
        probe = local
        while not os.path.lexists(probe) and probe != os.path.dirname(probe):
            probe = os.path.dirname(probe)
        real = os.path.realpath(probe)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise BadPath(f"{shown!r} resolves outside SpellFS (through a symbolic link)")

    def _to_spell(self, name: str, fs_base: str, spell_base: str) -> str:
        """Map a root-filesystem name under fs_base back to the SpellFS path asked for."""
        name = self._strip_root_protocol(name)
        rel = posixpath.relpath(name, fs_base) if name != fs_base else ""
        return posixpath.join(spell_base, rel) if rel else spell_base

    def _strip_root_protocol(self, name: str) -> str:
        return self.root_fs._strip_protocol(name) if "://" in name else name

    @staticmethod
    def _join(base: str, *parts: str) -> str:
        return posixpath.join(base, *parts) if parts else base

    # -- reading ----------------------------------------------------------------------------------

    def ls(self, path: str = "", detail: bool = True, **kwargs: Any):
        clean = self.clean(path)
        if not clean:
            entries = [self._dir_entry(ns) for ns in NAMESPACES]
            entries += [self._link_entry(a, t) for a, t in sorted(self.links().items())]
        else:
            target_fs, target, _ = self._resolve(clean)
            info = self._info_at(target_fs, target, clean)
            if info["type"] != "directory":
                entries = [info]
            else:
                entries = [
                    self._entry(e, target, clean)
                    for e in target_fs.ls(target, detail=True, refresh=True)
                    if self._strip_root_protocol(e["name"]).rstrip("/") != target.rstrip("/")
                ]
        entries.sort(key=_sort_key)
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict:
        clean = self.clean(path)
        if not clean:
            return self._dir_entry("")
        target_fs, target, _ = self._resolve(clean)
        return self._info_at(target_fs, target, clean)

    def _info_at(self, target_fs: AbstractFileSystem, target: str, clean: str) -> dict:
        if clean in NAMESPACES:
            return self._dir_entry(clean)
        try:
            if target_fs is self.root_fs and self.is_local:
                return self._local_entry(target, clean)
            found = target_fs.info(target)
        except FileNotFoundError:
            raise FileNotFoundError(f"{clean} does not exist in SpellFS") from None
        return self._entry(found, target, clean, exact=True)

    def _entry(self, found: dict, fs_base: str, spell_base: str, exact: bool = False) -> dict:
        name = spell_base if exact else self._to_spell(found["name"], fs_base, spell_base)
        kind = found.get("type", "file")
        if kind not in ("file", "directory"):
            kind = "file"
        if found.get("islink"):
            kind = "link"
        return {
            "name": name,
            "size": (found.get("size") or 0) if kind == "file" else 0,
            "type": kind,
            "mtime": _mtime(found),
        }

    def _local_entry(self, local: str, clean: str) -> dict:
        try:
            st = os.lstat(local)
        except FileNotFoundError:
            raise FileNotFoundError(f"{clean} does not exist in SpellFS") from None
        if stat.S_ISLNK(st.st_mode):
            kind = "link"
        elif stat.S_ISDIR(st.st_mode):
            kind = "directory"
        else:
            kind = "file"
        return {
            "name": clean,
            "size": st.st_size if kind == "file" else 0,
            "type": kind,
            "mtime": st.st_mtime,
        }

    @staticmethod
    def _dir_entry(name: str) -> dict:
        return {"name": name, "size": 0, "type": "directory", "mtime": None}

    @staticmethod
    def _link_entry(alias: str, target: str) -> dict:
        return {"name": alias, "size": 0, "type": "link", "target": target, "mtime": None}

    def _open(self, path: str, mode: str = "rb", block_size=None, autocommit=True, **kwargs):
        writing = any(c in mode for c in "wax+")
        target_fs, target, _ = self._resolve(path, write=writing)
        if "x" in mode and target_fs.exists(target):
            raise FileExistsError(f"{self.clean(path)} exists")
        if not writing and target_fs is self.root_fs and self.is_local:
            info = self._local_entry(target, self.clean(path))
            if info["type"] == "directory":
                raise IsADirectoryError(f"{self.clean(path)} is a folder")
        if writing and target_fs is self.root_fs and self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        return target_fs.open(target, mode, block_size=block_size, **kwargs)

    def cat_file(self, path: str, start=None, end=None, **kwargs) -> bytes:
        target_fs, target, _ = self._resolve(path)
        return target_fs.cat_file(target, start=start, end=end)

    def get_file(self, rpath: str, lpath: str, callback=None, outfile=None, **kwargs) -> None:
        target_fs, target, _ = self._resolve(rpath)
        if target_fs.isdir(target):
            os.makedirs(lpath, exist_ok=True)
            return
        if isinstance(lpath, str | os.PathLike) and os.path.dirname(lpath):
            os.makedirs(os.path.dirname(lpath), exist_ok=True)
        target_fs.get_file(target, lpath, **({"callback": callback} if callback else {}))

    def created(self, path: str) -> datetime:
        return self.modified(path)

    def modified(self, path: str) -> datetime:
        mtime = self.info(path).get("mtime")
        if mtime is None:
            raise FileNotFoundError(f"{self.clean(path)} has no modification time")
        return datetime.fromtimestamp(mtime, timezone.utc)

    # -- writing (uploads/ only) ------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        target_fs, target, _ = self._resolve(path, write=True)
        if target_fs.exists(target) and self.is_local:
            raise FileExistsError(f"{self.clean(path)} exists")
        target_fs.mkdir(target, create_parents=create_parents)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        target_fs, target, _ = self._resolve(path, write=True)
        target_fs.makedirs(target, exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        target_fs, target, _ = self._resolve(path, write=True)
        target_fs.rmdir(target)

    def rm_file(self, path: str) -> None:
        target_fs, target, _ = self._resolve(path, write=True)
        target_fs.rm_file(target)

    def rm(self, path, recursive: bool = False, maxdepth=None) -> None:
        for one in [path] if isinstance(path, str) else path:
            target_fs, target, _ = self._resolve(one, write=True)
            if not target_fs.exists(target):
                raise FileNotFoundError(f"{self.clean(one)} does not exist in SpellFS")
            target_fs.rm(target, recursive=recursive, maxdepth=maxdepth)
        self.invalidate_cache()

    def _rm(self, path: str) -> None:
        self.rm(path)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src_fs, src, _ = self._resolve(path1)
        dst_fs, dst, _ = self._resolve(path2, write=True)
        if src_fs.isdir(src):
            dst_fs.makedirs(dst, exist_ok=True)
        elif src_fs is dst_fs:
            src_fs.cp_file(src, dst)
        else:
            with src_fs.open(src, "rb") as fin, dst_fs.open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        target_fs, target, _ = self._resolve(path, write=True)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        target_fs.pipe_file(target, value, mode=mode)

    def put_file(self, lpath: str, rpath: str, callback=None, mode="overwrite", **kwargs) -> None:
        target_fs, target, _ = self._resolve(rpath, write=True)
        if os.path.isdir(lpath):
            target_fs.makedirs(target, exist_ok=True)
            return
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        target_fs.put_file(lpath, target, **({"callback": callback} if callback else {}))

    # -- links ----------------------------------------------------------------------------------

    def links(self) -> dict[str, str]:
        """Every link alias and the SpellFS path it names."""
        folder = self._join(self.root_path, META, "links")
        try:
            names = self.root_fs.ls(folder, detail=False, refresh=True)
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            alias = posixpath.basename(self._strip_root_protocol(name))
            found[alias] = self.root_fs.cat_file(name).decode()
        return found

    def link_target(self, alias: str) -> str:
        check_alias(alias)
        try:
            return self.root_fs.cat_file(self._link_file(alias)).decode()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{alias!r} is not in SpellFS: paths start with one of "
                f"{', '.join(NAMESPACES)} or a link alias (spell link lists them)"
            ) from None

    def link(self, alias: str, target: str, force: bool = False) -> str:
        """Make `alias` name `target` (a SpellFS path that exists); returns the target."""
        check_alias(alias)
        if not force and self.root_fs.exists(self._link_file(alias)):
            raise FileExistsError(f"link {alias!r} exists: remove it first (spell unlink)")
        _, _, resolved = self._resolve(target)
        if not resolved:
            raise BadPath("a link must name a path inside SpellFS, such as runs/1 or uploads/x")
        if not self.exists(resolved):
            raise FileNotFoundError(f"{resolved} does not exist in SpellFS")
        self.root_fs.pipe_file(self._link_file(alias), resolved.encode())
        return resolved

    def unlink(self, alias: str) -> None:
        self.link_target(alias)  # FileNotFoundError for one that does not exist
        self.root_fs.rm_file(self._link_file(alias))

    def _link_file(self, alias: str) -> str:
        if self.is_local:
            os.makedirs(self._join(self.root_path, META, "links"), exist_ok=True)
        return self._join(self.root_path, META, "links", alias)

    # -- what the engine and the server do -------------------------------------------------------

    def local_folders(self) -> dict[str, str | None] | None:
        """{root, public} when both lie in local folders (public None: inside the root), for
        clients on this host that may read them directly; else None."""
        if not self.is_local:
            return None
        if self.public_fs is self.root_fs:
            return {"root": self.root_path, "public": None}
        if isinstance(self.public_fs, LocalFileSystem):
            return {"root": self.root_path, "public": self.public_path}
        return None

    def local_path(self, path: str) -> Path | None:
        """Where a SpellFS path lies on this machine's disk, when the root is a local folder."""
        target_fs, target, _ = self._resolve(path)
        if isinstance(target_fs, LocalFileSystem):
            return Path(target)
        return None

    def resolved(self, path: str) -> tuple[AbstractFileSystem, str]:
        """The filesystem and path a SpellFS path (aliases followed) is stored at."""
        target_fs, target, _ = self._resolve(path)
        return target_fs, target

    def save_run_outputs(
        self, run_id: int, workdir: Path, files: Iterable[tuple[str, str]], copy: bool = False
    ) -> None:
        """Move (local root; `copy`: copy, as for a run still running) or upload files of a
        run to `runs/<id>/`: (local source, relative destination) pairs. Only the engine (and
        a cluster node's agent for it) writes here."""
        dest_root = self._join(self.root_path, run_path(run_id))
        for source, rel in files:
            dest = self._join(dest_root, rel)
            if self.is_local:
                self._makedirs_private(dest_root, os.path.dirname(dest))
                if copy or not _moved(source, dest):
                    shutil.copy2(source, dest, follow_symlinks=False)
                if not os.path.islink(dest):
                    mode = os.lstat(dest).st_mode & 0o7777
                    os.chmod(dest, mode & ~self.output_umask & ~0o6000)  # no setuid/setgid
            elif os.path.islink(source):
                continue  # object stores keep no links
            else:
                self.root_fs.put_file(source, dest)

    def _makedirs_private(self, top: str, folder: str) -> None:
        """Make `folder` (and `top`, a run's folder) with the output mode's folder bits."""
        mode = 0o777 & ~self.output_umask
        for path in (top, folder):
            if not os.path.isdir(path):
                os.makedirs(path, exist_ok=True)
                os.chmod(path, mode)
        os.makedirs(folder, mode=mode, exist_ok=True)

    def commit_upload(self, name: str, staged: Path, force: bool = False) -> None:
        """Make a staged local file or folder `uploads/<name>` (replacing one with `force`)."""
        target_fs, target, clean = self._resolve(f"uploads/{name}", write=True)
        if target_fs.exists(target):
            if not force:
                raise FileExistsError(f"{clean} exists: use --force to replace it")
            target_fs.rm(target, recursive=True)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(os.fspath(staged), target)
        else:
            target_fs.put(os.fspath(staged), target, recursive=staged.is_dir())
            shutil.rmtree(staged) if staged.is_dir() else staged.unlink()
        self.invalidate_cache()

    def write_tar(self, path: str, out: BinaryIO) -> None:
        """Stream `path` (file or folder) as an uncompressed tar; local links stay links."""
        clean = self.clean(path)
        info = self.info(clean)  # FileNotFoundError before any byte is written
        target_fs, target, _ = self._resolve(clean)
        arcname = posixpath.basename(clean) or "spellfs"
        with tarfile.open(
            fileobj=out,
            mode="w|",
            format=tarfile.PAX_FORMAT,
            bufsize=TAR_BLOCK,
            copybufsize=TAR_BLOCK,
        ) as tar:
            if isinstance(target_fs, LocalFileSystem):
                tar.add(target, arcname=arcname, recursive=True)
                return
            if info["type"] != "directory":
                _add_remote(tar, target_fs, target, arcname, info)
                return
            for name, found in sorted(target_fs.find(target, detail=True).items()):
                rel = posixpath.relpath(self._strip_root_protocol(name), target)
                _add_remote(tar, target_fs, name, f"{arcname}/{rel}", found)

    # -- code blobs (archives and patches that runs' code is made of) ----------------------------

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._blob(digest)
        if not self.root_fs.exists(target):
            self.root_fs.pipe_file(target, data)
        return digest

    def has_blob(self, digest: str) -> bool:
        return self.root_fs.exists(self._blob(digest))

    def read_blob(self, digest: str) -> bytes:
        return self.root_fs.cat_file(self._blob(digest))

    def _blob(self, digest: str) -> str:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BadPath(f"{digest!r} is not a sha256 digest")
        if self.is_local:
            os.makedirs(self._join(self.root_path, META, "code"), exist_ok=True)
        return self._join(self.root_path, META, "code", digest)


def _add_remote(tar: tarfile.TarFile, fs: AbstractFileSystem, name: str, arc: str, info) -> None:
    member = tarfile.TarInfo(arc)
    member.mtime = int(_mtime(info) or 0)
    if info.get("type") == "directory":
        member.type = tarfile.DIRTYPE
        member.mode = 0o755
        tar.addfile(member)
        return
    member.size = int(info.get("size") or 0)
    member.mode = 0o644
    with fs.open(name, "rb") as stream:
        tar.addfile(member, stream)


def _open_root(url: str, options: dict[str, Any]) -> tuple[AbstractFileSystem, str]:
    if "://" not in url or url.startswith("file://"):
        local = os.path.abspath(os.path.expanduser(url.removeprefix("file://")))
        os.makedirs(local, exist_ok=True)
        return LocalFileSystem(auto_mkdir=True), local
    target_fs, target = fsspec.core.url_to_fs(url, **options)
    return target_fs, target.rstrip("/")


def _default_root() -> str:
    from ..paths import spell_home

    return os.fspath(spell_home() / "fs")


def _mtime(info: dict) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def _sort_key(info: dict):
    base = posixpath.basename(info["name"])
    return (int(base) if base.isdigit() else float("inf"), base)


def _moved(source: str, dest: str) -> bool:
    """Move by a rename where one works (the same file system)."""
    try:
        os.replace(source, dest)
    except OSError:
        return False
    return True
