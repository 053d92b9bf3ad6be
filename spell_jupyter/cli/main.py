"""The `spell` command: a thin click shell over the Python client.

Import-light on purpose: `spell --help` loads click and this package's small modules only;
each command imports the client when it runs.
"""

from __future__ import annotations

from . import hyper, images, kernelspecs, metrics, resources, runs, server, workflows, workspaces  # noqa: F401  (each adds its commands to the group)
from .group import cli


def main() -> None:
    cli(prog_name="spell")


if __name__ == "__main__":
    main()
