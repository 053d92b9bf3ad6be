"""Kernel specs whose kernels are Spell runs: "Python 3 (Spell · T4)" and the like, written
where Jupyter finds kernel specs (the user's Jupyter data folder unless told otherwise)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

PROVISIONER = "spell-provisioner"
PREFIX = "spell-"


def spec_name(name: str) -> str:
    """`spell-<name>`, lower case, as Jupyter names kernel specs."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"invalid kernel spec name {name!r}: use letters, digits, . _ or -")
    return PREFIX + slug


def kernel_json(display_name: str, options: dict) -> dict:
    return {
        "argv": ["python3", "-m", "spell_jupyter.kernel_launcher"],  # run inside the run
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER,
                "config": {"options": options},
            },
            "spell": {"machine_type": options.get("machine_type", "CPU")},
        },
    }


def install(name: str, options: dict, display_name: str | None = None, replace: bool = True) -> str:
    """Write the kernel spec `spell-<name>` (its folder); `replace=False` keeps one there."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    kernel = spec_name(name)
    if not replace and kernel in manager.find_kernel_specs():
        return manager.find_kernel_specs()[kernel]
    title = display_name or f"Python 3 (Spell · {options.get('machine_type', 'CPU')})"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(kernel_json(title, options), indent=1))
        return manager.install_kernel_spec(tmp, kernel, user=True)


def install_defaults(machine_types: list[str]) -> list[str]:
    """One spec per machine type this host can hold, unless one of that name is there."""
    return [install(t, {"machine_type": t}, replace=False) for t in machine_types]
