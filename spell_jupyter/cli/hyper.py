"""spell hyper: grid, random and bayesian searches over a command's :NAME: parameters."""

from __future__ import annotations

import re
import sys

import click

from ..metric_scores import AGGREGATIONS, score
from ..run_text import ago, format_status, shorten, table
from .connect import client
from .group import cli
from .metrics import write_metrics_csv
from .run_options import command_text, run_arguments, run_options

PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*):")
SCALINGS = ("linear", "log", "reverse_log")
TYPES = ("float", "int")


def _number_or_text(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_param(text: str, ranges: bool) -> tuple[str, dict]:
    """`NAME=v1,v2,...` (values) or, where `ranges`, `NAME=MIN:MAX[:SCALING[:TYPE]]`."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"expects NAME=VALUES, got {text!r}", param_hint="--param")
    if not rest.strip():
        raise click.BadParameter(f"{name} has no values: NAME=1,2,3", param_hint="--param")
    if ranges and ":" in rest:
        parts = rest.split(":")
        if len(parts) > 4:
            raise click.BadParameter(
                f"{name}: a range is MIN:MAX[:SCALING[:TYPE]]", param_hint="--param"
            )
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise click.BadParameter(
                f"{name}: MIN and MAX of {rest!r} must be numbers", param_hint="--param"
            ) from None
        scaling = parts[2] if len(parts) > 2 else "linear"
        kind = parts[3] if len(parts) > 3 else "float"
        if scaling not in SCALINGS or kind not in TYPES:
            raise click.BadParameter(
                f"{name}: scaling is one of {', '.join(SCALINGS)} and type one of "
                f"{', '.join(TYPES)}",
                param_hint="--param",
            )
        return name, {"min": low, "max": high, "scaling": scaling, "type": kind}
    values = [_number_or_text(v.strip()) for v in rest.split(",")]
    if any(v == "" for v in values):
        raise click.BadParameter(f"{name} has an empty value in {rest!r}", param_hint="--param")
    return name, {"values": values}


def params_of(values: tuple[str, ...], ranges: bool, command: str) -> dict:
    params: dict[str, dict] = {}
    for text in values:
        name, spec = parse_param(text, ranges)
        if name in params:
            raise click.BadParameter(f"{name} is given twice", param_hint="--param")
        params[name] = spec
    if not params:
        raise click.UsageError("give at least one --param")
    used = set(PLACEHOLDER.findall(command))
    missing = sorted(used - set(params))
    if missing:
        raise click.UsageError(
            f"the command uses :{missing[0]}: but no --param {missing[0]}=... is given"
        )
    for name in params:
        if name not in used:
            click.echo(f"Warning: --param {name} is not used by the command (:{name}:)", err=True)
    return params


@cli.group()
def hyper():
    """Hyperparameter searches: each point of the parameters becomes a run of the command,
    with every :NAME: replaced by the point's value."""


def search_command(kind: str):
    def decorate(function):
        function = click.argument("command", nargs=-1, type=click.UNPROCESSED)(function)
        function = run_options(function, params=False)
        function = click.option(
            "--param",
            "param_texts",
            multiple=True,
            metavar="NAME=V1,V2" + ("|MIN:MAX[:SCALING[:TYPE]]" if kind != "grid" else ""),
            help="A parameter and its values"
            + (
                ", or a range (scaling linear, log or reverse_log; type float or int)"
                if kind != "grid"
                else ""
            )
            + ". Repeatable.",
        )(function)
        return hyper.command(kind, context_settings={"allow_interspersed_args": False})(function)

    return decorate


def _start(search) -> None:
    spec = search.spec
    size = spec.get("num_runs")
    if spec.get("type") == "grid":
        size = 1
        for param in spec["params"].values():
            size *= len(param["values"])
    click.echo(f"💫 Search {search.id}: a {spec.get('type')} search of {size} runs")
    click.echo(f"Follow it with `spell hyper describe {search.id}`")


@search_command("grid")
@click.option("--yes", is_flag=True, help="Allow a grid of more than 1,000 runs.")
def grid(param_texts, yes, command, **options):
    """A run for every combination of the parameters' values."""
    text = command_text(command)
    params = params_of(param_texts, ranges=False, command=text)
    spell = client()
    search = spell.hyper.new_grid_search(
        params, confirm_large=yes, command=text, **run_arguments(options)
    )
    _start(search)


@search_command("random")
@click.option("-n", "--num-runs", type=click.IntRange(1, 10000), required=True)
def random_search(param_texts, num_runs, command, **options):
    """NUM_RUNS runs, each at a random point of the parameters."""
    text = command_text(command)
    params = params_of(param_texts, ranges=True, command=text)
    search = client().hyper.new_random_search(
        params, num_runs, command=text, **run_arguments(options)
    )
    _start(search)


@search_command("bayesian")
@click.option("-n", "--num-runs", type=click.IntRange(1, 10000), required=True)
@click.option("-r", "--parallel-runs", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--metric", required=True, help="The metric (send_metric) to optimise.")
@click.option(
    "--metric-agg",
    type=click.Choice(list(AGGREGATIONS)),
    default="last",
    show_default=True,
    help="How a run's values of the metric make its score.",
)
@click.option("--minimize/--maximize", default=True, help="Minimise the metric (default).")
def bayesian(param_texts, num_runs, parallel_runs, metric, metric_agg, minimize, command, **opts):
    """NUM_RUNS runs, PARALLEL_RUNS at a time, each next point proposed (Optuna's TPE) from the
    finished runs' metric."""
    text = command_text(command)
    params = params_of(param_texts, ranges=True, command=text)
    search = client().hyper.new_bayesian_search(
        params,
        num_runs,
        parallel_runs,
        metric,
        metric_agg,
        maximize=not minimize,
        command=text,
        **run_arguments(opts),
    )
    _start(search)


@hyper.command("ls")
@click.option("-n", "--number", default=20, show_default=True)
def list_searches(number):
    """List the newest searches."""
    searches = client().hyper.list(number=number)
    if not searches:
        click.echo("No searches yet: start one with spell hyper grid|random|bayesian")
        return
    rows = [
        [
            str(s.id),
            s.spec.get("type", "?"),
            str(len(s.runs)),
            shorten(s.search_run.command, 40),
            format_status(s.search_run),
            ago(s.search_run.created_at),
        ]
        for s in reversed(searches)
    ]
    click.echo(table(["ID", "TYPE", "RUNS", "COMMAND", "STATUS", "CREATED"], rows))


@hyper.command("describe")
@click.argument("search_id", type=int)
def describe(search_id):
    """The search's runs: their parameters, statuses and (with a metric) scores."""
    spell = client()
    search = spell.hyper.get(search_id)
    spec = search.spec
    names = list(spec.get("params", {}))
    metric = spec.get("metric")
    click.echo(f"{search}")
    click.echo(f"  {search.search_run.status_message}")
    headers = ["RUN", "STATUS", *names]
    if metric:
        headers.append(f"{metric} ({spec.get('metric_agg', 'last')})")
    rows = []
    for run in search.runs:
        point = run.raw["spec"].get("hyper_params", {})
        row = [str(run.id), format_status(run), *(str(point.get(n, "")) for n in names)]
        if metric:
            row.append(_score(run, metric, spec.get("metric_agg", "last")))
        rows.append(row)
    if rows:
        click.echo(table(headers, rows))


def _score(run, metric: str, how: str) -> str:
    """The run's score as the search computes it: its numbers in index order, aggregated."""
    numbers = sorted((i, v) for _, i, v in run.metrics(metric) if isinstance(v, int | float))
    value = score([v for _, v in numbers], how)
    return "-" if value is None else f"{value:g}"


@hyper.command("stop")
@click.argument("search_id", type=int)
def stop_search(search_id):
    """Stop the search and its active runs (outputs saved)."""
    client().hyper.get(search_id).stop()
    click.echo(f"✨ Asked search {search_id} and its active runs to stop")


@hyper.command("kill")
@click.argument("search_id", type=int)
def kill_search(search_id):
    """Kill the search and its active runs."""
    client().hyper.get(search_id).kill()
    click.echo(f"✨ Asked search {search_id} and its active runs to be killed")


@hyper.command("download-metrics")
@click.argument("search_id", type=int)
@click.option(
    "-d", "--destination", type=click.Path(dir_okay=False), help="A CSV file (default: stdout)."
)
@click.option("--metric", "names", multiple=True, help="Only this metric (repeatable).")
def download_metrics(search_id, destination, names):
    """Every metric value of the search's runs as CSV: run_id,metric_name,timestamp,index,value."""
    search = client().hyper.get(search_id)
    if destination:
        with open(destination, "w", newline="") as out:
            count = write_metrics_csv(out, search.runs, list(names) or None)
        click.echo(f"✨ Wrote {count} values of {len(search.runs)} runs to {destination}")
    else:
        write_metrics_csv(sys.stdout, search.runs, list(names) or None)
