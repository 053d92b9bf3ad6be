"""spell jupyter: a workspace (JupyterLab or Notebook 7 in a run); spell workspaces ls/stop/rm."""

from __future__ import annotations

import click

from ..run_text import ago, format_status, table
from .connect import client
from .group import cli
from .run_options import run_arguments, run_options


@cli.command("jupyter")
@click.argument("name")
@click.option("--lab/--notebook", "lab", default=True, help="JupyterLab (default) or Notebook 7.")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MIN",
    help="Stop it (files saved) after MIN minutes with no kernel activity and no open client.",
)
@click.option("--no-browser", is_flag=True, help="Print its URL; do not open a browser.")
@click.option("-b", "--background", is_flag=True, help="Return at once; do not wait for it.")
@run_options(params=False)
def jupyter(name, lab, idle_timeout, no_browser, background, **options):
    """Start workspace NAME: JupyterLab on a machine type, with the code, environment and
    mounts a run takes, reached through the Spell server. Starting it again after a stop
    resumes with its files.

    spell jupyter ws1 -t T4 --pip torch -m uploads/data
    """
    spell = client()
    workspace = spell.workspaces.new(
        name, notebook=not lab, idle_timeout=idle_timeout, **run_arguments(options)
    )
    for warning in getattr(workspace.run, "code_warnings", []):
        click.echo(f"Warning: {warning}", err=True)
    resumed = (
        f" (resuming the files of run {workspace.run_ids[1]})" if len(workspace.run_ids) > 1 else ""
    )
    click.echo(f"✨ Workspace {name}: run {workspace.run.id}{resumed}")
    if background:
        click.echo(f"✨ It will be at {browser_url(spell, workspace, lab)}")
        return
    workspace.wait_ready(
        timeout=None, on_status=lambda status: click.echo(f"✨ {status.replace('_', ' ')}")
    )
    url = browser_url(spell, workspace, lab)
    click.echo(f"✨ Workspace {name} is ready: {url}")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)


def browser_url(spell, workspace, lab: bool) -> str:
    """Its page, with the server's token when it has one (as `jupyter lab` prints its own)."""
    url = workspace.url + ("lab" if lab else "tree")
    token = spell.transport.token
    return f"{url}?token={token}" if token else url


@cli.group("workspaces")
def workspaces():
    """List, stop and remove workspaces (start one with `spell jupyter NAME`)."""


@workspaces.command("ls")
def list_workspaces():
    """Every workspace, with its newest run."""
    found = client().workspaces.list()
    if not found:
        click.echo("No workspaces yet: start one with spell jupyter NAME")
        return
    rows = [
        [
            w.name,
            format_status(w.run),
            str(w.run.id),
            w.run.machine_type,
            ago(w.run.created_at),
            w.path,
        ]
        for w in found
    ]
    click.echo(table(["NAME", "STATUS", "RUN", "MACHINE", "STARTED", "URL"], rows))


@workspaces.command("stop")
@click.argument("name")
def stop_workspace(name):
    """Stop workspace NAME (its files are saved; `spell jupyter NAME` resumes with them)."""
    workspace = client().workspaces.stop(name)
    click.echo(f"✨ Stopping workspace {name} (run {workspace.run.id}): its files will be saved")


@workspaces.command("rm")
@click.argument("name")
def remove_workspace(name):
    """Remove workspace NAME (not while it runs): its runs are archived and the name starts
    afresh; their files stay in SpellFS under runs/<id>."""
    archived = client().workspaces.remove(name)
    runs = ", ".join(map(str, archived))
    click.echo(
        f"✨ Removed workspace {name} (archived its run{'s' if len(archived) > 1 else ''} {runs})"
    )
