"""Same-host copies: a client on the server's host, running as its user, has its files copied
on disk (`spell upload`, `spell cp`); any other client, or one that sees other files at the same
paths (another mount namespace), goes over HTTP, with the same result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap

import pytest

from spell_jupyter.client.errors import APIError

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: another user, unshare")


def spy(client) -> list[str]:
    """'METHOD path' of every request the client sends from now on."""
    seen: list[str] = []
    original = client.transport.request

    def request(method, path, **kwargs):
        seen.append(f"{method} {path}")
        return original(method, path, **kwargs)

    client.transport.request = request
    return seen


def make_tree(folder):
    folder.mkdir()
    (folder / "part0.bin").write_bytes(os.urandom(300_000))
    (folder / "part1.bin").write_bytes(os.urandom(200_000))
    (folder / "train.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "train.sh").chmod(0o755)
    (folder / "private.key").write_text("k")
    (folder / "private.key").chmod(0o600)
    (folder / "empty").write_bytes(b"")
    (folder / "sub").mkdir()
    (folder / "sub" / "labels.csv").write_text("a,b\n")
    return folder


def files(folder) -> list[str]:
    found = (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return sorted(p.relative_to(folder).as_posix() for p in found)


def same_files(got, want, mtimes: bool = True) -> None:
    """The same files with the same bytes, modes and (`mtimes`) modification times."""
    assert files(got) == files(want)
    for name in files(want):
        a, b = (got / name).stat(), (want / name).stat()
        assert (got / name).read_bytes() == (want / name).read_bytes(), name
        assert a.st_mode & 0o777 == b.st_mode & 0o777, name
        if mtimes:
            assert int(a.st_mtime) == int(b.st_mtime), name


@pytest.fixture(params=["copies", "http"])
def transfer(request, serve, tmp_path):
    """A server on this host whose SpellFS root is tmp_path/root; it copies on disk for this
    client, or (SPELL_LOCAL_COPIES=0) takes everything over HTTP."""
    env = {"SPELL_FS_ROOT": str(tmp_path / "root")}
    if request.param == "http":
        env["SPELL_LOCAL_COPIES"] = "0"
    return request.param, serve(**env)


def test_upload_and_cp_copy_on_disk_here_with_the_same_result_as_http(transfer, tmp_path):
    mode, home = transfer
    data = make_tree(tmp_path / "d")
    client = home.client()
    seen = spy(client)
    result = client.resources.upload(data)
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    assert (result.total_bytes, result.sent_bytes) == (size, size)
    chunks = [r for r in seen if r.startswith("PUT uploads/chunk")]
    if mode == "copies":
        assert result.copied_bytes == size and not chunks
    else:
        assert result.copied_bytes == 0 and chunks
    stored = tmp_path / "root" / "uploads" / "d"
    same_files(stored, data, mtimes=False)  # modes kept: train.sh stays executable

    os.utime(stored / "part1.bin", (1_600_000_000, 1_600_000_000))
    os.symlink("sub/labels.csv", tmp_path / "root" / "uploads" / "d" / "labels")
    seen.clear()
    written = client.resources.cp("uploads/d", tmp_path / "back")
    downloads = [r for r in seen if r.startswith("GET download/")]
    assert bool(downloads) == (mode == "http")
    same_files(tmp_path / "back" / "d", stored)
    assert os.readlink(tmp_path / "back" / "d" / "labels") == "sub/labels.csv"
    assert sorted(written) == [str(tmp_path / "back" / "d" / name) for name in files(data)]

    (tmp_path / "back" / "d" / "empty").write_text("mine")
    with pytest.raises(FileExistsError, match="use force=True"):
        client.resources.cp("uploads/d/empty", tmp_path / "back" / "d")
    asked = []
    assert client.resources.cp("uploads/d", tmp_path / "back", overwrite=asked.append) == []
    assert len(asked) == 6 and (tmp_path / "back" / "d" / "empty").read_text() == "mine"
    client.resources.cp("uploads/d/empty", tmp_path / "back" / "d", force=True)
    assert (tmp_path / "back" / "d" / "empty").read_bytes() == b""


def test_cp_refuses_a_link_out_of_the_destination_either_way(transfer, tmp_path):
    _, home = transfer
    client = home.client()
    client.resources.upload(make_tree(tmp_path / "d"))
    os.symlink("../../../etc/passwd", tmp_path / "root" / "uploads" / "d" / "escape")
    with pytest.raises((ValueError, tarfile.TarError), match="outside the destination"):
        client.resources.cp("uploads/d", tmp_path / "back")
    assert not (tmp_path / "back" / "d" / "escape").exists()


def test_a_copy_request_is_checked_and_changes_nothing_when_refused(served, tmp_path):
    client = served.client()
    http = client.transport
    sources = {}
    for rel in ("a", "b"):
        (tmp_path / rel).write_bytes(rel.encode() * 10)
        found = (tmp_path / rel).stat()
        sources[rel] = {
            "path": str(tmp_path / rel),
            "inode": found.st_ino,
            "mtime_ns": found.st_mtime_ns,
        }

    def ranges(**changes):
        """Both files whole; `changes` alter the range of b."""
        a = {"path": "a", "offset": 0, "length": 10, "source": sources["a"]}
        return [a, {"path": "b", "offset": 0, "length": 10, "source": sources["b"], **changes}]

    def refused(status: int, message: str, files=None, **changes):
        body = {"name": "w", "files": ranges(**changes) if files is None else files}
        with pytest.raises(APIError) as info:
            http.json("POST", "uploads/copy", json=body)
        assert info.value.status_code == status and message in info.value.message, info.value

    refused(404, "no upload of 'w' has begun")
    declared = [{"path": "a", "size": 10}, {"path": "b", "size": 10}]
    begun = http.json("POST", "uploads", json={"name": "w", "files": declared})
    assert begun["copy"] is True and begun["received"] == {"a": 0, "b": 0}
    refused(400, "names its upload and files", files=[])
    refused(400, "at most once", path="a")
    refused(400, "a local source is", source={"path": "/x"})
    refused(400, "is absolute", source={**sources["b"], "path": "b"})
    refused(400, "a byte range", length=0)
    refused(400, "larger than the 10 declared", length=11)
    refused(400, "was not declared", path="c")
    refused(409, "holds 0 bytes", offset=5)
    refused(
        412,
        "not the file the client described",
        source={**sources["b"], "inode": sources["b"]["inode"] + 1},
    )
    refused(412, "not the file the client described", source={**sources["b"], "path": "/tmp"})
    refused(412, "cannot open", source={**sources["b"], "path": str(tmp_path / "gone")})
    again = http.json("POST", "uploads", json={"name": "w", "files": declared})
    assert again["received"] == {"a": 0, "b": 0}  # no refused batch copied any of its files
    with pytest.raises(APIError, match="does not exist"):
        client.resources.ls("uploads/w")
    done = http.json("POST", "uploads/copy", json={"name": "w", "files": ranges()})
    assert done["received"] == {"a": 10, "b": 10}
    assert http.json("POST", "uploads/commit", json={"name": "w"})["path"] == "uploads/w"
    assert (served.path / "fs" / "uploads" / "w" / "b").read_bytes() == b"b" * 10
    with pytest.raises(APIError) as info:
        http.json("GET", "local/runs/99")
    assert info.value.status_code == 404


NOBODY_CLIENT = """
import json, sys, urllib.error, urllib.request
url, token, source = sys.argv[1:]
def call(method, path, body=None):
    req = urllib.request.Request(url + "spell/api/v1/" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
out = {"begin": call("POST", "uploads", {"name": "n", "files": [{"path": "", "size": 3}]}),
       "copy": call("POST", "uploads/copy", {"name": "n", "offset": 0, "length": 3,
                    "source": {"path": source, "inode": 1, "mtime_ns": 1}}),
       "local": call("GET", "local/uploads")}
print(json.dumps(out))
"""


@as_root
def test_a_client_running_as_another_user_gets_no_copies(served, tmp_path):
    """The server copies only for its own user: anyone else could name files it cannot read."""
    secret = tmp_path / "secret"
    secret.write_text("abc")
    secret.chmod(0o600)
    info = served.server_info()
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            NOBODY_CLIENT,
            info["url"],
            info["token"],
            str(secret),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
    )
    answers = json.loads(out.stdout)
    assert answers["begin"][0] == 200 and answers["begin"][1]["copy"] is False
    assert answers["copy"][0] == 412 and "running as its user" in answers["copy"][1]["message"]
    assert answers["local"][0] == 412


NAMESPACE_CLIENT = """
import json, os, sys
from pathlib import Path
from spell_jupyter.client import from_environment
home, data, dest = map(Path, sys.argv[1:])
client = from_environment(home)
result = client.resources.upload(data, name="ns")
written = client.resources.cp("uploads/ns", dest, quiet=True)
answer = {"copied": result.copied_bytes, "sent": result.sent_bytes, "written": len(written)}
print(json.dumps(answer))
"""


@as_root
@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
def test_a_client_seeing_other_files_at_the_same_paths_falls_back_to_http(serve, tmp_path):
    """In its own mount namespace the client sees another part1.bin (a bind mount) and an empty
    SpellFS root (a tmpfs): the server refuses to copy the file it sees instead, the client
    sends it; the client finds no files where the server listed them and takes the tar."""
    home = serve(SPELL_FS_ROOT=str(tmp_path / "root"))
    data = make_tree(tmp_path / "d")
    other = tmp_path / "other.bin"
    other.write_bytes(b"the client's view")
    (tmp_path / "root").mkdir(exist_ok=True)
    script = textwrap.dedent(NAMESPACE_CLIENT)
    shell = (
        f"mount --bind {other} {data / 'part1.bin'} && mount -t tmpfs none {tmp_path / 'root'}"
        f' && exec "$0" -c "$1" {home.path} {data} {tmp_path / "back"}'
    )
    out = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            shell,
            sys.executable,
            script,
        ],
        capture_output=True,
        text=True,
        env=home.env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["copied"] == 0  # the server copies none of a batch it cannot check whole
    assert answer["sent"] == 300_000 + len(b"the client's view") + 18 + 4 + 1
    assert (tmp_path / "root" / "uploads" / "ns" / "part1.bin").read_bytes() == b"the client's view"
    assert (tmp_path / "back" / "ns" / "part1.bin").read_bytes() == b"the client's view"
    assert answer["written"] == 6
