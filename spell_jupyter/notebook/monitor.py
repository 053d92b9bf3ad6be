"""RunsMonitor: a live table of runs in a notebook (ID, command, status, machine type, duration,
labels), filtered by status and label, with Stop, Kill and Logs on each row.

A widget where the frontend shows widgets; its text and HTML twins elsewhere. It follows the
server's event stream: the list is read again when a run is created or changes, never polled;
durations of live runs tick locally."""

from __future__ import annotations

import threading
from html import escape
from typing import Any

from ..client.errors import SpellClientError
from ..client.run_html import FINAL, elapsed, status_badge
from ..humanize import format_duration
from ..run_text import format_status, shorten, table
from ..status import RunKind, Status
from .subshell import answer_while_busy

HIDDEN_KINDS = (RunKind.WORKSPACE.value, RunKind.KERNEL.value)
COLUMNS = ("ID", "COMMAND", "STATUS", "MACHINE", "DURATION", "LABELS")
ANY = "any"
LOG_LINES = 200


def _duration(run) -> str:
    took = elapsed(run)
    return format_duration(took) if took is not None else "-"


class RunsMonitor:
    """The newest `number` runs, kept current from the event stream; live durations are
    redrawn every `interval` seconds. `status` and `label` filter them (also from the widget's
    own controls)."""

    def __init__(
        self,
        client=None,
        number: int = 20,
        status: str | None = None,
        label: str | None = None,
        interval: float = 2.0,
    ):
        if client is None:
            from ..client import from_environment

            client = from_environment()
        self.client = client
        self.number = number
        self.status = status
        self.label = label
        self.interval = interval
        self.runs: list = []
        self.error = ""
        self.widget = None
        self._closed = threading.Event()
        self.updated = threading.Event()  # set after each change the stream brought
        self._lock = threading.Lock()
        self.refresh()
        try:
            import ipywidgets as w
        except ImportError:
            return
        self._w = w
        self.status_filter = w.Dropdown(
            options=[ANY, *(s.value for s in Status)], value=status or ANY, description="Status"
        )
        self.label_filter = w.Text(value=label or "", description="Label", continuous_update=False)
        self.status_filter.observe(self._filters_changed, "value")
        self.label_filter.observe(self._filters_changed, "value")
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns="repeat(9, auto)"))
        self.logs = w.HTML("")
        self.message = w.HTML("")
        self.widget = w.VBox(
            [w.HBox([self.status_filter, self.label_filter]), self.message, self.grid, self.logs]
        )
        self.heading = [w.HTML(f"<b>{c}</b>") for c in COLUMNS] + [w.HTML() for _ in range(3)]
        self.rows: dict[int, list] = {}
        self._draw()
        threading.Thread(target=self._follow, name="spell-runs-monitor", daemon=True).start()
        threading.Thread(target=self._tick, daemon=True).start()

    # -- data ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the runs again (the widget does so every `interval` seconds)."""
        try:
            runs = self.client.runs.list(
                number=self.number,
                statuses=[self.status] if self.status else [],
                labels=[self.label] if self.label else [],
                kinds=[k.value for k in RunKind if k.value not in HIDDEN_KINDS],
            )
            self.error = ""
        except SpellClientError as exc:
            self.error = f"Could not list runs: {exc}"
            return
        with self._lock:
            self.runs = runs

    def close(self) -> None:
        self._closed.set()

    def _follow(self) -> None:
        """Read the list again after each change the event stream announces."""
        from ..client.events import follow_events

        for event in follow_events(self.client.transport, stop=self._closed):
            if event.kind == "run":
                self.refresh()
                self._draw()
                self.updated.set()

    def _tick(self) -> None:
        while not self._closed.wait(self.interval):
            if any(r.status not in FINAL for r in self.runs):
                self._draw()

    def _filters_changed(self, _change) -> None:
        self.status = None if self.status_filter.value == ANY else self.status_filter.value
        self.label = self.label_filter.value.strip() or None
        self.refresh()
        self._draw()

    # -- actions ------------------------------------------------------------------------------

    def act(self, run_id: int, action: str) -> None:
        """Stop, kill or show the logs of run `run_id` (what the row's buttons do)."""
        try:
            run = self.client.runs.get(run_id)
            if action == "logs":
                text = "\n".join(entry.text for entry in run.logs(tail=LOG_LINES))
                self.logs.value = (
                    f"<b>Run {run_id}, its last {LOG_LINES} log lines</b>"
                    f"<pre style='max-height:20em;overflow:auto'>{escape(text)}</pre>"
                )
                return
            getattr(run, action)()
            doing = "Stopping" if action == "stop" else "Killing"
            self.message.value = f"<i>{doing} run {run_id}</i>"
        except SpellClientError as exc:
            self.message.value = f"<i>{escape(str(exc))}</i>"
        self.refresh()
        self._draw()

    # -- display ------------------------------------------------------------------------------

    def _row(self, run) -> list:
        """The widgets of `run`'s row, made once per run and updated in place."""
        w = self._w
        if run.id not in self.rows:
            cells = [w.HTML() for _ in COLUMNS]
            for action, style in (("stop", ""), ("kill", "danger"), ("logs", "info")):
                button = w.Button(
                    description=action.title(), button_style=style, layout=w.Layout(width="auto")
                )
                button.on_click(lambda _, a=action, i=run.id: self.act(i, a))
                answer_while_busy(button)
                cells.append(button)
            self.rows[run.id] = cells
        cells = self.rows[run.id]
        values = (
            str(run.id),
            f"<code>{escape(shorten(run.command, 60))}</code>",
            status_badge(run),
            escape(run.machine_type or "-"),
            _duration(run),
            escape(", ".join(run.labels)),
        )
        for cell, value in zip(cells, values, strict=False):
            if cell.value != value:
                cell.value = value
        stop, kill = cells[len(COLUMNS)], cells[len(COLUMNS) + 1]
        stop.disabled = kill.disabled = run.status in FINAL
        return cells

    def _draw(self) -> None:
        if self.widget is None:
            return
        with self._lock:
            runs = list(self.runs)
        if self.error:
            self.message.value = escape(self.error)
        cells = list(self.heading)
        for run in runs:
            cells += self._row(run)
        for gone in set(self.rows) - {r.id for r in runs}:
            for widget in self.rows.pop(gone):
                widget.close()
        self.grid.children = cells

    def text(self) -> str:
        if self.error:
            return self.error
        if not self.runs:
            return "No runs match"
        rows = [
            [
                str(r.id),
                shorten(r.command, 48),
                format_status(r),
                r.machine_type or "-",
                _duration(r),
                ", ".join(r.labels),
            ]
            for r in self.runs
        ]
        return table(list(COLUMNS), rows)

    def html(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join(
            f"<tr><td>{r.id}</td><td><code>{escape(shorten(r.command, 60))}</code></td>"
            f"<td>{status_badge(r)}</td><td>{escape(r.machine_type or '-')}</td>"
            f"<td>{_duration(r)}</td><td>{escape(', '.join(r.labels))}</td></tr>"
            for r in self.runs
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {}
        if self.widget is not None:
            bundle.update(self.widget._repr_mimebundle_())
        bundle["text/plain"] = self.text()
        bundle["text/html"] = self.html()
        return bundle
