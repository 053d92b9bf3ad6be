"""spell run / ps / logs / stop / kill / label / archive."""

from __future__ import annotations

import json
import sys

import click

from ..run_text import LogPrinter, ago, format_status, run_summary, shorten, table
from ..status import FINAL_STATUSES, RunKind, Status
from .connect import client
from .group import cli
from .run_options import command_text, run_arguments, run_options

HIDDEN_KINDS = (RunKind.WORKSPACE, RunKind.KERNEL)  # shown by `ps` only when asked for
VISIBLE_KINDS = tuple(k.value for k in RunKind if k not in HIDDEN_KINDS)
FINAL = tuple(s.value for s in Status if s in FINAL_STATUSES)


def exit_code_of(run) -> int:
    if run.status == Status.COMPLETE.value:
        return 0
    if run.status == Status.FAILED.value and run.user_exit_code:
        return run.user_exit_code
    return 1


def print_logs(
    run, follow: bool, tail: int | None = None, verbose: bool = False, as_json: bool = False
) -> int:
    """Print a run's logs (until it ends when following), then its summary once it is final;
    `verbose` prefixes each line with its time and status, `as_json` prints each entry as one
    JSON object per line (and no summary).

    Returns the exit code `spell run` should have."""
    printer = LogPrinter(click.echo, verbose=verbose)
    try:
        for entry in run.logs(follow=follow, tail=tail):
            if as_json:
                click.echo(json.dumps(entry.raw, ensure_ascii=False))
            else:
                printer.entry(entry)
    except KeyboardInterrupt:
        click.echo(
            f"\n✨ Stopped viewing logs; run {run.id} goes on. "
            f"View them with `spell logs -f {run.id}`, end the run with `spell kill {run.id}`",
            err=True,
        )
        return 130
    run.refresh()
    if run.status in FINAL and not as_json:
        for line in run_summary(run):
            click.echo(line)
    return exit_code_of(run)


# Options end at the command: `spell run -t T4 python train.py --epochs 3` passes `--epochs 3`
# to the command, while an unknown option before it is a usage error and creates no run.
@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("-b", "--background", is_flag=True, help="Do not follow the logs.")
@run_options
@click.option("-v", "--verbose", is_flag=True, help="Show each log line with its time and status.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(background, verbose, command, **options):
    """Run COMMAND in a new run and follow its logs.

    Quote the command to keep shell syntax for the run: spell run "echo hi > out.txt"
    """
    text = command_text(command)
    spell = client()
    new = spell.runs.new(command=text, **run_arguments(options))
    sys.exit(follow_new_run(new, background, verbose))


def follow_new_run(new, background: bool, verbose: bool) -> int:
    """Say what was created, then follow its logs unless `background`; the exit code."""
    for warning in getattr(new, "code_warnings", ()):
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"💫 Casting spell #{new.id}…")
    if new.tensorboard_url:
        click.echo(f"✨ TensorBoard: {new.tensorboard_url}")
    if background:
        click.echo(f"View logs with `spell logs {new.id}`")
        return 0
    click.echo("✨ Stop viewing logs with ^C")
    return print_logs(new, follow=True, verbose=verbose)


@cli.command()
@click.option("-n", "--number", default=20, show_default=True, help="How many runs to show.")
@click.option(
    "-l", "--label", "labels", multiple=True, help="Only runs with this label (repeatable)."
)
@click.option("-s", "--status", "statuses", multiple=True, help="Only runs in this status.")
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Include workspaces, kernels and archived runs."
)
@click.option("-v", "--verbose", is_flag=True, help="Also show each run's commit and machine.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON array.")
@click.option("-p", "--project", default=None, help="Only runs of this project.")
@click.option(
    "--mine", is_flag=True, help="Only runs you created (a team's store holds everyone's)."
)
@click.option("--creator", default=None, help="Only runs this user created.")
def ps(number, labels, statuses, show_all, verbose, as_json, project, mine, creator):
    """List the newest runs (with -l, those carrying any of the labels)."""
    if mine and creator:
        raise click.UsageError("give --mine or --creator, not both")
    spell = client()
    runs = spell.runs.list(
        number=number,
        labels=list(labels),
        statuses=list(statuses),
        kinds=[] if show_all else list(VISIBLE_KINDS),
        archived=None if show_all else False,
        project=project,
        mine=mine,
        creator=creator,
    )
    if as_json:
        click.echo(json.dumps([r.raw for r in reversed(runs)], indent=2, ensure_ascii=False))
        return
    if not runs:
        if labels or statuses or project or mine or creator:
            click.echo("No runs match these filters")
        else:
            click.echo("No runs yet: start one with spell run")
        return
    headers = ["ID", "COMMAND", "STATUS", "CREATED", "CREATOR", "LABELS", "WORKFLOW"]
    rows = [
        [
            str(r.id),
            shorten(r.command, 48),
            format_status(r),
            ago(r.created_at),
            shorten(r.owner or "-", 24),
            ", ".join(r.labels),
            group_of(r),
        ]
        for r in reversed(runs)
    ]
    if verbose:
        headers += ["MACHINE", "COMMIT", "TENSORBOARD"]
        for row, r in zip(rows, reversed(runs), strict=True):
            commit = f"{r.repository}@{r.commit_hash[:10]}" if r.commit_hash else "-"
            row += [
                r.machine_type,
                commit + ("+patch" if r.has_patch else ""),
                r.tensorboard_url or "-",
            ]
    click.echo(table(headers, rows))


def group_of(run) -> str:
    """What `ps` says a run belongs to: its workflow (`master` for the master itself) or
    its search."""
    if run.kind == RunKind.WORKFLOW.value:
        return "master"
    if run.workflow_id:
        return str(run.workflow_id)
    if run.search_id:
        return f"search {run.search_id}"
    return "-"


@cli.command()
@click.argument("run_id", type=int)
def patch(run_id):
    """Print the uncommitted changes run RUN_ID's code was made with (a git patch)."""
    sys.stdout.buffer.write(client().runs.get(run_id).patch())


@cli.command()
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing until the run ends.")
@click.option(
    "-n", "--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines."
)
@click.option(
    "-v", "--verbose", "--timestamps", is_flag=True, help="Show each line's time and status."
)
@click.option("--json", "as_json", is_flag=True, help="Print each entry as a JSON object line.")
@click.argument("run_id", type=int)
def logs(follow_, tail, verbose, as_json, run_id):
    """Print the logs of run RUN_ID."""
    the_run = client().runs.get(run_id)
    code = print_logs(the_run, follow=follow_, tail=tail, verbose=verbose, as_json=as_json)
    if code == 130:
        sys.exit(code)


def _each(run_ids, verb: str, act) -> None:
    spell = client()
    failed = False
    for run_id in run_ids:
        try:
            act(spell.runs.get(run_id))
            click.echo(f"✨ {verb} run {run_id}")
        except Exception as exc:
            from ..client.errors import SpellClientError

            if not isinstance(exc, SpellClientError):
                raise
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("run_ids", type=int, nargs=-1, required=True)
def stop(run_ids):
    """Stop runs gracefully: SIGTERM, then their outputs are saved."""
    _each(run_ids, "Stopping", lambda r: r.stop())


@cli.command()
@click.argument("run_ids", type=int, nargs=-1, required=True)
def kill(run_ids):
    """Kill runs at once: SIGKILL, nothing is saved."""
    _each(run_ids, "Killing", lambda r: r.kill())


@cli.command()
@click.argument("run_ids", type=int, nargs=-1, required=True)
def archive(run_ids):
    """Archive finished runs: `spell ps` no longer shows them."""
    _each(run_ids, "Archived", lambda r: r.archive())


@cli.command()
@click.option("-r", "--remove", is_flag=True, help="Remove the label instead.")
@click.argument("run_id", type=int)
@click.argument("label")
def label(remove, run_id, label):
    """Add LABEL to run RUN_ID (or remove it with --remove)."""
    the_run = client().runs.get(run_id)
    if remove:
        the_run.remove_label(label)
        click.echo(f"✨ Removed label {label!r} from run {run_id}")
    else:
        the_run.add_label(label)
        click.echo(f"✨ Labeled run {run_id} {label!r}")


@cli.command()
@click.option("-f", "--follow", "follow_", is_flag=True, help="Print a sample every second.")
@click.argument("run_id", type=int)
def stats(follow_, run_id):
    """Print CPU, memory, network and block I/O of running run RUN_ID (and its GPUs' use)."""
    from ..humanize import human_size

    the_run = client().runs.get(run_id)
    header = ["CPU %", "MEMORY", "LIMIT", "NET RX/TX", "BLOCK R/W", "GPUS"]
    first = True
    while True:
        try:
            sample = the_run.stats()
        except Exception as exc:
            from ..client.errors import APIError

            if follow_ and not first and isinstance(exc, APIError) and exc.status_code == 409:
                return  # the run ended while we watched
            raise
        gpus = "; ".join(
            f"{g['index']}: {g['utilization_percent']}% {g['memory_used_mib']:g}/"
            f"{g['memory_total_mib']:g} MiB"
            for g in sample["gpus"]
        )
        row = [
            f"{sample['cpu_percent']:.1f}",
            human_size(sample["memory_bytes"]),
            human_size(sample["memory_limit_bytes"]),
            f"{human_size(sample['network_rx_bytes'])} / {human_size(sample['network_tx_bytes'])}",
            f"{human_size(sample['block_read_bytes'])} / {human_size(sample['block_write_bytes'])}",
            gpus or "-",
        ]
        lines = table(header, [row]).splitlines()
        click.echo("\n".join(lines if first else lines[1:]))
        first = False
        if not follow_:
            return


@cli.command("machine-types")
def machine_types():
    """List machine types with their resources and how many more runs of each fit now."""
    from ..humanize import human_size

    report = client().machine_types()
    rows = [
        [
            t["name"],
            f"{t['cpus']:g}",
            human_size(t["memory_mib"] * 2**20),
            f"{t['gpus']}x {t['gpu']}" if t["gpus"] else "-",
            ("-" if t["available"] is None else str(t["available"]))
            if not t["unavailable_reason"]
            else f"0 ({t['unavailable_reason']})",
        ]
        for t in report["machine_types"]
    ]
    click.echo(table(["NAME", "CPUS", "MEMORY", "GPUS", "FREE NOW"], rows))
    if "nodes" in report:  # a cluster places runs
        for node in report["nodes"] or []:
            types = ", ".join(node["machine_types"]) or "-"
            click.echo(
                f"Node {node['node_ip']}: {node['cpus']:g} CPUs, "
                f"{human_size(node['memory_mib'] * 2**20)}, {node['gpus']} GPUs, types: {types}"
            )
        return
    host = report["host"]
    gpus = ", ".join(f"{g['index']}:{g['model']}" for g in host["gpus"]) or "none"
    click.echo(
        f"\nHost: {host['cpus']:g} CPUs, {human_size(host['memory_mib'] * 2**20)}, GPUs: {gpus}"
    )
