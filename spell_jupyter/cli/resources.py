"""spell ls / cp / upload / rm / link / unlink: browse, fetch and fill SpellFS."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from ..humanize import human_size
from .connect import client
from .group import cli


@cli.command(context_settings={"help_option_names": ["--help"]})
@click.option("-h", "--human-readable", "human", is_flag=True, help="Sizes like 1.5KiB.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as a JSON array.")
@click.argument("path", default="")
def ls(human, as_json, path):
    """List SpellFS at PATH (runs, runs/<id>, uploads/…, a link); links show their target."""
    entries = client().resources.ls(path)
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    for entry in entries:
        if entry["type"] == "directory":
            size = "-"
        elif entry["type"] == "link":
            size = "link"
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
        if entry.get("target"):
            name += f" -> {entry['target']}"
        click.echo(f"{size:>9}  {date:>12}  {name}")


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Overwrite local files that exist.")
@click.option("-i", "--interactive", is_flag=True, help="Ask before overwriting a local file.")
@click.argument("path")
@click.argument("destination", default=".", type=click.Path(file_okay=False))
def cp(force, interactive, path, destination):
    """Copy PATH from SpellFS (a file or folder) into the local folder DESTINATION."""
    if force and interactive:
        raise click.UsageError("give -f or -i, not both")
    ask = (
        (lambda target: click.confirm(f"Overwrite {target}?", default=False))
        if interactive
        else None
    )
    written = client().resources.cp(path, destination, force=force, overwrite=ask, quiet=True)
    click.echo(f"✔ Copied {len(written)} file{'s' if len(written) != 1 else ''}")


@cli.command()
@click.option("-n", "--name", help="Name under uploads/ (default: the file's or folder's name).")
@click.option("-c", "--compress", is_flag=True, help="Compress the data on the way (gzip).")
@click.option("-f", "--force", is_flag=True, help="Replace an upload of the same name.")
@click.argument("path", type=click.Path(exists=True))
def upload(name, compress, force, path):
    """Upload the local file or folder PATH to uploads/NAME.

    An interrupted upload resumes: run the same command again and only the rest is sent."""
    from ..client.resources import local_files

    total = sum(f.size for f in local_files(Path(path)))
    with click.progressbar(
        length=total,
        label="Uploading",
        show_pos=False,
        show_percent=True,
        file=click.get_text_stream("stderr"),
    ) as bar:
        result = client().resources.upload(
            path, name=name, force=force, compress=compress, progress=bar.update
        )
    resumed = total - result.sent_bytes
    note = f" (resumed: {human_size(resumed)} were already there)" if resumed else ""
    if result.copied_bytes:
        note += " (copied on this host's disk)"
    click.echo(
        f"✔ Uploaded {result.files} file{'s' if result.files != 1 else ''} "
        f"({human_size(result.total_bytes)}) to {result.path}{note}"
    )


@cli.command()
@click.argument("path")
def rm(path):
    """Remove PATH from uploads/ (runs/ and public/ are read-only)."""
    client().resources.rm(path)
    click.echo(f"✔ Removed {path}")


@cli.command()
@click.argument("alias", required=False)
@click.argument("resource_path", required=False)
def link(alias, resource_path):
    """List links (no argument), show one (ALIAS), or make ALIAS name RESOURCE_PATH."""
    resources = client().resources
    if alias is None:
        links = resources.links()
        if not links:
            click.echo("No links yet: make one with spell link ALIAS RESOURCE_PATH")
        for name, target in sorted(links.items()):
            click.echo(f"{name} -> {target}")
        return
    target = resources.link(alias, resource_path)
    click.echo(f"{alias} -> {target}")


@cli.command()
@click.argument("alias")
def unlink(alias):
    """Remove the link ALIAS (what it names stays)."""
    client().resources.unlink(alias)
    click.echo(f"✔ Removed link {alias}")
