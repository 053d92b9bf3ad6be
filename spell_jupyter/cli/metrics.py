"""spell metrics: what a run sent with `spell.metrics.send_metric` (and its spell/* samples)."""

from __future__ import annotations

import csv
import sys
from datetime import datetime

import click

from ..run_text import table
from .connect import client
from .group import cli

CSV_COLUMNS = ("run_id", "metric_name", "timestamp", "index", "value")


def write_metrics_csv(out, runs: list, names: list[str] | None = None) -> int:
    """Spell's `download-metrics` CSV of each run's metrics (all, or `names`); rows written."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for run in runs:
        for name in names or [m["name"] for m in run.metric_names()]:
            for timestamp, index, value in run.metrics(name):
                writer.writerow((run.id, name, timestamp.isoformat(), index, value))
                count += 1
    return count


@cli.command()
@click.option("-f", "--follow", "follow_", is_flag=True, help="Print new values until it ends.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every value as CSV.")
@click.argument("run_id", type=int)
@click.argument("name", required=False)
def metrics(follow_, as_csv, run_id, name):
    """Show run RUN_ID's metrics: each one's last value, or every value of NAME."""
    run = client().runs.get(run_id)
    if as_csv:
        write_metrics_csv(sys.stdout, [run], [name] if name else None)
        return
    if name is None:
        if follow_:
            raise click.UsageError("-f follows one metric: give its NAME")
        found = run.metric_names()
        if not found:
            click.echo(f"Run {run_id} has no metrics (send some with spell.metrics.send_metric)")
            return
        rows = [
            [m["name"], str(m["count"]), str(m["index"]), _value(m["value"]), _when(m["timestamp"])]
            for m in found
        ]
        click.echo(table(["NAME", "COUNT", "LAST INDEX", "LAST VALUE", "AT"], rows))
        return
    shown = 0
    for timestamp, index, value in run.metrics(name, follow=follow_):
        click.echo(
            f"{timestamp.astimezone().isoformat(sep=' ', timespec='milliseconds')}  "
            f"{index:>8}  {_value(value)}"
        )
        shown += 1
    if not shown and not follow_:
        click.echo(f"Run {run_id} has no values of {name!r}", err=True)


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _when(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().isoformat(sep=" ", timespec="milliseconds")
