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


class SpellFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, spellfs):
        return spellfs

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self):
        return "uploads/abstract"

    @pytest.fixture
    def supports_empty_directories(self, spellfs):
        return spellfs.is_local


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
    fs = fsspec.filesystem("spell", root=str(tmp_path / "root"))
    assert isinstance(fs, SpellFileSystem)
    fs.pipe("uploads/a/b.txt", b"hi")
    with fsspec.open("spell://uploads/a/b.txt", root=str(tmp_path / "root")) as f:
        assert f.read() == b"hi"
    assert (tmp_path / "root" / "uploads" / "a" / "b.txt").read_bytes() == b"hi"


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
