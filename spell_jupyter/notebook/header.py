"""A run's live header in a notebook cell: ID, status, machine type, elapsed time, the outputs'
SpellFS path, Stop and Kill buttons, and its metrics as charts once it sends any.

An ipywidgets widget where the frontend shows widgets; elsewhere (nbconvert, a terminal IPython)
its text and HTML twins, refreshed when the cell ends."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from ..client.errors import SpellClientError
from ..client.run_html import FINAL, elapsed, run_line_html
from ..humanize import format_duration
from .charts import charts_html
from .subshell import answer_while_busy

WAIT_SECONDS = 5  # a status change answers at once; metrics are read at most this often
TICK_SECONDS = 1.0  # the elapsed time shown
MAX_POINTS = 2000  # per metric chart: the newest ones


def run_line_text(run) -> str:
    took = elapsed(run)
    return (
        f"Run {run.id} · {run.status.replace('_', ' ')} · {run.machine_type or '-'} · "
        f"{format_duration(took) if took is not None else '-'} · outputs: runs/{run.id}"
    )


def outputs_link(run) -> str | None:
    """A link to the listing of the run's outputs on its server, host-relative (the page showing
    the notebook is served by that server, behind whatever proxy); None inside a run."""
    from urllib.parse import urlsplit

    url = run.outputs_url
    return urlsplit(url).path if url.startswith(("http://", "https://")) else None


def tensorboard_link(run) -> str | None:
    """The run's TensorBoard on its server, host-relative as `outputs_link`."""
    from urllib.parse import urlsplit

    url = run.tensorboard_url
    return urlsplit(url).path if url and url.startswith(("http://", "https://")) else None


class RunHeader:
    """The header of `run`: `show()` displays it, `watch()` keeps it up to date from a
    background thread until the run ends. `stop_button` and `kill_button` act on the run."""

    def __init__(self, run):
        self.run = run
        self.widget = None
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self._display = None
        self._closed = threading.Event()
        self._watching = False
        try:
            import ipywidgets as w
        except ImportError:  # no widgets installed: the text twin alone
            return
        self.info = w.HTML(self._line())
        self.stop_button = w.Button(
            description="Stop", tooltip="Stop the run: SIGTERM, then its outputs are saved"
        )
        self.kill_button = w.Button(
            description="Kill", button_style="danger", tooltip="Kill the run: nothing is saved"
        )
        self.message = w.HTML("")
        self.charts = w.HTML("")
        self.stop_button.on_click(lambda _: self.act("stop"))
        self.kill_button.on_click(lambda _: self.act("kill"))
        self.widget = w.VBox(
            [w.HBox([self.info, self.stop_button, self.kill_button]), self.message, self.charts]
        )
        answer_while_busy(self.stop_button, self.kill_button)
        self._sync_buttons()

    # -- display ------------------------------------------------------------------------------

    def _line(self) -> str:
        return run_line_html(self.run, outputs_link(self.run), tensorboard_link(self.run))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {}
        if self.widget is not None:
            bundle.update(self.widget._repr_mimebundle_())
        bundle["text/plain"] = run_line_text(self.run)
        bundle["text/html"] = self._line() + charts_html(self.metrics)
        return bundle

    def show(self) -> None:
        from IPython.display import display

        self._display = display(self, display_id=True)

    def refresh_display(self) -> None:
        """Redraw the whole display (its text twin too): from the cell's own thread."""
        if self._display is not None:
            self._display.update(self)

    # -- actions ------------------------------------------------------------------------------

    def act(self, action: str) -> None:
        """Stop or kill the run (what the buttons do)."""
        try:
            getattr(self.run, action)()
            self._say(f"{'Stopping' if action == 'stop' else 'Killing'} run {self.run.id}…")
        except SpellClientError as exc:
            self._say(f"Could not {action} run {self.run.id}: {exc}")
        self._update()

    def _say(self, text: str) -> None:
        if self.widget is not None:
            from html import escape

            self.message.value = f"<i>{escape(text)}</i>"

    def _sync_buttons(self) -> None:
        if self.widget is not None:
            final = self.run.status in FINAL
            self.stop_button.disabled = final
            self.kill_button.disabled = final

    def _update(self) -> None:
        if self.widget is not None:
            self.info.value = self._line()
            self._sync_buttons()
            if self.metrics:
                self.charts.value = charts_html(self.metrics)

    # -- watching -----------------------------------------------------------------------------

    def watch(self) -> None:
        """Keep the widget current from background threads until the run ends."""
        if self.widget is None or self._watching or self.run.status in FINAL:
            return
        self._watching = True
        name = f"spell-run-{self.run.id}"
        threading.Thread(target=self._wait_loop, name=name, daemon=True).start()
        threading.Thread(target=self._tick_loop, daemon=True).start()

    def close(self) -> None:
        self._closed.set()

    def _tick_loop(self) -> None:
        while not self._closed.wait(TICK_SECONDS) and self.run.status not in FINAL:
            self.info.value = self._line()

    def finish(self) -> None:
        """The run ended while the cell followed it: the last metrics, and the whole display
        redrawn (its text twin too), from the cell's own thread."""
        self.close()
        with contextlib.suppress(SpellClientError):  # the charts keep what they had
            self._read_metrics()
        self._update()
        self.refresh_display()

    def _wait_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self.run.wait_change(WAIT_SECONDS)
                self._read_metrics()
            except SpellClientError as exc:
                self._say(f"Lost the server ({exc}); the run goes on")
                return
            self._update()
            if self.run.status in FINAL:
                self._closed.set()

    def _read_metrics(self) -> None:
        for entry in self.run.metric_names():
            name, last = entry["name"], entry["index"]
            held = self.metrics.setdefault(name, [])
            start = held[-1][0] + 1 if held else max(0, last - MAX_POINTS + 1)
            if start > last:
                continue  # nothing new
            held += [(index, value) for _, index, value in self.run.metrics(name, start=start)]
            del held[:-MAX_POINTS]
