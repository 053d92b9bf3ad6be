"""SpellFS benchmarks, each beside its baseline measured in the same process run:

- `spell upload` / `spell cp` of SIZE (default 1 GiB, in 8 files) against `cp -r` of the same
  data, on a local root;
- the same on an S3 root (a local moto server) against s3fs's own `put` / `get`;
- mounting a 10,000-file upload against a 1-file upload (time from submit to `running`), on the
  Docker backend when an engine answers (overlay, no copy) and on the local backend (copies);
- saving a SIZE output (time in saving + pushing) against `cp` of a file of that size.

    .venv/bin/python benchmarks/bench_spellfs.py [--size-mib 1024] [--files 10000]
        [--only local s3 mount save]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from spell_jupyter.client.errors import APIError

SPELL = Path(sys.executable).with_name("spell")
MOTO = Path(sys.executable).with_name("moto_server")
BASE = "spell/base:bookworm-py311"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, before=None, repeat: int = 3) -> float:
    """The least time of `repeat` calls, each after `before()` and a sync (so no call pays for
    writing back the dirty pages of the one before it)."""
    times = []
    for _ in range(repeat):
        if before:
            before()
        os.sync()
        times.append(timed(fn))
    return min(times)


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def make_data(folder: Path, size: int, files: int = 8) -> None:
    folder.mkdir(parents=True)
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(folder / f"part{i}.bin", "wb") as f:
            for _ in range(size // files >> 20):
                f.write(block)


def server(home: Path, **env: str):
    full = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
    full.update({"SPELL_HOME": str(home), **env})
    subprocess.run([str(SPELL), "server"], env=full, check=True, stdout=subprocess.DEVNULL)
    os.environ["SPELL_HOME"] = str(home)
    from spell_jupyter.client import from_environment

    return from_environment(home), full


def stop(env: dict) -> None:
    subprocess.run([str(SPELL), "server", "stop"], env=env, stdout=subprocess.DEVNULL)


def between(run, first: str, then: str) -> float:
    at = {s["status"]: _time(s["at"]) for s in run.status_history}
    return (at[then] - at[first]).total_seconds()


def _time(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def transfer(label: str, client, data: Path, work: Path, baseline_up, baseline_down, name: str):
    """Upload and download `data` against the baselines: (call, clean-up before it) pairs;
    every figure is the best of 3."""
    size = sum(p.stat().st_size for p in data.iterdir())
    down_dir = work / "down"

    def clear_upload():
        with contextlib.suppress(APIError):  # not there
            client.resources.rm("uploads/bench")

    up = best(lambda: client.resources.upload(data, name="bench"), clear_upload)
    down = best(lambda: client.resources.cp("uploads/bench", str(down_dir)), lambda: drop(down_dir))
    drop(down_dir)
    b_up, b_down = best(*baseline_up), best(*baseline_down)
    mb = size / 1e6
    print(
        f"[{label}] upload {size >> 20} MiB: {up:.2f} s ({mb / up:.0f} MB/s); "
        f"{name} {b_up:.2f} s ({mb / b_up:.0f} MB/s) -> {b_up / up:.2f}x {name}"
    )
    print(
        f"[{label}] download (spell cp): {down:.2f} s ({mb / down:.0f} MB/s); "
        f"baseline {b_down:.2f} s ({mb / b_down:.0f} MB/s) -> {b_down / down:.2f}x baseline"
    )
    client.resources.rm("uploads/bench")


def local_transfers(work: Path, data: Path) -> None:
    """A local root with its client on the same host as the same user (files copied on disk),
    then with SPELL_LOCAL_COPIES=0 (every byte over HTTP, as for a client on another host)."""
    copy = work / "copy"
    cp_r = (
        lambda: subprocess.run(["cp", "-r", str(data), str(copy)], check=True),
        lambda: drop(copy),
    )
    for label, env in (
        ("local root, same host", {}),
        ("local root, over HTTP", {"SPELL_LOCAL_COPIES": "0"}),
    ):
        home = work / "home-local"
        client, full = server(home, SPELL_BACKEND="local", SPELL_FS_ROOT=str(home / "fs"), **env)
        try:
            transfer(label, client, data, work, cp_r, cp_r, "cp -r")
        finally:
            stop(full)
            drop(home)
    drop(copy)


def s3_transfers(work: Path, data: Path) -> None:
    import s3fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in moto.stdout:
        if "Running on" in line:
            break
    threading.Thread(target=lambda: all(moto.stdout), daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    s3env = {"FSSPEC_S3_ENDPOINT_URL": endpoint, "FSSPEC_S3_KEY": "k", "FSSPEC_S3_SECRET": "s"}
    s3 = s3fs.S3FileSystem(key="k", secret="s", endpoint_url=endpoint)
    s3.mkdir("bench-root")
    s3.mkdir("bench-direct")
    client, env = server(
        work / "home-s3", SPELL_BACKEND="local", SPELL_FS_ROOT="s3://bench-root/team", **s3env
    )
    out = work / "s3get"

    def clear_direct():
        if s3.exists("bench-direct/data"):
            s3.rm("bench-direct/data", recursive=True)

    put = (lambda: s3.put(str(data), "bench-direct/data", recursive=True), clear_direct)
    get = (lambda: s3.get("bench-direct/data", str(out), recursive=True), lambda: drop(out))
    try:
        transfer("S3 root (moto)", client, data, work, put, get, "s3fs put")
    finally:
        stop(env)
        moto.terminate()
        drop(out)


def mounting(work: Path, files: int, docker: bool) -> None:
    label = "docker (overlay)" if docker else "local (copies)"
    env = (
        {"SPELL_BACKEND": "docker", "SPELL_FRAMEWORKS": json.dumps({"default": BASE})}
        if docker
        else {"SPELL_BACKEND": "local"}
    )
    client, full = server(work / f"home-mount-{'docker' if docker else 'local'}", **env)
    try:
        many = work / "many"
        if not many.exists():
            many.mkdir()
            for i in range(files):
                (many / f"f{i:05d}.txt").write_text(f"{i}\n" * 100)
        one = work / "one"
        if not one.exists():
            one.mkdir()
            (one / "f.txt").write_text("x\n")
        client.resources.upload(many, name="many")
        client.resources.upload(one, name="one")
        client.runs.new("true").wait_status("complete")  # warm: image, first container
        times = {}
        for name in ("one", "many", "one", "many"):
            run = client.runs.new(f"ls {name} | wc -l", mounts=[f"uploads/{name}"])
            run.wait_status("complete")
            times.setdefault(name, []).append(between(run, "machine_requested", "running"))
        one_t, many_t = min(times["one"]), min(times["many"])
        print(
            f"[mount, {label}] submit->running: 1 file {one_t * 1000:.0f} ms, {files} files "
            f"{many_t * 1000:.0f} ms -> {many_t / one_t:.2f}x"
        )
    finally:
        stop(full)


def saving(work: Path, size: int) -> None:
    client, env = server(work / "home-save", SPELL_BACKEND="local")
    try:
        mib = size >> 20
        run = client.runs.new(f"head -c {mib}M /dev/zero > out.bin")
        run.wait_status("complete")
        save = between(run, "saving", "complete")
        src = work / "zero.bin"
        with open(src, "wb") as out:
            subprocess.run(["head", "-c", f"{mib}M", "/dev/zero"], stdout=out, check=True)
        copy = timed(lambda: shutil.copyfile(src, work / "zero.copy"))
        print(
            f"[save, local root] saving a {mib} MiB output: {save * 1000:.0f} ms "
            f"(moved into runs/<id>); cp of the same file {copy * 1000:.0f} ms"
        )
    finally:
        stop(env)


def docker_answers() -> bool:
    from spell_jupyter.backends.docker import docker_answers as answers

    return answers()


PARTS = ["local", "s3", "mount", "save"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=PARTS, help="measure only these parts"
    )
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="spell-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        data = work / "data"
        make_data(data, size)
        if "local" in args.only:
            local_transfers(work, data)
        if "s3" in args.only:
            s3_transfers(work, data)
        drop(data)
        if "mount" in args.only:
            if docker_answers():
                mounting(work, args.files, docker=True)
            mounting(work, args.files, docker=False)
        if "save" in args.only:
            saving(work, size)


if __name__ == "__main__":
    main()
