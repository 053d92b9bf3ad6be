"""spell ls / cp: browse and fetch SpellFS (run outputs under runs/<id>)."""

from __future__ import annotations

from datetime import datetime

import click

from ..humanize import human_size
from .connect import client
from .group import cli


def _check(path: str) -> str:
    from ..fs.paths import BadPath, normalize

    try:
        return normalize(path)
    except BadPath as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("-H", "--human-readable", "human", is_flag=True, help="Sizes like 1.5KiB.")
@click.argument("path", default="")
def ls(human, path):
    """List SpellFS at PATH (runs, runs/<id>, uploads/…)."""
    clean = _check(path)
    for entry in client().resources.ls(clean):
        if entry["type"] == "directory":
            size = "-"
        else:
            size = human_size(entry["size"]) if human else str(entry["size"])
        when = entry.get("modified")
        date = (
            datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone().strftime("%b %d %H:%M")
            if when
            else "-"
        )
        name = entry["name"] or entry["path"]
        if entry["type"] == "directory":
            name += "/"
        click.echo(f"{size:>9}  {date}  {name}")


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Overwrite local files that exist.")
@click.argument("path")
@click.argument("destination", default=".", type=click.Path(file_okay=False))
def cp(force, path, destination):
    """Copy PATH from SpellFS (a file or folder) into the local folder DESTINATION."""
    clean = _check(path)
    if not clean:
        raise click.ClickException("give a SpellFS path to copy, such as runs/1")
    written = client().resources.cp(clean, destination, force=force)
    click.echo(f"✔ Copied {len(written)} file{'s' if len(written) != 1 else ''}")
