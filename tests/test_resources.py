"""The resource commands on a local root and on an S3 root (moto): ls, cp, upload (resumable),
rm, link and unlink, and their bad input."""

from __future__ import annotations

import os
import uuid

import pytest
from helpers import user_lines

from spell_jupyter.client.errors import APIError


@pytest.fixture(params=["local", "local-http", "s3"])
def root_served(request, serve):
    """A running server whose SpellFS root is a local folder (files copied on disk for this
    same-host client, then sent over HTTP as for any other), then a bucket on moto."""
    if request.param == "local":
        return serve()
    if request.param == "local-http":
        return serve(SPELL_LOCAL_COPIES="0")
    s3 = request.getfixturevalue("s3_server")
    bucket = s3.new_bucket(f"spell-{uuid.uuid4().hex[:12]}")
    return serve(SPELL_FS_ROOT=f"s3://{bucket}/team", **s3.env)


def make_dataset(folder, files: int = 3, size: int = 1000):
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"part{i}.bin").write_bytes(os.urandom(size))
    (folder / "sub").mkdir()
    (folder / "sub" / "labels.csv").write_text("a,b\n")
    return folder


def test_the_seeds_chain_and_cp_on_each_root(root_served, tmp_path):
    home = root_served
    assert home.spell("run", "echo hello world! > foo.txt").returncode == 0
    out = home.spell("run", "--mount", "runs/1/foo.txt:/spell/foo.txt", "cat foo.txt")
    assert "hello world!" in out.stdout.splitlines()
    listing = home.spell("ls", "runs/1")
    assert listing.stdout.split()[-1] == "foo.txt"
    dest = tmp_path / "got"
    assert home.spell("cp", "runs/1", str(dest)).returncode == 0
    assert (dest / "1" / "foo.txt").read_text() == "hello world!\n"
    again = home.spell("cp", "runs/1/foo.txt", str(dest))
    assert again.returncode == 0 and (dest / "foo.txt").exists()
    clash = home.spell("cp", "runs/1/foo.txt", str(dest))
    assert clash.returncode == 1 and "exists" in clash.stderr
    assert home.spell("cp", "-f", "runs/1/foo.txt", str(dest)).returncode == 0


def test_upload_link_mount_and_remove_on_each_root(root_served, tmp_path):
    home = root_served
    data = make_dataset(tmp_path / "mnist")
    result = home.spell("upload", str(data))
    assert result.returncode == 0, result.stderr
    assert "to uploads/mnist" in result.stdout
    listed = home.spell("ls", "-h", "uploads/mnist").stdout
    assert "part0.bin" in listed and "sub/" in listed
    assert home.spell("link", "digits", "uploads/mnist").stdout.strip() == (
        "digits -> uploads/mnist"
    )
    assert "digits -> uploads/mnist" in home.spell("ls").stdout
    assert home.spell("link").stdout.strip() == "digits -> uploads/mnist"
    run = home.spell("run", "-m", "digits", "cat digits/sub/labels.csv")
    assert run.returncode == 0, run.stderr
    assert user_lines(home.client().runs.get(1)) == ["a,b"]
    assert home.spell("unlink", "digits").returncode == 0
    assert home.spell("link").stdout.startswith("No links yet")
    assert home.spell("rm", "uploads/mnist").returncode == 0
    assert home.spell("ls", "uploads").stdout == ""


def test_an_interrupted_upload_sends_only_the_rest(root_served, tmp_path, monkeypatch):
    """The upload is cut off (as ^C would) after half its bytes; the same call again sends
    only what the server lacks, counted in bytes."""
    from spell_jupyter.client import resources as client_resources

    monkeypatch.setattr(client_resources, "CHUNK", 64 << 10)  # many requests: half is a real cut
    monkeypatch.setattr(client_resources, "COPY_CHUNK", 64 << 10)
    data = make_dataset(tmp_path / "big", files=4, size=256 << 10)
    total = 4 * (256 << 10) + 4
    client = root_served.client()
    sent = 0

    def cut(nbytes: int) -> None:
        nonlocal sent
        sent += nbytes
        if sent >= total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.resources.upload(data, name="big", progress=cut)
    first = sent
    assert total // 2 <= first < total
    with pytest.raises(APIError, match="does not exist"):
        client.resources.ls("uploads/big")  # nothing half-made is visible
    result = client.resources.upload(data, name="big")
    assert result.sent_bytes == total - first
    assert result.total_bytes == total
    copies = root_served.env.get("SPELL_LOCAL_COPIES") != "0"  # on disk, for this same-host client
    assert result.copied_bytes == (result.sent_bytes if copies else 0)
    dest = tmp_path / "back"
    client.resources.cp("uploads/big", dest)
    for name in ("part0.bin", "part3.bin", "sub/labels.csv"):
        assert (dest / "big" / name).read_bytes() == (data / name).read_bytes()


def test_a_cli_upload_resumes_and_says_so(served, tmp_path, monkeypatch):
    from spell_jupyter.client import resources as client_resources

    data = make_dataset(tmp_path / "d", files=2, size=100)
    client = served.client()
    monkeypatch.setattr(client_resources, "COPY_CHUNK", 50)

    first = []

    def stop(n: int) -> None:
        first.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.resources.upload(data, progress=stop)
    result = served.spell("upload", "-c", str(data))
    assert result.returncode == 0, result.stderr
    assert 0 < first[0] < 204
    assert f"resumed: {first[0]}B were already there" in result.stdout


def test_a_file_upload_and_its_name(served, tmp_path):
    one = tmp_path / "weights.pt"
    one.write_bytes(b"w" * 10)
    assert served.spell("upload", "-n", "models/w.pt", str(one)).returncode == 0
    entry = served.client().resources.ls("uploads/models/w.pt")[0]
    assert entry["type"] == "file" and entry["size"] == 10


def test_an_upload_name_that_exists_needs_force(served, tmp_path):
    data = make_dataset(tmp_path / "d", files=1, size=10)
    assert served.spell("upload", str(data)).returncode == 0
    (data / "part0.bin").write_bytes(b"new")
    again = served.spell("upload", str(data))
    assert again.returncode == 1 and "uploads/d exists: use --force" in again.stderr
    assert served.client().resources.ls("uploads/d/part0.bin")[0]["size"] == 10  # unchanged
    assert served.spell("upload", "--force", str(data)).returncode == 0
    assert served.client().resources.ls("uploads/d/part0.bin")[0]["size"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rm", "runs/1"), "read-only"),
        (("rm", "public/x"), "read-only"),
        (("rm", "runs/1/../../etc"), "leaves SpellFS"),
        (("ls", "/etc"), "is not a SpellFS path"),
        (("cp", "uploads/../../x"), "leaves SpellFS"),
        (("link", "runs", "uploads/x"), "it is a SpellFS namespace"),
        (("link", "a.b", "uploads/x"), "contains ."),
        (("link", "a:b", "uploads/x"), "contains :"),
        (("link", "ok", "uploads/missing"), "does not exist"),
        (("unlink", "nothing"), "is not in SpellFS"),
        (("upload", "-n", "../x", "."), "leaves SpellFS"),
    ],
)
def test_bad_resource_commands_are_refused_clearly(served, args, message):
    assert served.spell("run", "echo x > out.txt").returncode == 0
    result = served.spell(*args)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert [e["path"] for e in served.client().resources.ls("runs/1")] == ["runs/1/out.txt"]
    assert served.client().resources.links() == {}


def test_rest_refuses_writes_into_runs_with_403(served):
    assert served.spell("run", "echo x > out.txt").returncode == 0
    with pytest.raises(APIError) as info:
        served.client().resources.rm("runs/1/out.txt")
    assert info.value.status_code == 403


@pytest.mark.parametrize("mode", ["755", -1, 0o10000, True])
def test_an_upload_declaring_a_bad_mode_is_refused(served, mode):
    files = [{"path": "run.sh", "size": 1, "mode": mode}]
    with pytest.raises(APIError) as info:
        served.client().transport.json("POST", "uploads", json={"name": "m", "files": files})
    assert info.value.status_code == 400 and "a file mode is an integer" in info.value.message
    with pytest.raises(APIError, match="no upload of 'm' has begun"):
        served.client().transport.json("POST", "uploads/commit", json={"name": "m"})
