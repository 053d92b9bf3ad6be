"""SpellProvisioner: a jupyter_client kernel provisioner whose kernels are Spell runs of kind
kernel (as gateway_provisioners start theirs in containers): launched in the notebook's folder
with the kernel spec's machine type, environment and mounts (the notebook's `spell` metadata
over them); polled, signalled (interrupt), terminated and killed through the run. The kernel
spec names it:

    "metadata": {"kernel_provisioner": {"provisioner_name": "spell-provisioner",
                                        "config": {"options": {"machine_type": "T4"}}}}
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from tornado import web
from traitlets import Dict, Float

from ..errors import SpellError
from .registry import kernel_runs

POLL_SECONDS = 0.05  # a store read while the run starts, and while it runs


class SpellProvisioner(KernelProvisionerBase):
    """The kernel is a Spell run; this drives it from the Jupyter server."""

    options = Dict(
        config=True,
        help="What the kernel's run is made of: machine_type, framework, docker_image, "
        "apt_packages, pip_packages, envvars, mounts, labels, description",
    )
    start_timeout = Float(
        1800.0, config=True, help="Seconds the kernel's run may take to start (a first build)"
    )
    run_id: int | None = None

    @property
    def has_process(self) -> bool:
        return self.run_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        kwargs["cmd"] = []  # nothing is started on this host: the run is the kernel
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        runs = kernel_runs()
        folder = kwargs.get("cwd")  # the notebook's folder (None: the server's root)
        session = (kwargs.get("env") or {}).get("JPY_SESSION_NAME")  # the notebook
        try:  # what Jupyter answers the Lab: the reason, not "Unhandled error"
            options = {**self.options, **runs.notebook_options(session)}
            run = await asyncio.to_thread(runs.start, folder, options, self.kernel_id)
        except SpellError as exc:
            raise web.HTTPError(exc.status_code, f"Spell kernel: {exc.message}") from None
        self.run_id = run.id
        self.log.info("Spell: kernel %s is run %s (%s)", self.kernel_id, run.id, folder)
        deadline = time.monotonic() + self.start_timeout
        while True:
            info = await asyncio.to_thread(runs.connection, run.id)
            if info is not None:
                self.connection_info = info
                return info
            current = await asyncio.to_thread(runs.get, run.id)
            if current.status.is_final:
                self.run_id = None
                raise web.HTTPError(503, self._ended(current))
            if time.monotonic() > deadline:
                await asyncio.to_thread(runs.kill, run.id)
                raise web.HTTPError(
                    503,
                    f"the Spell kernel's run {run.id} did not start within "
                    f"{self.start_timeout:g} s (it was {current.status.value})",
                )
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    def _ended(run) -> str:
        return (
            f"the Spell kernel's run {run.id} ended {run.status.value}"
            + (f": {run.status_message}" if run.status_message else "")
            + f" (`spell logs {run.id}` says more)"
        )

    async def poll(self) -> int | None:
        if self.run_id is None:
            return 0
        run = await asyncio.to_thread(kernel_runs().get, self.run_id)
        if not run.status.is_final:
            return None
        if run.user_exit_code != 0:
            self.log.warning("Spell: %s", self._ended(run))
        return run.user_exit_code if run.user_exit_code is not None else 1

    async def wait(self) -> int | None:
        while True:
            status = await self.poll()
            if status is not None:
                return status
            await asyncio.sleep(POLL_SECONDS)

    async def send_signal(self, signum: int) -> None:
        if self.run_id is None or signum == 0:
            return
        if signum == signal.SIGKILL:
            await self.kill()
            return
        await asyncio.to_thread(kernel_runs().signal, self.run_id, signum)

    async def kill(self, restart: bool = False) -> None:
        if self.run_id is not None:
            await asyncio.to_thread(kernel_runs().kill, self.run_id)

    async def terminate(self, restart: bool = False) -> None:
        if self.run_id is not None:
            await asyncio.to_thread(kernel_runs().stop, self.run_id)

    async def cleanup(self, restart: bool = False) -> None:
        """The kernel's run ends (the engine removes its container); a restart starts a new
        run."""
        if self.run_id is not None and await self.poll() is None:
            await self.kill(restart)
        self.run_id = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)  # a container's stop takes a moment

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["run_id"] = self.run_id
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.run_id = provisioner_info.get("run_id")
