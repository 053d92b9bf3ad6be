"""How CLI commands reach a server: $SPELL_BASE_URL, else SPELL_HOME's `spell server`,
else a new one started in the background (and the user is told)."""

from __future__ import annotations

import click


def client():
    from ..client import SpellClient
    from ..client.connection import ensure_server, environment_server_info
    from ..paths import spell_home

    info = environment_server_info()
    if info is None:
        home = spell_home()
        info, started = ensure_server(home)  # or the one a concurrent command started
        if started:
            click.echo(
                f"✨ No Spell server was running for {home}; started one in the background at "
                f"{info.url} (stop it with `spell server stop`)",
                err=True,
            )
    return SpellClient(token=info.token, base_url=info.url)
