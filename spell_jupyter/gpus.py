"""The NVIDIA GPUs of the machine this process runs on, as nvidia-smi reports them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable


def nvidia_smi(*fields: str) -> list[list[str]]:
    """Rows of `nvidia-smi --query-gpu=FIELDS` ([] where there is no NVIDIA driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines()]
    return [row for row in rows if len(row) == len(fields) and row[0].isdigit()]


def gpu_usage(indices: Iterable[int]) -> list[dict]:
    """Utilisation and memory of the given GPUs, from nvidia-smi ([] where it is absent)."""
    wanted = set(indices)
    return [
        {
            "index": int(index),
            "utilization_percent": _number(util),
            "memory_used_mib": _number(used),
            "memory_total_mib": _number(total),
        }
        for index, util, used, total in nvidia_smi(
            "index", "utilization.gpu", "memory.used", "memory.total"
        )
        if int(index) in wanted
    ]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" on some boards
