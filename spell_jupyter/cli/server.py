"""spell server: the headless Jupyter server (only the Spell extension) of SPELL_HOME."""

from __future__ import annotations

import click

from ..paths import spell_home
from .group import cli


@cli.group(invoke_without_command=True)
@click.pass_context
def server(ctx):
    """Start the Spell server of $SPELL_HOME in the background (127.0.0.1, a free port,
    a new token; described in $SPELL_HOME/server.json)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..client.connection import start_server

    home = spell_home()
    info = start_server(home)
    click.echo(f"✨ Spell server for {home} running at {info.url} (pid {info.pid})")


@server.command("stop")
def server_stop():
    """Stop the Spell server of $SPELL_HOME (runs go on; the next server follows them)."""
    from ..client.connection import stop_server

    info = stop_server(spell_home())
    if info is None:
        click.echo(f"No Spell server was running for {spell_home()}")
    else:
        click.echo(f"✨ Stopped the Spell server at {info.url} (pid {info.pid})")


@server.command("status")
def server_status():
    """Say whether the Spell server of $SPELL_HOME answers."""
    from ..client.connection import running_server

    info = running_server(spell_home())
    if info is None:
        click.echo(f"No Spell server is running for {spell_home()}")
        raise SystemExit(1)
    click.echo(f"Spell server for {spell_home()} at {info.url} (pid {info.pid})")
