"""Mounts: the seeds' chain from the CLI, folder and file mounts, writes under a mount saved as
the run's outputs (the resource unchanged), bucket mounts through the cache, mount_failed."""

from __future__ import annotations

import uuid

import pytest
from helpers import notes, user_lines


def run_ok(home, *args: str) -> str:
    result = home.spell("run", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_seeds_chain_on_each_backend(any_backend):
    """spell run "echo hello world! > foo.txt", then mount runs/<id>/foo.txt into the next."""
    run_ok(any_backend, "echo hello world! > foo.txt")
    out = run_ok(any_backend, "--mount", "runs/1/foo.txt:/spell/foo.txt", "cat foo.txt")
    assert "hello world!" in out.splitlines()
    second = any_backend.client().runs.get(2)
    assert second.status == "complete"
    assert _walk(any_backend.client(), "runs/2") == []  # the mount is not an output


def test_folder_mounts_keep_the_resource_and_save_the_runs_writes(any_backend):
    home = any_backend
    run_ok(home, "mkdir -p data && seq 3 > data/n.txt && echo keep > data/same.txt")
    run_ok(
        home,
        "-m",
        "runs/1/data",
        "-m",
        "runs/1/data:inputs",
        "cat data/n.txt inputs/same.txt; echo 4 >> data/n.txt; echo new > inputs/new.txt",
    )
    client = home.client()
    assert user_lines(client.runs.get(2)) == ["1", "2", "3", "keep"]
    saved = {e["path"]: e["size"] for e in _walk(client, "runs/2")}
    assert saved == {"runs/2/data/n.txt": 8, "runs/2/inputs/new.txt": 4}  # same.txt: unchanged
    assert {e["path"]: e["size"] for e in _walk(client, "runs/1")} == {
        "runs/1/data/n.txt": 6,
        "runs/1/data/same.txt": 5,
    }


@pytest.mark.docker
def test_absolute_mount_paths_in_docker(docker_served):
    run_ok(docker_served, "mkdir d && echo x > d/a.txt")
    out = run_ok(docker_served, "-m", "runs/1/d:/mnt/d", "cat /mnt/d/a.txt; echo y > /mnt/d/b.txt")
    assert "x" in out.splitlines()
    paths = [e["path"] for e in _walk(docker_served.client(), "runs/2")]
    assert paths == ["runs/2/mnt/d/b.txt"]


def test_absolute_mount_paths_are_refused_by_the_local_backend(served):
    result = served.spell("run", "-m", "uploads/x:/mnt/x", "true")
    assert result.returncode == 1
    assert "only inside the run's working folder" in result.stderr
    assert served.client().runs.list() == []


def test_a_missing_resource_ends_mount_failed_naming_it(served):
    result = served.spell("run", "-m", "runs/99/model", "true")
    assert result.returncode != 0
    run = served.client().runs.get(1)
    assert run.status == "mount_failed"
    assert "Mount failed: runs/99/model does not exist" in notes(run)


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        (["uploads/a:x", "runs/1:x"], "both go to /spell/x"),
        (["runs/1/../../etc"], "leaves SpellFS"),
        (["/etc"], "is not a SpellFS path"),
        (["runs"], "names a whole namespace"),
        (["uploads/a:/proc/a"], "cannot be placed at /proc/a"),
        (["ftp://host/x"], "invalid bucket URL"),
    ],
)
def test_bad_mounts_are_refused_before_a_run_exists(served, mounts, message):
    args = [a for m in mounts for a in ("-m", m)]
    result = served.spell("run", *args, "true")
    assert result.returncode == 1
    assert message in result.stderr
    assert served.client().runs.list() == []


def test_bucket_mounts_are_fetched_once_into_the_cache(serve, s3_server):
    import s3fs

    bucket = s3_server.new_bucket(f"data-{uuid.uuid4().hex[:10]}")
    s3 = s3fs.S3FileSystem(**s3_server.options)
    s3.pipe(f"{bucket}/set/a.csv", b"1,2\n")
    s3.pipe(f"{bucket}/set/sub/b.csv", b"3,4\n")
    home = serve(**s3_server.env)
    run_ok(home, "-m", f"s3://{bucket}/set:set", "cat set/a.csv set/sub/b.csv")
    run_ok(home, "-m", f"s3://{bucket}/set:set", "cat set/a.csv")
    first, second = (home.client().runs.get(i) for i in (1, 2))
    assert user_lines(first) == ["1,2", "3,4"]
    assert any("(fetched)" in n for n in notes(first))
    assert any("(cached)" in n for n in notes(second))
    s3.pipe(f"{bucket}/set/a.csv", b"changed\n")  # a changed bucket is fetched again
    run_ok(home, "-m", f"s3://{bucket}/set:set", "cat set/a.csv")
    third = home.client().runs.get(3)
    assert user_lines(third) == ["changed"]
    assert any("(fetched)" in n for n in notes(third))


@pytest.mark.docker
def test_mounting_in_docker_leaves_no_volumes(docker_served):
    import docker

    run_ok(docker_served, "mkdir d && echo x > d/a")
    run_ok(docker_served, "-m", "runs/1/d", "cat d/a")
    from spell_jupyter.backends.docker import home_key

    key = home_key(docker_served.path / "docker")
    assert any("overlays" in n for n in notes(docker_served.client().runs.get(2)))
    volumes = docker.from_env().volumes.list(filters={"label": f"spell.home={key}"})
    assert volumes == []


def _walk(client, path: str) -> list[dict]:
    from spell_jupyter.client.errors import APIError

    found = []
    try:
        entries = client.resources.ls(path)
    except APIError as exc:
        if exc.status_code == 404:
            return []  # a run that saved nothing
        raise
    for entry in entries:
        if entry["type"] == "directory":
            found += _walk(client, entry["path"])
        else:
            found.append(entry)
    return sorted(found, key=lambda e: e["path"])


def test_host_files_cannot_be_mounted_unless_an_administrator_shares_a_folder(serve, tmp_path):
    from helpers import configured_server

    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("shared\n")
    home = serve()
    for url in (f"file://{secret}", f"file://{shared}", "file:///etc/passwd"):
        result = home.spell("run", "-m", f"{url}:here", "cat here")
        assert result.returncode == 1 and "is not allowed here" in result.stderr, url
        assert "allowed_mount_urls" in result.stderr
    assert home.client().runs.list() == []
    assert home.spell("server", "stop").returncode == 0

    admin = configured_server(serve, tmp_path, allowed_mount_urls=["s3://", f"file://{shared}/"])
    ok = admin.spell("run", "-m", f"file://{shared}:inputs", "cat inputs/data.txt")
    assert ok.returncode == 0 and "shared" in ok.stdout.splitlines(), ok.stdout + ok.stderr
    refused = admin.spell("run", "-m", f"file://{secret}:s", "cat s")
    assert refused.returncode == 1 and "is not allowed here" in refused.stderr
    cache = admin.path / "cache" / "mounts"
    assert cache.stat().st_mode & 0o777 == 0o700
