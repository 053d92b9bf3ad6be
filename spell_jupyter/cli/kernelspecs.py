"""spell kernelspec add/ls/rm: Jupyter kernel specs whose kernels are Spell runs."""

from __future__ import annotations

import click

from .group import cli
from .run_options import parse_env


@cli.group("kernelspec")
def kernelspec():
    """Kernel specs whose kernels run as Spell runs ("Python 3 (Spell · T4)" in Jupyter)."""


@kernelspec.command("add")
@click.argument("name")
@click.option("-t", "--machine-type", default="CPU", show_default=True)
@click.option("--framework", default=None, help="Base image by name.")
@click.option("--docker-image", "--from", "docker_image", metavar="IMAGE")
@click.option("--apt", multiple=True, metavar="PKG", help="A Debian package (repeats).")
@click.option("--pip", multiple=True, metavar="SPEC", help="A pip package (repeats).")
@click.option("-e", "--env", "envvars", multiple=True, metavar="NAME=VALUE")
@click.option("-m", "--mount", "mounts", multiple=True, metavar="RESOURCE[:PATH]")
@click.option("--display-name", default=None, help='Default: "Python 3 (Spell · TYPE)".')
def add(name, machine_type, framework, docker_image, apt, pip, envvars, mounts, display_name):
    """Write kernel spec spell-NAME: its kernels are runs on MACHINE_TYPE with this
    environment and these mounts, working in the notebook's folder.

    spell kernelspec add t4-torch -t T4 --pip torch -m uploads/data
    """
    from pydantic import ValidationError

    from ..client.runs import mount_list
    from ..kernels.specs import install
    from ..models import RunSpec, describe_validation_error

    options = {
        "machine_type": machine_type,
        "apt_packages": list(apt),
        "pip_packages": list(pip),
        "envvars": parse_env(envvars),
        "mounts": mount_list(None, list(mounts)),
    }
    if framework:
        options["framework"] = framework
    if docker_image:
        options["docker_image"] = docker_image
    try:  # what a run would refuse is refused now, not when a notebook starts the kernel
        RunSpec.model_validate({"command": "python3", **options})
    except ValidationError as exc:
        raise click.ClickException(describe_validation_error(exc)) from None
    folder = install(name, options, display_name)
    click.echo(f"✨ Kernel spec {folder.rsplit('/', 1)[-1]} written to {folder}")


@kernelspec.command("ls")
def list_specs():
    """The Spell kernel specs Jupyter finds."""
    from jupyter_client.kernelspec import KernelSpecManager

    from ..kernels.specs import PROVISIONER
    from ..run_text import table

    manager = KernelSpecManager()
    rows = []
    for name, folder in sorted(manager.find_kernel_specs().items()):
        spec = manager.get_kernel_spec(name)
        provisioner = spec.metadata.get("kernel_provisioner", {})
        if provisioner.get("provisioner_name") != PROVISIONER:
            continue
        options = provisioner.get("config", {}).get("options", {})
        rows.append([name, spec.display_name, options.get("machine_type", "CPU"), folder])
    if not rows:
        click.echo("No Spell kernel specs: add one with spell kernelspec add NAME -t TYPE")
        return
    click.echo(table(["NAME", "DISPLAY NAME", "MACHINE", "FOLDER"], rows))


@kernelspec.command("rm")
@click.argument("name")
def remove(name):
    """Remove kernel spec spell-NAME (or NAME)."""
    from jupyter_client.kernelspec import KernelSpecManager

    from ..kernels.specs import PREFIX, spec_name

    kernel = name if name.startswith(PREFIX) else spec_name(name)
    try:
        folder = KernelSpecManager().remove_kernel_spec(kernel)
    except KeyError:
        raise click.ClickException(f"no kernel spec {kernel} (see spell kernelspec ls)") from None
    click.echo(f"✨ Removed kernel spec {kernel} ({folder})")
