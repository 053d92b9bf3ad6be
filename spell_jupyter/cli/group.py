"""The `spell` click group and its error handling; command modules add themselves to it."""

from __future__ import annotations

import click

from .._version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SpellGroup(click.Group):
    """Turns client errors into `Error: ...` and exit code 1, without tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            from ..client.errors import SpellClientError

            if isinstance(exc, SpellClientError | ValueError | FileExistsError):
                raise click.ClickException(str(exc)) from exc
            raise


@click.group(cls=SpellGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="spell")
def cli() -> None:
    """spell: send commands to run in Spell runs, watch them, and fetch their outputs.

    State lives in $SPELL_HOME (default ~/.spell). Commands that need a server start one in
    the background when none answers (see `spell server`).
    """
