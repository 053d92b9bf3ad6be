"""Machine types, host capacity and GPU allocation: the allocator alone (no GPU needed), and the
scheduler through real server processes on a host declared in Jupyter configuration."""

from __future__ import annotations

import pytest
from helpers import configured_server, wait_for_line, wait_for_note

from spell_jupyter.engine.machine_types import (
    DEFAULT_MACHINE_TYPES,
    HostCapacity,
    MachineTypes,
    parse_memory,
)
from spell_jupyter.errors import InvalidInput

FOUR_T4 = [{"index": i, "model": "Tesla T4"} for i in range(4)]


def table(host: dict) -> MachineTypes:
    types = {**DEFAULT_MACHINE_TYPES, "T4x2": {"cpus": 1, "memory": "1GiB", "gpu": "T4", "gpus": 2}}
    return MachineTypes(types, HostCapacity.from_config(host))


def test_gpus_are_never_shared():
    types = table({"cpus": 64, "memory": "256GiB", "gpus": FOUR_T4})
    first = types.allocate("T4x2", [])
    second = types.allocate("T4x2", [first])
    assert len(first.gpu_indices) == len(second.gpu_indices) == 2
    assert set(first.gpu_indices) | set(second.gpu_indices) == {0, 1, 2, 3}
    assert types.allocate("T4x2", [first, second]) is None
    assert types.allocate("T4", [first]) is not None  # two T4s left for single-GPU runs
    assert types.allocate("T4x2", [second]).gpu_indices == first.gpu_indices  # freed again


def test_cpu_and_memory_are_capacity_too():
    types = table({"cpus": 1, "memory": "4GiB", "gpus": []})
    one = types.allocate("CPU", [])
    assert one.gpu_indices == () and types.allocate("CPU", [one]) is None
    report = {row["name"]: row for row in types.describe([])}
    assert report["CPU"]["available"] == 1
    assert "needs 1 T4 GPU(s) and this host has no GPUs" in report["T4"]["unavailable_reason"]


def test_submit_refuses_types_that_are_unknown_or_can_never_run_here():
    types = table({"cpus": 2, "memory": "8GiB", "gpus": []})
    assert types.canonical("cpu") == "CPU" and types.canonical(" Cpu ") == "CPU"
    with pytest.raises(InvalidInput, match="known machine types are A100, CPU, CPU-big"):
        types.canonical("K80")
    with pytest.raises(InvalidInput, match="T4 cannot run here: it needs 1 T4 GPU"):
        types.canonical("T4")
    with pytest.raises(InvalidInput, match="needs 4 CPUs and this host has 2"):
        types.canonical("CPU-big")


def test_memory_sizes():
    assert parse_memory("16GiB") == 16384 and parse_memory("512M") == 512 and parse_memory(64) == 64
    with pytest.raises(ValueError, match="16GiB"):
        parse_memory("lots")


def test_a_run_waits_until_the_host_has_room(serve, tmp_path):
    home = configured_server(
        serve, tmp_path, host_capacity={"cpus": 1, "memory": "8GiB", "gpus": []}
    )
    go = tmp_path / "go"
    client = home.client()
    hold = f"echo started; while [ ! -f {go} ]; do sleep 0.05; done"
    first = client.runs.new(command=hold)
    second = client.runs.new(command="echo second")
    wait_for_line(first, "started")
    wait_for_note(second, "waiting for a CPU machine")
    second.refresh()
    assert second.status == "machine_requested"

    go.touch()
    second.wait_status("complete")
    first.wait_status("complete")
    left_queue = next(s["at"] for s in second.status_history if s["status"] == "building")
    assert left_queue >= first.ended_at
    report = {t["name"]: t for t in client.machine_types()["machine_types"]}
    assert report["CPU"]["available"] == 1


def test_gpu_runs_see_only_their_own_gpus(serve, tmp_path):
    home = configured_server(
        serve,
        tmp_path,
        host_capacity={"cpus": 8, "memory": "8GiB", "gpus": FOUR_T4},
        machine_types={
            "CPU": {"cpus": 1, "memory": "1GiB"},
            "T4x2": {"cpus": 1, "memory": "1GiB", "gpu": "T4", "gpus": 2},
        },
    )
    go = tmp_path / "go"
    client = home.client()
    hold = f"echo gpus=$CUDA_VISIBLE_DEVICES; while [ ! -f {go} ]; do sleep 0.05; done"
    runs = [client.runs.new(command=hold, machine_type="t4x2") for _ in range(3)]
    seen = [wait_for_line(r, "gpus=").removeprefix("gpus=").split(",") for r in runs[:2]]
    assert all(len(s) == 2 for s in seen)
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[0] + seen[1]) == {"0", "1", "2", "3"}
    wait_for_note(runs[2], "waiting for a T4x2 machine")

    cpu = client.runs.new(command="echo gpus=[$CUDA_VISIBLE_DEVICES]")
    assert wait_for_line(cpu, "gpus=") == "gpus=[]"  # CPU runs see no GPU

    go.touch()
    for run in runs:
        run.wait_status("complete")
    assert sorted(runs[2].raw["allocation"]["gpus"]) in ([0, 1], [2, 3])
    listing = home.spell("machine-types")
    assert listing.returncode == 0 and "T4x2" in listing.stdout and "0:Tesla T4" in listing.stdout


def test_gpu_type_on_a_host_without_gpus_is_refused_at_submit(served):
    from spell_jupyter.client import APIError

    client = served.client()
    if client.machine_types()["host"]["gpus"]:
        pytest.skip("this host has GPUs")
    with pytest.raises(APIError, match="T4 cannot run here") as info:
        client.runs.new(command="nvidia-smi", machine_type="T4")
    assert info.value.status_code == 400
    assert client.runs.list() == []


def test_gpu_usage_reads_nvidia_smi_for_the_runs_gpus_only(tmp_path, monkeypatch):
    from spell_jupyter.gpus import gpu_usage

    fake = tmp_path / "nvidia-smi"  # stands in for the driver's tool: no GPU on CI
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=index,utilization.gpu,memory.used,memory.total*)\n'
        "  printf '0, 97, 1000, 15360\\n1, 3, 10, 15360\\n2, [N/A], 0, 15360\\n';; esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert gpu_usage([0, 2]) == [
        {
            "index": 0,
            "utilization_percent": 97.0,
            "memory_used_mib": 1000.0,
            "memory_total_mib": 15360.0,
        },
        {
            "index": 2,
            "utilization_percent": None,
            "memory_used_mib": 0.0,
            "memory_total_mib": 15360.0,
        },
    ]
