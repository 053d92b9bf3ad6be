"""`%spell_run [FLAGS] COMMAND` and `%%spell [FLAGS]`: `spell run` from a notebook cell.

Both take `spell run`'s own flags (cli/run_options.py, one definition). The code is the
notebook's folder as `spell run` takes it from there. Every mistake is a UsageError: one clear
line in the cell, no traceback, and no run made."""

from __future__ import annotations

import shlex

import click
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..cli.run_options import command_text, run_arguments, run_options
from ..client.errors import ServerUnavailable, SpellClientError
from ..client.run_html import FINAL
from ..status import Status
from .cells import (
    CELL_MOUNT,
    RUNNER,
    CellError,
    load_outputs,
    outputs_path,
    pack_cell,
    ship_cell,
    variable_names,
)
from .live import show_run

SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}
BACKGROUND = click.option("-b", "--background", is_flag=True, help="Return at once.")
VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Show each log line's time.")


@click.command(name="%spell_run", context_settings=SETTINGS)
@BACKGROUND
@run_options
@VERBOSE
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def spell_run_flags(**options):
    """Run COMMAND (or a notebook: nb.ipynb [-p NAME VALUE]...) in a new run; follow its logs in
    the cell and return the Run."""


@click.command(name="%%spell", context_settings=SETTINGS)
@BACKGROUND
@run_options(params=False)
@VERBOSE
@click.option("--in", "inputs", multiple=True, metavar="NAMES", help="Send these variables (a,b).")
@click.option(
    "--out", "outputs", multiple=True, metavar="NAMES", help="Bring these variables back."
)
def spell_cell_flags(**options):
    """Run the cell's code as a Python script in a new run, with the notebook's code."""


def parse(command: click.Command, line: str) -> dict | None:
    """The flags of a magic's line as `command` reads them; None after --help."""
    try:
        args = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{command.name}: {exc}") from None
    try:
        return command.make_context(command.name, args).params
    except click.exceptions.Exit:
        return None  # --help printed the help
    except click.ClickException as exc:
        raise UsageError(f"{command.name}: {exc.format_message()}") from None


@magics_class
class SpellMagics(Magics):
    """The magics, holding one client for the kernel (found as `spell` finds its server)."""

    def __init__(self, shell, client=None):
        super().__init__(shell)
        self._client = client
        self._told_no_code = False

    @property
    def client(self):
        if self._client is None:
            from ..client import from_environment

            self._client = from_environment()
        return self._client

    def _new_run(self, command: str, options: dict, **extra):
        if not self._told_no_code and not options["force"]:
            self._told_no_code = True  # said once per kernel, not in every cell
        else:
            options = {**options, "force": True}
        try:
            arguments = run_arguments(options)
            arguments.update(extra)
            return self.client.runs.new(command=command, **arguments)
        except click.ClickException as exc:
            raise UsageError(exc.format_message()) from None
        except ServerUnavailable as exc:
            self._client = None  # found again next time
            raise UsageError(str(exc)) from None
        except SpellClientError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def spell_run(self, line: str):
        """%spell_run [-b] [spell run flags] COMMAND — see `%spell_run --help`."""
        options = parse(spell_run_flags, line)
        if options is None:
            return None
        try:
            command = command_text(options.pop("command"))
        except click.ClickException as exc:
            raise UsageError(exc.format_message()) from None
        background, verbose = options.pop("background"), options.pop("verbose")
        run = self._new_run(command, options)
        return show_run(run, background, verbose)

    @cell_magic
    def spell(self, line: str, cell: str):
        """%%spell [-b] [spell run flags] [--in a,b] [--out x,y] — see `%%spell --help`."""
        options = parse(spell_cell_flags, line)
        if options is None:
            return None
        background, verbose = options.pop("background"), options.pop("verbose")
        try:
            inputs = variable_names(options.pop("inputs"), "--in")
            outputs = variable_names(options.pop("outputs"), "--out")
            if outputs and background:
                raise CellError("--out brings variables back when the run ends: leave out -b")
            files = pack_cell(cell, inputs, outputs, self.shell.user_ns)
            folder = ship_cell(self.client, files)
        except (CellError, SpellClientError) as exc:
            if isinstance(exc, ServerUnavailable):
                self._client = None
            raise UsageError(str(exc)) from None
        options["mounts"] = (*options["mounts"], f"{folder}:{CELL_MOUNT}")
        run = self._new_run(f"{RUNNER} {CELL_MOUNT}", options)
        show_run(run, background, verbose)
        if outputs and run.status == Status.COMPLETE.value:
            try:
                self.shell.user_ns.update(load_outputs(run, self.client))
            except (CellError, SpellClientError) as exc:
                raise UsageError(str(exc)) from None
            print(f"✨ {', '.join(outputs)} from run {run.id} set in the notebook")
        elif outputs and run.status in FINAL:
            raise UsageError(
                f"run {run.id} ended {run.status}: {', '.join(outputs)} not brought back"
            )
        elif outputs:
            print(
                f"Run {run.id} goes on; once it completes, load its --out variables with "
                f"`spell_jupyter.notebook.load_outputs(run)` (they are kept in "
                f"{outputs_path(run)})"
            )
        return run
