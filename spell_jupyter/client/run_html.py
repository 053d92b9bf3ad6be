"""How a run looks in a notebook or any HTML frontend: `Run._repr_html_` and the widgets' header.

Standard library only (the client stays light); the text twin is `run_text`."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from ..humanize import format_duration
from ..status import FINAL_STATUSES, Status

FINAL = {s.value for s in FINAL_STATUSES}
STATUS_COLOURS = {
    Status.COMPLETE.value: "#2e7d32",
    Status.FAILED.value: "#c62828",
    Status.BUILD_FAILED.value: "#c62828",
    Status.MOUNT_FAILED.value: "#c62828",
    Status.INTERRUPTED.value: "#c62828",
    Status.KILLED.value: "#6a1b9a",
    Status.STOPPED.value: "#ef6c00",
    Status.RUNNING.value: "#1565c0",
}


def elapsed(run, now: datetime | None = None) -> float | None:
    """Seconds from creation to the end (or to now, while it is live)."""
    if run.created_at is None:
        return None
    end = run.ended_at or (None if run.status in FINAL else now or datetime.now(timezone.utc))
    return None if end is None else max(0.0, (end - run.created_at).total_seconds())


def status_badge(run) -> str:
    colour = STATUS_COLOURS.get(run.status, "#546e7a")
    text = run.status.replace("_", " ")
    if run.status == Status.FAILED.value and run.user_exit_code is not None:
        text += f" ({run.user_exit_code})"
    return (
        f'<span style="color:white;background:{colour};border-radius:3px;padding:0 5px">'
        f"{escape(text)}</span>"
    )


def outputs_path(run) -> str:
    return f"runs/{run.id}"


def run_line_html(run, outputs_url: str | None = None, tensorboard_url: str | None = None) -> str:
    """One line: ID, status, machine type, elapsed time, outputs (a link when `outputs_url`),
    and its TensorBoard (when `tensorboard_url`)."""
    took = elapsed(run)
    outputs = escape(outputs_path(run))
    if outputs_url:
        outputs = f'<a href="{escape(outputs_url)}" target="_blank">{outputs}</a>'
    parts = [
        f"<b>Run {run.id}</b>",
        status_badge(run),
        escape(run.machine_type or "-"),
        format_duration(took) if took is not None else "-",
        f"outputs: <code>{outputs}</code>",
    ]
    if tensorboard_url:
        parts.append(f'<a href="{escape(tensorboard_url)}" target="_blank">TensorBoard</a>')
    return " · ".join(parts)


def run_html(run) -> str:
    """A run as a small HTML table."""
    took = elapsed(run)
    rows = [
        ("Command", f"<code>{escape(run.command)}</code>"),
        ("Status", status_badge(run)),
        ("Machine type", escape(run.machine_type or "-")),
        (
            "Created",
            escape(run.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
            if run.created_at
            else "-",
        ),
        ("Duration", format_duration(took) if took is not None else "-"),
        ("Labels", escape(", ".join(run.labels)) or "-"),
        ("Code", escape(f"{run.repository}@{run.commit_hash[:10]}") if run.commit_hash else "-"),
        ("Outputs", f"<code>{escape(outputs_path(run))}</code>"),
    ]
    tensorboard = getattr(run, "tensorboard_url", None)
    if tensorboard:
        link = f'<a href="{escape(tensorboard)}" target="_blank">{escape(tensorboard)}</a>'
        rows.append(("TensorBoard", link))
    if run.description:
        rows.insert(1, ("Description", escape(run.description)))
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{k}</th>'
        f'<td style="text-align:left">{v}</td></tr>'
        for k, v in rows
    )
    return f"<div><b>Run {run.id}</b> ({escape(run.kind)})<table>{body}</table></div>"
