"""`spell://` wherever the client works: SpellFS as an fsspec filesystem over a server's REST API,
and the protocol class that picks the way to it.

`fsspec.filesystem("spell")` (and `fsspec.open("spell://runs/3/x.csv")`, `pd.read_csv(...)`) reads
the store of the server the client finds (SPELL_BASE_URL, else SPELL_HOME's server, as in a
kernel of JupyterLab): its folders directly when they are local folders this process can read
and write, else through its API (`SpellApiFileSystem`). `root=` names a root to open directly.
A root that does not exist, or no server and no store, is an error: never an empty listing."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from ..fs.spellfs import PROTOCOL
from .errors import APIError, ServerUnavailable
from .transport import STREAM_TIMEOUT, quote_path

UPLOADS = "uploads/"


def os_error(exc: APIError, path: str) -> OSError:
    """The Python error for a refused request, as fsspec's callers expect them."""
    kind = {404: FileNotFoundError, 403: PermissionError, 409: FileExistsError}.get(exc.status_code)
    if kind is not None:
        return kind(f"{exc.message} ({path})")
    if exc.status_code == 400:
        return ValueError(exc.message)
    return OSError(f"{exc.message} ({path})")


def strip_protocol(path) -> str:
    """`spell://runs/1/x` -> `runs/1/x`, as SpellFileSystem reads its paths."""
    from ..fs.spellfs import SpellFileSystem

    return SpellFileSystem._strip_protocol(path)


class SpellApiFileSystem(AbstractFileSystem):
    """SpellFS through a Spell server's REST API (`client`: a SpellClient)."""

    protocol = (PROTOCOL,)
    root_marker = ""
    cachable = False

    def __init__(self, client=None, **kwargs: Any):
        super().__init__(**kwargs)
        if client is None:
            from . import from_environment

            client = from_environment()
        self.client = client

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{name}"

    @property
    def _http(self):
        return self.client.transport

    def _call(self, path: str, method: str, target: str, **kwargs):
        try:
            return self._http.request(method, target, **kwargs)
        except APIError as exc:
            raise os_error(exc, path) from None

    # -- reading ---------------------------------------------------------------------------------

    def ls(self, path: str = "", detail: bool = True, **kwargs: Any):
        clean = self._strip_protocol(path)
        target = f"resources/{quote_path(clean)}" if clean else "resources"
        entries = [_entry(e) for e in self._call(clean, "GET", target).json()["entries"]]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict:
        clean = self._strip_protocol(path)
        if not clean:
            return {"name": "", "size": 0, "type": "directory"}
        entries = self.ls(clean)
        if len(entries) == 1 and entries[0]["name"] == clean and entries[0]["type"] == "file":
            return entries[0]
        return {"name": clean, "size": 0, "type": "directory"}

    def cat_file(self, path: str, start=None, end=None, **kwargs: Any) -> bytes:
        clean = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            return super().cat_file(path, start, end, **kwargs)  # needs the size: fsspec's way
        headers = {}
        if start or end is not None:
            last = "" if end is None else str(max(0, end - 1))
            if end is not None and end <= (start or 0):
                return b""
            headers["Range"] = f"bytes={start or 0}-{last}"
        return self._call(clean, "GET", f"files/{quote_path(clean)}", headers=headers).read()

    def get_file(self, rpath: str, lpath: str, callback=None, outfile=None, **kwargs) -> None:
        clean = self._strip_protocol(rpath)
        if self.isdir(clean):
            os.makedirs(lpath, exist_ok=True)
            return
        response = self._call(
            clean, "GET", f"files/{quote_path(clean)}", stream=True, timeout=STREAM_TIMEOUT
        )
        if outfile is None:
            os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
        with response, open(lpath, "wb") if outfile is None else outfile as out:
            shutil.copyfileobj(response.raw, out, 1 << 20)

    def _open(self, path: str, mode: str = "rb", block_size=None, autocommit=True, **kwargs):
        clean = self._strip_protocol(path)
        if "r" in mode:
            size = self.info(clean)["size"]
            return SpellApiFile(self, clean, mode, block_size or "default", size=size)
        self._writable(clean)
        if "x" in mode and self.exists(clean):
            raise FileExistsError(f"{clean} exists")
        return SpellApiFile(self, clean, mode.replace("x", "w"), block_size or "default")

    def modified(self, path: str) -> datetime:
        mtime = self.info(path).get("mtime")
        if mtime is None:
            raise IsADirectoryError(f"{path} is a folder: it has no time of its own")
        return datetime.fromtimestamp(mtime, timezone.utc)

    created = modified

    # -- writing (uploads/ only) -----------------------------------------------------------------

    def _writable(self, clean: str) -> str:
        """The upload name of a path users may write, else PermissionError."""
        if not clean.startswith(UPLOADS) or clean == UPLOADS.rstrip("/"):
            raise PermissionError(
                f"{clean or '/'} is read-only: users write only under uploads/<name>"
            )
        return clean[len(UPLOADS) :]

    def put_file(self, lpath: str, rpath: str, callback=None, mode="overwrite", **kwargs) -> None:
        clean = self._strip_protocol(rpath)
        name = self._writable(clean)
        if os.path.isdir(lpath):
            self.makedirs(clean, exist_ok=True)
            return
        if mode == "create" and self.exists(clean):
            raise FileExistsError(clean)
        try:
            self.client.resources.upload(lpath, name=name, force=True)
        except APIError as exc:
            raise os_error(exc, clean) from None

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs) -> None:
        with tempfile.NamedTemporaryFile(prefix="spellfs-") as staged:
            staged.write(value)
            staged.flush()
            self.put_file(staged.name, path, mode=mode)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        source = self._strip_protocol(path1)
        if self.isdir(source):
            self.makedirs(path2, exist_ok=True)
            return
        with tempfile.NamedTemporaryFile(prefix="spellfs-") as staged:
            self.get_file(source, staged.name)
            self.put_file(staged.name, path2)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        clean = self._strip_protocol(path)
        self._writable(clean)
        self._call(clean, "PUT", f"resources/{quote_path(clean)}")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if not exist_ok and self.exists(path):
            raise FileExistsError(f"{self._strip_protocol(path)} exists")
        self.mkdir(path)

    def rm_file(self, path: str) -> None:
        clean = self._strip_protocol(path)
        self._call(clean, "DELETE", f"resources/{quote_path(clean)}")

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path, recursive: bool = False, maxdepth=None) -> None:
        """The server removes folders whole: one request per topmost path."""
        found = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for one in found:
            if not any(one.startswith(other + "/") for other in found):
                self.rm_file(one)

    def rmdir(self, path: str) -> None:
        self.rm_file(path)

    # -- SpellFS's own -----------------------------------------------------------------------------

    def links(self) -> dict[str, str]:
        return self.client.resources.links()


class SpellApiFile(AbstractBufferedFile):
    """A file of SpellApiFileSystem: ranges read on demand; writes staged in a temporary file
    and uploaded (resumable, same-host copies) when closed."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    def _initiate_upload(self) -> None:
        self._staged = tempfile.NamedTemporaryFile(prefix="spellfs-")  # noqa: SIM115 (closed in the last chunk)

    def _upload_chunk(self, final: bool = False) -> bool:
        self._staged.write(self.buffer.getvalue())
        if final:
            self._staged.flush()
            self.fs.put_file(self._staged.name, self.path)
            self._staged.close()
        return True


def _entry(data: dict) -> dict:
    modified = data.get("modified")
    entry = {"name": data["path"], "size": data.get("size") or 0, "type": data["type"]}
    if modified:
        entry["mtime"] = datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
    if data.get("target"):
        entry["target"] = data["target"]
    return entry


class SpellProtocol(AbstractFileSystem):
    """What `spell://` names: a SpellFileSystem on the store's folders when this process can
    reach them, else a SpellApiFileSystem (see the module's docstring)."""

    protocol = (PROTOCOL,)
    root_marker = ""
    cachable = False  # a server may start or stop between two calls

    def __new__(cls, root=None, client=None, **kwargs):
        return spell_filesystem(root=root, client=client, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(path)


def spell_filesystem(root=None, client=None, **kwargs) -> AbstractFileSystem:
    """The filesystem behind `spell://` here."""
    from ..fs.spellfs import SpellFileSystem

    if root is None and client is None:
        root = os.environ.get("SPELL_FS_ROOT") or None
    if root is not None:
        _check_root(os.fspath(root))
        return SpellFileSystem(root, **kwargs)
    if client is None:
        client = _found_client()
        if client is None:
            return _default_store(**kwargs)
    folders = _local_folders(client)
    if folders is not None:
        return SpellFileSystem(folders["root"], public=folders["public"], **kwargs)
    return SpellApiFileSystem(client, **kwargs)


def _check_root(root: str) -> None:
    if "://" not in root and not os.path.isdir(root):
        raise FileNotFoundError(f"the SpellFS root {root} does not exist")


def _found_client():
    """The client of SPELL_BASE_URL or of SPELL_HOME's running server; None when none runs."""
    from . import SpellClient
    from .connection import environment_server_info, running_server

    info = environment_server_info()
    if info is None:
        from ..paths import spell_home

        info = running_server(spell_home(), busy_wait=5)
    return None if info is None else SpellClient(token=info.token, base_url=info.url)


def _local_folders(client) -> dict | None:
    """The server's SpellFS folders when this process may read and write them itself."""
    try:
        folders = client.transport.json("GET", "").get("spellfs_folders")
    except (APIError, ServerUnavailable, AttributeError):
        return None
    if not folders:
        return None
    places = [p for p in (folders.get("root"), folders.get("public")) if p]
    if all(os.path.isdir(p) and os.access(p, os.R_OK | os.W_OK | os.X_OK) for p in places):
        return folders
    return None


def _default_store(**kwargs) -> AbstractFileSystem:
    from ..fs.spellfs import SpellFileSystem
    from ..paths import spell_home

    home = spell_home()
    root = home / "fs"
    if not root.is_dir():
        raise FileNotFoundError(
            f"no Spell server runs for {home} and it holds no SpellFS ({root}): start JupyterLab "
            "or `spell server`, set SPELL_BASE_URL, or pass root= to open a store's folder"
        )
    return SpellFileSystem(str(root), **kwargs)
