"""Inside a remote kernel's run: ipykernel's connection file written from what the backend
gives the run ($SPELL_PORTS: shell, iopub, stdin, control and heartbeat ports; $SPELL_BIND;
$SPELL_SERVICE_TOKEN, the messages' signing key), then this process becomes the kernel.

    python3 -m spell_jupyter.kernel_launcher

Standard library until ipykernel, which the run's environment has.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def connection_file() -> str:
    """Write the connection file (private, in a temporary folder); its path. The variables
    are taken out of the environment: the kernel's own code does not see the key."""
    ports = os.environ.pop("SPELL_PORTS").split(",")
    info = {
        "transport": "tcp",
        "ip": os.environ.pop("SPELL_BIND"),
        "key": os.environ.pop("SPELL_SERVICE_TOKEN"),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
        **{channel: int(port) for channel, port in zip(CHANNELS, ports, strict=True)},
    }
    os.environ.pop("SPELL_PORT", None)
    fd, path = tempfile.mkstemp(prefix="spell-kernel-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return path


def main() -> None:
    path = connection_file()
    from ipykernel.kernelapp import launch_new_instance

    sys.argv = [sys.argv[0], "-f", path]
    launch_new_instance()


if __name__ == "__main__":
    main()
