"""How code inside a run reaches its server: the server's API on a Unix socket in a private
folder (never on the network), on the server's host or (for a cluster's nodes) relayed by the
node's agent to the leading server; the run's own token, and the light client on PYTHONPATH,
so `import spell.client` and `spell.metrics.send_metric` work in any run with no set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..client_library import client_packages, link_client_packages

__all__ = ["RunApi", "api_environment", "client_packages", "link_client_packages", "socket_url"]

SOCKET_NAME = "api.sock"
CONTAINER_API_DIR = "/run/spell"  # where a container sees the socket's folder
CONTAINER_LIB_DIR = "/opt/spell/lib"  # where a container sees the client's packages


@dataclass(frozen=True)
class RunApi:
    """The socket's folder on the run's host and the token of one run."""

    socket_dir: str
    token: str


def socket_url(socket_dir: str | Path) -> str:
    """The base URL the client takes for the socket in `socket_dir`."""
    return "http+unix://" + quote(str(Path(socket_dir) / SOCKET_NAME), safe="") + "/"


def api_environment(
    run_id: int, api: RunApi | None, socket_dir: str, lib_dir: str, pythonpath: str = ""
) -> dict[str, str]:
    """The variables a run gets to use Spell from inside: its ID always; with `api`, the URL
    of the socket as the run sees `socket_dir`, its token, and `lib_dir` after the run's own
    PYTHONPATH (the run's packages come first)."""
    env = {"SPELL_RUN_ID": str(run_id)}
    if api is not None:
        env["SPELL_BASE_URL"] = socket_url(socket_dir)
        env["SPELL_TOKEN"] = api.token
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, lib_dir) if p)
    return env
