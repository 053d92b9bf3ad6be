"""KernelRuns: remote kernels are runs of kind kernel: ipykernel in a container of a machine
type and environment, working in its notebook's folder of this host (read-write, as a local
kernel would), its five ports reachable from this host alone and its messages signed with the
run's service token. The kernel provisioner (kernels/provisioner.py) starts and drives them
through this, inside the Jupyter server that has the extension."""

from __future__ import annotations

import json
from pathlib import Path

from ..engine import RunControl
from ..engine.service_tokens import ServiceTokens
from ..errors import InvalidInput
from ..kernel_launcher import CHANNELS
from ..models import Run, RunKind, RunSpec, Status
from ..store import RunStore
from .runs import RunManager

KERNEL_COMMAND = "exec python3 -m spell_jupyter.kernel_launcher"
# what a kernel spec may set of a run (the rest is the kernel's own)
KERNEL_OPTIONS = {
    "machine_type",
    "framework",
    "docker_image",
    "apt_packages",
    "pip_packages",
    "envvars",
    "mounts",
    "labels",
    "description",
}


class KernelRuns:
    """Start remote kernels, tell their connection, signal, stop and kill them."""

    def __init__(
        self,
        runs: RunManager,
        store: RunStore,
        engine: RunControl,
        tokens: ServiceTokens,
        root_dir: str | Path,
        owner: str | None = None,
    ):
        self.owner = owner  # the server's user: Jupyter does not say whose kernel it starts
        self.runs = runs
        self.store = store
        self.engine = engine
        self.tokens = tokens
        self.root = Path(root_dir).resolve()

    def start(self, folder: str | Path | None, options: dict, kernel_id: str = "") -> Run:
        """A kernel run working in `folder` (inside this Jupyter server's root; None: the root)
        with the kernel spec's `options` (machine type, environment, mounts, variables)."""
        unknown = sorted(set(options) - KERNEL_OPTIONS)
        if unknown:
            raise InvalidInput(
                f"a Spell kernel spec sets {', '.join(sorted(KERNEL_OPTIONS))}, not "
                f"{', '.join(unknown)}"
            )
        place = Path(folder).resolve() if folder else self.root
        if not place.is_relative_to(self.root) or not place.is_dir():
            raise InvalidInput(
                f"{folder}: a Spell kernel works in a folder of this Jupyter server's ({self.root})"
            )
        spec = RunSpec.model_validate(
            {
                **options,
                "kind": RunKind.KERNEL.value,
                "command": KERNEL_COMMAND,
                "kernel": {"folder": str(place), "kernel_id": kernel_id},
            }
        )
        return self.runs.submit_any(spec, owner=self.owner)

    def notebook_options(self, session_name: str | None) -> dict:
        """The `spell` entry of the notebook's metadata (its kernel's options over the kernel
        spec's), where the session names a notebook of this server's folder; {} elsewise."""
        if not session_name or not session_name.endswith(".ipynb"):
            return {}
        path = Path(session_name) if Path(session_name).is_absolute() else self.root / session_name
        path = path.resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return {}
        try:
            metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError, AttributeError):
            return {}  # not a notebook Jupyter could open either
        options = metadata.get("spell", {}) if isinstance(metadata, dict) else {}
        if not isinstance(options, dict):
            raise InvalidInput(f"{session_name}: the notebook's metadata 'spell' must be an object")
        return options

    def get(self, run_id: int) -> Run:
        return self.store.get_run(run_id)

    def connection(self, run_id: int) -> dict | None:
        """The kernel's connection info once its run runs (None before)."""
        run = self.store.get_run(run_id)
        handle = self.store.handle_of(run_id) or {}
        if run.status != Status.RUNNING or "addresses" not in handle:
            return None
        ports = [int(address.rsplit(":", 1)[1]) for address in handle["addresses"]]
        return {
            "transport": "tcp",
            "ip": "127.0.0.1",
            "key": self.tokens.token(run_id).encode(),
            "signature_scheme": "hmac-sha256",
            **dict(zip(CHANNELS, ports, strict=True)),
        }

    def signal(self, run_id: int, signum: int) -> bool:
        return self.engine.signal_run(run_id, signum)

    def stop(self, run_id: int) -> None:
        if not self.store.get_run(run_id).status.is_final:
            self.runs.stop(run_id)

    def kill(self, run_id: int) -> None:
        if not self.store.get_run(run_id).status.is_final:
            self.runs.kill(run_id)
