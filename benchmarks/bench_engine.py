"""Engine benchmarks: server CPU while runs are active, log lag to followers, queue throughput
and a run printing a million lines, each beside its baseline measured in the same process run.

    .venv/bin/python benchmarks/bench_engine.py [--base IMAGE] [--queued 200] [--lines 1000000]

Figures (all on throw-away SPELL_HOMEs, warm servers, the Docker backend unless said):
- CPU (% of one core) of the server process and of dockerd over --window seconds, with no run
  active and with 4 `sleep` runs active; both again with 10,000 finished runs in the store.
- Log lag from a line printed in a container to a `spell logs -f` client (an HTTP follower of
  /runs/<id>/logs?follow=true), p50/p95, with 1 and with 50 followers.
- --queued `true` runs, submitted at once, on Docker and on the local backend: runs/s, against
  the same number of parallel `docker run --rm <base> true` (as many at once as the server runs).
- A run printing `seq --lines`: submit to final against `docker run` capturing the same output;
  the server's peak memory (VmHWM); the start latency (submit -> running) of an `echo hi`
  submitted one second later.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

SPELL = Path(sys.executable).with_name("spell")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
PARALLEL = 4  # runs at once, in the server (capacity and limit set so) and for `docker run`
TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """A `spell server` on a fresh data directory, with room for PARALLEL CPU runs."""

    def __init__(self, home: Path, backend: str, base: str):
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        self.env.update(
            SPELL_HOME=str(home),
            SPELL_BACKEND=backend,
            SPELL_FRAMEWORKS=json.dumps({"default": base}),
        )
        home.mkdir(parents=True, exist_ok=True)
        config = {
            "SpellJupyter": {
                "host_capacity": {"cpus": PARALLEL, "memory": "16GiB", "gpus": []},
            },
            "RunEngine": {"concurrency_limit": PARALLEL},
        }
        (home / "config.json").write_text(json.dumps(config))

    def start(self) -> None:
        subprocess.run([str(SPELL), "server"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        info = json.loads((self.home / "server.json").read_text())
        self.pid, self.url, self.token = info["pid"], info["url"], info["token"]
        os.environ["SPELL_HOME"] = str(self.home)
        from spell_jupyter.client import from_environment

        self.client = from_environment()

    def stop(self) -> None:
        subprocess.run([str(SPELL), "server", "stop"], env=self.env, stdout=subprocess.DEVNULL)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def peak_memory_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def cpu_percent(pids: list[int], window: float) -> list[float]:
    before = [cpu_seconds(p) for p in pids]
    time.sleep(window)
    return [100 * (cpu_seconds(p) - b) / window for p, b in zip(pids, before, strict=True)]


def dockerd_pid() -> int:
    found = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True)
    return int(found.stdout.split()[0])


def seconds_between(run, first: str, then: str) -> float:
    at = {s["status"]: _time(s["at"]) for s in run.status_history}
    return (at[then] - at[first]).total_seconds()


def _time(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def measure_cpu(server: Server, window: float, label: str) -> None:
    pids = [server.pid, dockerd_pid()]
    idle = cpu_percent(pids, window)
    runs = [server.client.runs.new(command="sleep 600") for _ in range(4)]
    for run in runs:
        run.wait_status(server.client.runs.RUNNING, timeout=120)
    time.sleep(1)  # past the start
    busy = cpu_percent(pids, window)
    for run in runs:
        run.kill()
    for run in runs:
        run.wait_status(*server.client.runs.FINAL, timeout=60)
    print(
        f"CPU, {label}: none active: server {idle[0]:.1f}%, dockerd {idle[1]:.1f}% | "
        f"4 sleep runs active: server {busy[0]:.1f}%, dockerd {busy[1]:.1f}%"
    )


def follow(server: Server, run_id: int, lags: list[float], ready: threading.Barrier) -> None:
    request = urllib.request.Request(
        f"{server.url}spell/api/v1/runs/{run_id}/logs?follow=true",
        headers={"Authorization": f"token {server.token}"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        ready.wait()
        for raw in response:
            entry = json.loads(raw)
            if entry.get("stream") == "stdout" and entry["text"].startswith("t="):
                lags.append(time.time() - float(entry["text"][2:]))


def measure_lag(server: Server, followers: int, lines: int = 200) -> None:
    script = (
        "import time\n"
        "time.sleep(3)\n"
        f"for _ in range({lines}):\n"
        "    print(f't={time.time():.6f}', flush=True); time.sleep(0.05)\n"
    )
    run = server.client.runs.new(command=f"python3 -c {shlex.quote(script)}")
    lags: list[float] = []
    ready = threading.Barrier(followers + 1)
    threads = [
        threading.Thread(target=follow, args=(server, run.id, lags, ready), daemon=True)
        for _ in range(followers)
    ]
    for thread in threads:
        thread.start()
    ready.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=600)
    lags.sort()
    p50, p95 = lags[len(lags) // 2], lags[int(len(lags) * 0.95)]
    print(
        f"log lag, {followers} follower(s), {len(lags)} lines received: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms"
    )


def measure_queue(server: Server, count: int, label: str) -> float:
    start = time.perf_counter()
    runs = [server.client.runs.new(command="true") for _ in range(count)]
    for run in runs:
        run.wait_status(server.client.runs.COMPLETE, timeout=900)
    rate = count / (time.perf_counter() - start)
    print(f"{count} queued 'true' runs, {label}: {rate:.2f} runs/s")
    return rate


def docker_run_rate(base: str, count: int) -> float:
    start = time.perf_counter()

    def one(_):
        subprocess.run([DOCKER, "run", "--rm", base, "true"], check=True, capture_output=True)

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, range(count)))
    rate = count / (time.perf_counter() - start)
    print(f"{count} parallel `docker run --rm {base} true` ({PARALLEL} at once): {rate:.2f} runs/s")
    return rate


def measure_chatty(server: Server, base: str, lines: int) -> None:
    start = time.perf_counter()
    subprocess.run(
        [DOCKER, "run", "--rm", base, "seq", str(lines)], check=True, stdout=subprocess.DEVNULL
    )
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    chatty = server.client.runs.new(command=f"seq {lines}")
    time.sleep(1)
    other = server.client.runs.new(command="echo hi")
    other.wait_status(server.client.runs.COMPLETE, timeout=900)
    chatty.wait_status(server.client.runs.COMPLETE, timeout=900)
    total = time.perf_counter() - start
    other.refresh()
    count = sum(1 for e in chatty.logs() if e.stream == "stdout")
    print(
        f"seq {lines}: spell run {total:.1f} s vs docker run {baseline:.1f} s "
        f"({total / baseline:.1f}x), {count} lines stored, server peak memory "
        f"{server.peak_memory_mib():.0f} MiB; echo hi submitted meanwhile: submit -> running "
        f"{seconds_between(other, 'machine_requested', 'running'):.2f} s"
    )


def fill_store(home: Path, count: int) -> None:
    """`count` finished runs in the store, written straight to the database (server stopped)."""
    from sqlalchemy import insert

    from spell_jupyter.models import RunSpec
    from spell_jupyter.store import RunStore
    from spell_jupyter.store.database import connect_database, default_db_url
    from spell_jupyter.store.orm import RunRow, utcnow

    engine = connect_database(default_db_url(home))
    RunStore(engine)  # schema ready
    spec = RunSpec(command="true").model_dump(mode="json")
    now = utcnow()
    row = dict(
        kind="run", command="true", spec=spec, status="complete", status_message="Run complete",
        user_exit_code=0, created_at=now, started_at=now, ended_at=now, description="",
        machine_type="CPU", archived=False, output_cursor="", next_log_offset=0,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(RunRow), [row] * count)
    engine.dispose()


PARTS = ("cpu", "lag", "queue", "store", "chatty", "local")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="spell/base:bookworm-py311")
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which to measure, of {','.join(PARTS)}"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"cores: {os.cpu_count()}, base image {args.base}, {PARALLEL} runs at once")

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "docker", "docker", args.base)
        server.start()
        try:
            server.client.runs.new(command="true").wait_status("complete", timeout=600)  # warm
            if "cpu" in parts:
                measure_cpu(server, args.window, "empty store")
            if "lag" in parts:
                measure_lag(server, 1)
                measure_lag(server, 50)
            if "queue" in parts:
                spell_rate = measure_queue(server, args.queued, "Docker")
                docker_rate = docker_run_rate(args.base, args.queued)
                print(f"ratio spell / parallel docker run: {spell_rate / docker_rate:.2f}x")
        finally:
            server.stop()
        if "store" in parts:
            fill_store(server.home, 10_000)
            with server:
                measure_cpu(server, args.window, "10,000 runs in the store")
        if "chatty" in parts:
            with Server(Path(tmp) / "chatty", "docker", args.base) as chatty:
                measure_chatty(chatty, args.base, args.lines)
        if "local" in parts:
            with Server(Path(tmp) / "local", "local", args.base) as local:
                measure_queue(local, args.queued, "local backend")


if __name__ == "__main__":
    main()
