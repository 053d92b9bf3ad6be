"""Following a run in a notebook cell: its header on top, its logs streaming under it as the
CLI prints them (the frontend renders ANSI colours and `\\r` progress lines as a terminal
would). Interrupting the cell detaches, as ^C does in `spell run`: the run goes on."""

from __future__ import annotations

import sys

from ..run_text import LogPrinter, run_summary
from .header import RunHeader


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show_run(run, background: bool, verbose: bool = False):
    """Show `run`'s header and, unless `background`, its logs until it ends; returns the run."""
    for warning in getattr(run, "code_warnings", ()):
        print(f"Warning: {warning}", file=sys.stderr)
    header = RunHeader(run)
    header.show()
    header.watch()
    if background:
        return run
    printer = LogPrinter(_print, verbose=verbose)
    try:
        for entry in run.logs(follow=True):
            if entry.stream == "stderr" and not entry.status_event and not verbose:
                sys.stderr.write(entry.text + "\n")  # the frontend shows it as stderr
            else:
                printer.entry(entry)
    except KeyboardInterrupt:
        print(
            f"✨ Stopped viewing logs; run {run.id} goes on. Follow it again with "
            f"`spell.client.from_environment().runs.get({run.id}).logs(follow=True)` or "
            f"`spell logs -f {run.id}`",
            file=sys.stderr,
        )
        return run
    run.refresh()
    for line in run_summary(run):
        _print(line)
    header.finish()
    return run
