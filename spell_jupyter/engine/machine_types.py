"""Machine types and the host's capacity: which runs fit now, and which GPUs each one gets.

A machine type is a name users pick with `-t` (matched case-insensitively) for CPUs, memory and
GPUs. The host's capacity is read from the machine (CPU count, /proc/meminfo, `nvidia-smi`) or
declared in configuration; the scheduler places a run only where its type fits in what is free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import InvalidInput
from ..gpus import nvidia_smi

MIB_PER_UNIT = {"": 1, "m": 1, "mi": 1, "mib": 1, "g": 1024, "gi": 1024, "gib": 1024}

# Like Spell's public catalogue; a site's own table replaces it through configuration.
DEFAULT_MACHINE_TYPES: dict[str, dict] = {
    "CPU": {"cpus": 1, "memory": "2GiB"},
    "CPU-big": {"cpus": 4, "memory": "16GiB"},
    "T4": {"cpus": 4, "memory": "16GiB", "gpu": "T4", "gpus": 1},
    "V100": {"cpus": 8, "memory": "61GiB", "gpu": "V100", "gpus": 1},
    "V100x4": {"cpus": 32, "memory": "244GiB", "gpu": "V100", "gpus": 4},
    "A100": {"cpus": 12, "memory": "85GiB", "gpu": "A100", "gpus": 1},
    "H100": {"cpus": 26, "memory": "200GiB", "gpu": "H100", "gpus": 1},
}


def parse_memory(value: int | float | str) -> int:
    """'16GiB' / '512M' / 2048 (MiB) -> MiB."""
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).lower() not in MIB_PER_UNIT:
        raise ValueError(f"memory must look like 512MiB or 16GiB, not {value!r}")
    return int(float(match.group(1)) * MIB_PER_UNIT[match.group(2).lower()])


@dataclass(frozen=True)
class MachineType:
    name: str
    cpus: float
    memory_mib: int
    gpu: str = ""
    gpus: int = 0

    @classmethod
    def from_config(cls, name: str, spec: dict) -> MachineType:
        return cls(
            name=name,
            cpus=float(spec.get("cpus", 1)),
            memory_mib=parse_memory(spec.get("memory", 0)),
            gpu=str(spec.get("gpu", "")),
            gpus=int(spec.get("gpus", 0)),
        )


@dataclass(frozen=True)
class Gpu:
    index: int
    model: str


@dataclass(frozen=True)
class HostCapacity:
    cpus: float
    memory_mib: int
    gpus: tuple[Gpu, ...] = ()

    @classmethod
    def from_config(cls, spec: dict) -> HostCapacity:
        """Declared capacity; anything left out is read from the machine."""
        detected = cls.detect() if set(spec) != {"cpus", "memory", "gpus"} else None
        gpus = spec.get("gpus")
        return cls(
            cpus=float(spec["cpus"]) if "cpus" in spec else detected.cpus,
            memory_mib=parse_memory(spec["memory"]) if "memory" in spec else detected.memory_mib,
            gpus=tuple(Gpu(int(g["index"]), str(g["model"])) for g in gpus)
            if gpus is not None
            else detected.gpus,
        )

    @classmethod
    def detect(cls) -> HostCapacity:
        return cls(cpus=float(os.cpu_count() or 1), memory_mib=_memory_mib(), gpus=_nvidia_gpus())


@dataclass(frozen=True)
class Allocation:
    """What one run holds while it is past machine_requested."""

    cpus: float
    memory_mib: int
    gpu_indices: tuple[int, ...] = field(default_factory=tuple)

    def as_json(self) -> dict:
        return {"cpus": self.cpus, "memory_mib": self.memory_mib, "gpus": list(self.gpu_indices)}

    @classmethod
    def from_json(cls, data: dict) -> Allocation:
        return cls(data["cpus"], data["memory_mib"], tuple(data.get("gpus", ())))


class MachineTypes:
    """The table of machine types, checked against the host it schedules on. Without a host
    (`None`), a cluster places runs: its backend says what fits, and where."""

    def __init__(self, table: dict[str, dict], host: HostCapacity | None):
        self.types = {name: MachineType.from_config(name, spec) for name, spec in table.items()}
        self.host = host
        self._by_lower = {name.lower(): name for name in self.types}

    def canonical(self, name: str) -> str:
        """The configured spelling of `name`; refuses unknown types and types that never fit."""
        found = self._by_lower.get(name.strip().lower())
        if found is None:
            known = ", ".join(sorted(self.types))
            raise InvalidInput(f"unknown machine type {name!r}: known machine types are {known}")
        problem = self.never_fits(self.types[found])
        if problem:
            raise InvalidInput(f"machine type {found} cannot run here: {problem}")
        return found

    def never_fits(self, mtype: MachineType) -> str:
        host = self.host
        if host is None:
            return ""  # the cluster's backend refuses what no node holds
        if mtype.gpus:
            matching = [g for g in host.gpus if _same_model(g.model, mtype.gpu)]
            if len(matching) < mtype.gpus:
                have = ", ".join(sorted({g.model for g in host.gpus})) or "no GPUs"
                return f"it needs {mtype.gpus} {mtype.gpu} GPU(s) and this host has {have}"
        if mtype.cpus > host.cpus:
            return f"it needs {mtype.cpus:g} CPUs and this host has {host.cpus:g}"
        if mtype.memory_mib > host.memory_mib:
            return f"it needs {mtype.memory_mib} MiB of memory and this host has {host.memory_mib}"
        return ""

    def allocate(self, name: str, held: Iterable[Allocation]) -> Allocation | None:
        """An allocation for a run of type `name` from what `held` leaves free, or None."""
        mtype = self.types[name]
        if self.host is None:  # what the run asks of the node the cluster places it on
            return Allocation(mtype.cpus, mtype.memory_mib)
        held = list(held)
        free_cpus = self.host.cpus - sum(a.cpus for a in held)
        free_memory = self.host.memory_mib - sum(a.memory_mib for a in held)
        if mtype.cpus > free_cpus + 1e-9 or mtype.memory_mib > free_memory:
            return None
        taken = {i for a in held for i in a.gpu_indices}
        free_gpus = [
            g.index
            for g in self.host.gpus
            if g.index not in taken and _same_model(g.model, mtype.gpu)
        ]
        if len(free_gpus) < mtype.gpus:
            return None
        return Allocation(mtype.cpus, mtype.memory_mib, tuple(sorted(free_gpus)[: mtype.gpus]))

    def describe(self, held: Iterable[Allocation]) -> list[dict]:
        """Each type with its resources and how many more runs of it fit right now."""
        held = list(held)
        rows = []
        for mtype in self.types.values():
            fit, extra = 0, list(held)
            if self.host is None:
                fit = None  # the cluster's free capacity is its scheduler's to know
            elif not self.never_fits(mtype):
                while fit < 1024 and (got := self.allocate(mtype.name, extra)) is not None:
                    extra.append(got)
                    fit += 1
            rows.append(
                {
                    "name": mtype.name,
                    "cpus": mtype.cpus,
                    "memory_mib": mtype.memory_mib,
                    "gpu": mtype.gpu,
                    "gpus": mtype.gpus,
                    "available": fit,
                    "unavailable_reason": self.never_fits(mtype),
                }
            )
        return rows


def _same_model(have: str, want: str) -> bool:
    """'Tesla T4' satisfies 'T4'; a GPU-less type matches nothing it would take."""
    return bool(want) and want.lower() in have.lower()


def _memory_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)


def _nvidia_gpus() -> tuple[Gpu, ...]:
    return tuple(Gpu(int(index), name) for index, name in nvidia_smi("index", "name"))
