"""Cluster benchmarks: the Ray backend on a local Ray cluster against its baselines, measured in
the same process run.

    .venv/bin/python benchmarks/bench_cluster.py [--runs 10] [--queued 200] [--base IMAGE]
        [--queued-containers 40]

Figures (throw-away SPELL_HOMEs, warm servers, SpellFS on a local folder):
- Submit -> running (the run's status history) of `sleep 1` runs on a warm two-node cluster:
  as Docker containers of the base image on the nodes against the single-host Docker backend
  (where a Docker Engine answers), and as processes of the nodes against the local backend.
- --queued `true` runs submitted at once on the same warm cluster: of a machine type only node a
  declares (one node), then of type CPU (either node; 2 CPUs each, 1 CPU a run): runs/s, and
  the ratio (throughput should scale with the nodes); --queued-containers the same as Docker
  containers on the nodes, against as many on the single-host Docker backend.
- Log lag from a line printed in a run on the worker node (machine type T4, node b only) to an
  HTTP follower of /runs/<id>/logs?follow=true: p50/p95.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import Server, measure_lag, seconds_between
from ray_cluster import RayCluster

TYPES = {
    "CPU": {"cpus": 1, "memory": "128MiB"},
    "A": {"cpus": 1, "memory": "128MiB"},  # node a alone declares spell-A
    "T4": {"cpus": 1, "memory": "128MiB", "gpu": "T4", "gpus": 1},
}


class ClusterServer(Server):
    """A `spell server` placing runs on `cluster`: as processes of the nodes, or with `base`
    as Docker containers of that image there."""

    def __init__(self, home: Path, cluster: RayCluster, base: str | None = None):
        super().__init__(home, "ray", base or "unused")
        self.env.update(cluster.env())
        if base is None:
            self.env.pop("SPELL_FRAMEWORKS", None)
        config = {
            "SpellJupyter": {"machine_types": TYPES},
            "RayBackend": {"node_containers": base is not None},
        }
        (home / "config.json").write_text(json.dumps(config))


def submit_to_running(server: Server, count: int, label: str, **options) -> float:
    for _ in range(2):  # warm: worker processes, environments, connections
        server.client.runs.new(command="true", **options).wait_status("complete", timeout=300)
    waits = []
    for _ in range(count):
        run = server.client.runs.new(command="sleep 1", **options)
        run.wait_status("complete", timeout=300)
        run.refresh()
        waits.append(seconds_between(run, "machine_requested", "running"))
    median = statistics.median(waits)
    print(f"submit -> running, {label}: median {median:.3f} s, max {max(waits):.3f} s")
    return median


def throughput(server: Server, count: int, label: str, **options) -> float:
    start = time.perf_counter()
    runs = [server.client.runs.new(command="true", **options) for _ in range(count)]
    for run in runs:
        run.wait_status(*server.client.runs.FINAL, timeout=3600)
    elapsed = time.perf_counter() - start
    for run in runs:
        run.refresh()
    failed = sum(1 for r in runs if r.status != "complete")
    rate = count / elapsed
    print(f"{count} queued runs, {label}: {elapsed:.1f} s, {rate:.2f} runs/s ({failed} failed)")
    phases = [("building", "running"), ("running", "saving"), ("saving", "complete")]
    shown = ", ".join(
        f"{a}->{b} {statistics.median(seconds_between(r, a, b) for r in runs):.3f} s"
        for a, b in phases
    )
    print(f"  median per run: {shown}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--base", default="spell/base:bookworm-py311")
    parser.add_argument("--queued-containers", type=int, default=40)
    args = parser.parse_args()
    os.environ["SPELL_STOP_GRACE_PERIOD"] = "5"
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))

    from spell_jupyter.backends.docker import docker_answers

    baselines = {}
    if docker_answers():
        with Server(root / "docker", "docker", args.base) as server:
            baselines["docker"] = submit_to_running(server, args.runs, "single-host Docker")
            if args.queued_containers:
                baselines["docker_rate"] = throughput(
                    server, args.queued_containers, "single-host Docker"
                )
    with Server(root / "local", "local", args.base) as server:
        baselines["local"] = submit_to_running(server, args.runs, "single-host local processes")

    cluster = RayCluster.start({"num_cpus": 2, "resources": {"spell-A": 2}})
    try:
        cluster.add("b", num_cpus=2, num_gpus=1, resources={"spell-T4": 1})
        if "docker" in baselines:
            with ClusterServer(root / "containers", cluster, args.base) as server:
                label = "warm two-node Ray cluster, Docker containers on the nodes"
                ray = submit_to_running(server, args.runs, label)
                print(f"  cluster overhead over docker: {ray - baselines['docker']:+.3f} s per run")
                if args.queued_containers:
                    count = args.queued_containers
                    one = throughput(server, count, "containers, one node", machine_type="A")
                    two = throughput(server, count, "containers, two nodes")
                    print(
                        f"  two nodes / one node: {two / one:.2f}x; two nodes / single-host "
                        f"Docker: {two / baselines['docker_rate']:.2f}x (one Docker Engine and "
                        "2 cores under both nodes here)"
                    )
        with ClusterServer(root / "cluster", cluster) as server:
            label = "warm two-node Ray cluster, processes on the nodes"
            ray = submit_to_running(server, args.runs, label)
            print(f"  cluster overhead over local: {ray - baselines['local']:+.3f} s per run")
            # one node: machine type A, which node a alone holds; two: type CPU, either node
            one = throughput(server, args.queued, "one node (2 CPUs)", machine_type="A")
            two = throughput(server, args.queued, "two nodes (2 CPUs each)")
            print(f"  two nodes / one node: {two / one:.2f}x")
            measure_lag_on(server, "T4")
    finally:
        cluster.shutdown()


def measure_lag_on(server: Server, machine_type: str) -> None:
    """bench_engine's log lag, for a run of `machine_type` (placed on the worker node)."""
    new = server.client.runs.new
    server.client.runs.new = lambda **kw: new(machine_type=machine_type, **kw)
    try:
        print(f"(a run of machine type {machine_type}: on the worker node)")
        measure_lag(server, 1)
    finally:
        server.client.runs.new = new


if __name__ == "__main__":
    main()
