"""SpellFS as an fsspec filesystem: fsspec's shared abstract test suites on a local root and on
an S3 root (moto), then the SpellFS rules (namespaces, read-only places, links, escapes)."""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from spell_jupyter.client.spellfs import SpellApiFileSystem
from spell_jupyter.fs.paths import BadPath
from spell_jupyter.fs.spellfs import ReadOnlyPath, SpellFileSystem


@pytest.fixture(params=["local", "s3"])
def spellfs(request, tmp_path) -> SpellFileSystem:
    """SpellFS on a local folder, then on a fresh bucket of the local S3 server."""
    if request.param == "local":
        return SpellFileSystem(str(tmp_path / "root"), skip_instance_cache=True)
    server = request.getfixturevalue("s3_server")
    bucket = server.new_bucket(f"spellfs-{uuid.uuid4().hex[:12]}")
    return SpellFileSystem(f"s3://{bucket}/team", skip_instance_cache=True)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """One `spell server` for the suites over the REST API (its store outlives each test; the
    suites remove what they make)."""
    from conftest import make_home

    home = make_home(tmp_path_factory.mktemp("api"))
    home.start_server()
    yield home
    home.spell("server", "stop")


@pytest.fixture(params=["local", "s3", "api"])
def suite_fs(request, tmp_path):
    """SpellFS on a local root, on an S3 root, and over a server's REST API."""
    if request.param != "api":
        yield request.getfixturevalue("spellfs_" + request.param)
        return
    home = request.getfixturevalue("api_server")
    fs = SpellApiFileSystem(home.client())
    yield fs
    if fs.exists("uploads/abstract"):
        fs.rm("uploads/abstract", recursive=True)


@pytest.fixture
def spellfs_local(tmp_path) -> SpellFileSystem:
    return SpellFileSystem(str(tmp_path / "root"), skip_instance_cache=True)


@pytest.fixture
def spellfs_s3(s3_server) -> SpellFileSystem:
    bucket = s3_server.new_bucket(f"spellfs-{uuid.uuid4().hex[:12]}")
    return SpellFileSystem(f"s3://{bucket}/team", skip_instance_cache=True)


class SpellFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, suite_fs):
        return suite_fs

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self):
        return "uploads/abstract"

    @pytest.fixture
    def supports_empty_directories(self, suite_fs):
        return getattr(suite_fs, "is_local", True)  # the API server's root is a local folder


class TestSpellCopy(AbstractCopyTests, SpellFixtures):
    pass


class TestSpellGet(AbstractGetTests, SpellFixtures):
    pass


class TestSpellPut(AbstractPutTests, SpellFixtures):
    pass


class TestSpellOpen(AbstractOpenTests, SpellFixtures):
    pass


class TestSpellPipe(AbstractPipeTests, SpellFixtures):
    pass


def test_the_spell_protocol_is_registered(tmp_path):
    (tmp_path / "root").mkdir()
    fs = fsspec.filesystem("spell", root=str(tmp_path / "root"))
    assert isinstance(fs, SpellFileSystem)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fsspec.filesystem("spell", root=str(tmp_path / "nowhere"))


def use_home(monkeypatch, home) -> None:
    """This process as a kernel of `home`'s server sees it (SPELL_HOME, Jupyter's runtime)."""
    for name in ("SPELL_HOME", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, home.env[name])
    monkeypatch.delenv("SPELL_FS_ROOT", raising=False)
    monkeypatch.delenv("SPELL_BASE_URL", raising=False)


def test_spell_urls_read_a_local_store_directly(served, monkeypatch, tmp_path):
    use_home(monkeypatch, served)
    monkeypatch.setenv("HOME", str(tmp_path / "another-home"))
    fs = fsspec.filesystem("spell")
    assert isinstance(fs, SpellFileSystem)
    assert fs.root_path == str(served.path / "fs")


def test_spell_urls_go_through_the_api_when_the_store_is_not_here(
    serve, s3_server, monkeypatch, tmp_path
):
    """A server whose SpellFS is a bucket this process has no settings for: pandas reads and
    writes spell:// through the server's API, with the same paths and results."""
    pd = pytest.importorskip("pandas")
    bucket = s3_server.new_bucket(f"api-{uuid.uuid4().hex[:8]}")
    home = serve(SPELL_FS_ROOT=f"s3://{bucket}/team", **s3_server.env)
    use_home(monkeypatch, home)
    fs = fsspec.filesystem("spell")
    assert isinstance(fs, SpellApiFileSystem)
    frame = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.5, 0.25, 0.125]})
    frame.to_csv("spell://uploads/tables/loss.csv", index=False)
    assert pd.read_csv("spell://uploads/tables/loss.csv").equals(frame)
    assert fs.ls("uploads/tables", detail=False) == ["uploads/tables/loss.csv"]
    assert fs.cat_file("uploads/tables/loss.csv", start=0, end=5) == b"epoch"
    with pytest.raises(FileNotFoundError):
        fs.ls("uploads/none")
    with pytest.raises(PermissionError, match="read-only"):
        fs.pipe_file("runs/1/x", b"no")
    direct = SpellFileSystem(f"s3://{bucket}/team", skip_instance_cache=True)
    assert direct.cat_file("uploads/tables/loss.csv") == fs.cat_file("uploads/tables/loss.csv")


def test_no_server_and_no_store_is_an_error_not_an_empty_listing(home, monkeypatch):
    use_home(monkeypatch, home)
    with pytest.raises(FileNotFoundError, match="no Spell server runs for"):
        fsspec.filesystem("spell")


def test_root_lists_namespaces_and_links(spellfs):
    spellfs.pipe("uploads/data/x.csv", b"1,2\n")
    spellfs.link("mydata", "uploads/data")
    entries = {e["name"]: e for e in spellfs.ls("")}
    assert {"runs", "uploads", "public", "mydata"} <= set(entries)
    assert entries["mydata"]["type"] == "link"
    assert entries["mydata"]["target"] == "uploads/data"
    assert spellfs.cat("mydata/x.csv") == b"1,2\n"
    assert spellfs.ls("mydata", detail=False) == ["mydata/x.csv"]
    assert spellfs.links() == {"mydata": "uploads/data"}
    spellfs.unlink("mydata")
    assert spellfs.links() == {}
    with pytest.raises(FileNotFoundError, match="link alias"):
        spellfs.ls("mydata")


@pytest.mark.parametrize(
    "alias",
    [
        "runs",
        "uploads",
        "public",
        "a/b",
        "a.b",
        'a"b',
        "a\\b",
        "a[b",
        "a]b",
        "a:b",
        "a;b",
        "a|b",
        "a=b",
        "a,b",
        "",
    ],
)
def test_bad_link_aliases_are_refused(spellfs, alias):
    spellfs.pipe("uploads/data/x", b"1")
    with pytest.raises(BadPath):
        spellfs.link(alias, "uploads/data")
    assert spellfs.links() == {}


def test_links_need_an_existing_target_and_a_free_alias(spellfs):
    with pytest.raises(FileNotFoundError):
        spellfs.link("nothing", "uploads/missing")
    spellfs.pipe("uploads/data/x", b"1")
    spellfs.link("d", "uploads/data")
    with pytest.raises(FileExistsError):
        spellfs.link("d", "uploads/other")
    assert spellfs.links() == {"d": "uploads/data"}


@pytest.mark.parametrize(
    "path", ["runs/1/../../etc", "/etc/passwd", "../x", "uploads/../../x", "~/x", "a\\b"]
)
def test_paths_that_leave_spellfs_are_refused(spellfs, path):
    with pytest.raises(BadPath):
        spellfs.info(path)
    with pytest.raises(BadPath):
        spellfs.pipe(path, b"x")


@pytest.mark.parametrize("path", ["runs/1/x.txt", "public/x", "runs/x", "x.txt"])
def test_users_write_only_under_uploads(spellfs, path):
    with pytest.raises((ReadOnlyPath, BadPath, FileNotFoundError)):
        spellfs.pipe(path, b"x")
    assert not spellfs.exists(path)


def test_run_outputs_are_readable_and_read_only(spellfs, tmp_path):
    out = tmp_path / "work" / "out.txt"
    out.parent.mkdir()
    out.write_text("result")
    spellfs.save_run_outputs(7, out.parent, [(str(out), "sub/out.txt")])
    assert spellfs.cat("runs/7/sub/out.txt") == b"result"
    for attempt in (
        lambda: spellfs.pipe("runs/7/sub/out.txt", b"changed"),
        lambda: spellfs.rm("runs/7", recursive=True),
        lambda: spellfs.open("runs/7/sub/new", "wb"),
        lambda: spellfs.mkdir("runs/7/more"),
    ):
        with pytest.raises(ReadOnlyPath, match="read-only"):
            attempt()
    assert spellfs.cat("runs/7/sub/out.txt") == b"result"


def test_symlinks_in_uploads_cannot_point_out(tmp_path):
    fs = SpellFileSystem(str(tmp_path / "root"), skip_instance_cache=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (tmp_path / "root" / "uploads" / "d").mkdir()
    os.symlink(secret, tmp_path / "root" / "uploads" / "d" / "leak")
    os.symlink(tmp_path, tmp_path / "root" / "uploads" / "up")
    with pytest.raises(BadPath, match="outside SpellFS"):
        fs.cat("uploads/d/leak")
    with pytest.raises(BadPath, match="outside SpellFS"):
        fs.ls("uploads/up")
    with pytest.raises(BadPath, match="outside SpellFS"):
        fs.pipe("uploads/up/planted", b"x")
    assert not (tmp_path / "planted").exists()


def test_public_comes_from_its_own_source_and_is_read_only(tmp_path):
    source = tmp_path / "public-data"
    (source / "mnist").mkdir(parents=True)
    (source / "mnist" / "train.csv").write_text("1\n")
    fs = SpellFileSystem(str(tmp_path / "root"), public=str(source), skip_instance_cache=True)
    assert fs.ls("public", detail=False) == ["public/mnist"]
    assert fs.cat("public/mnist/train.csv") == b"1\n"
    with pytest.raises(ReadOnlyPath):
        fs.pipe("public/mnist/new.csv", b"x")
