"""How runs and logs look as text, Spell-style (✨ Building… done): in a terminal and in a notebook
cell alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from .humanize import format_duration
from .status import Status

PROGRESS = tuple(
    s.value
    for s in (
        Status.MACHINE_REQUESTED,
        Status.BUILDING,
        Status.MOUNTING,
        Status.SAVING,
        Status.PUSHING,
    )
)
FINAL_EMOJI = {Status.COMPLETE.value: "🎉", Status.STOPPED.value: "🛑", Status.KILLED.value: "💀"}


def status_title(status: str) -> str:
    return status.title()  # Spell's spelling: Machine_Requested


class LogPrinter:
    """Turns log entries into lines: user output as is, status events as Spell printed them."""

    def __init__(self, echo: Callable[[str], None], verbose: bool = False):
        self.echo = echo
        self.verbose = verbose
        self.current: str | None = None

    def entry(self, entry) -> None:
        if self.verbose:
            when = entry.timestamp.astimezone().isoformat(sep=" ", timespec="milliseconds")
            self.echo(f"{when} {entry.status:<17} {entry.text}")
            return
        if not entry.status_event:
            self.echo(entry.text)
            return
        if entry.status != self.current:
            if self.current in PROGRESS:
                self.echo(f"✨ {status_title(self.current)}… done")
            self.current = entry.status
            if entry.status == "running":
                self.echo("✨ Run is running")
            return
        self.echo(f"✨ {status_title(entry.status)}… {entry.text}")


def run_summary(run) -> list[str]:
    lines = []
    if run.ended_at and run.created_at:
        lines.append(
            f"🎉 Total run time: {format_duration((run.ended_at - run.created_at).total_seconds())}"
        )
    if run.status == "failed":
        lines.append(f"💥 Run {run.id} failed with exit code {run.user_exit_code}")
    else:
        lines.append(
            f"{FINAL_EMOJI.get(run.status, '💥')} Run {run.id} {run.status.replace('_', ' ')}"
        )
    return lines


def format_status(run) -> str:
    text = status_title(run.status).replace("_", " ")
    if run.status == "failed" and run.user_exit_code is not None:
        text += f" ({run.user_exit_code})"
    return text


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    seconds = ((now or datetime.now(timezone.utc)) - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in rows])


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
