"""spell run / ps / logs / stop / kill / label / archive."""

from __future__ import annotations

import json
import os
import sys

import click

from ..status import FINAL_STATUSES, RunKind, Status
from .connect import client
from .group import cli
from .render import LogPrinter, ago, format_status, run_summary, shorten, table

HIDDEN_KINDS = (RunKind.WORKSPACE, RunKind.KERNEL)  # shown by `ps` only when asked for
VISIBLE_KINDS = tuple(k.value for k in RunKind if k not in HIDDEN_KINDS)
FINAL = tuple(s.value for s in Status if s in FINAL_STATUSES)


def parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.ClickException(f"-e/--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


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


def not_supported_yet(ctx: click.Context, param: click.Parameter, value) -> None:
    """Refuse a Spell option this version does not implement, by name, before any run exists."""
    if value not in (None, False, ()):
        raise click.UsageError(f"`{param.opts[-1]}` is not supported yet", ctx)


# Options of Spell's `spell run` that are not built yet: refused by name, never ignored.
SPELL_OPTIONS_NOT_YET = (
    click.option("--distributed", metavar="N", expose_value=False, callback=not_supported_yet),
    click.option("--auto-resume", is_flag=True, expose_value=False, callback=not_supported_yet),
    click.option("--no-auto-resume", is_flag=True, expose_value=False, callback=not_supported_yet),
    click.option("--idempotent", is_flag=True, expose_value=False, callback=not_supported_yet),
    click.option("--tensorboard-dir", expose_value=False, callback=not_supported_yet),
    click.option("--stop-condition", multiple=True, expose_value=False, callback=not_supported_yet),
    click.option("-p", "--project", expose_value=False, callback=not_supported_yet),
    click.option("--provider", expose_value=False, callback=not_supported_yet),
    click.option("--conda-env", expose_value=False, callback=not_supported_yet),
)


def spell_options_not_yet(command):
    for option in reversed(SPELL_OPTIONS_NOT_YET):
        command = option(command)
    return command


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expects NAME=VALUE, got {item!r}", param_hint="--param")
        params[name] = value
    return params


# Options end at the command: `spell run -t T4 python train.py --epochs 3` passes `--epochs 3`
# to the command, while an unknown option before it is a usage error and creates no run.
@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("-b", "--background", is_flag=True, help="Do not follow the logs.")
@click.option(
    "-e",
    "--env",
    "envvars",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an environment variable in the run (repeatable).",
)
@click.option("-d", "--description", default="", help="A description of the run.")
@click.option("-l", "--label", "labels", multiple=True, help="Label the run (repeatable).")
@click.option(
    "-t", "--machine-type", default="CPU", show_default=True, help="Machine type to run on."
)
@click.option("--framework", default=None, help="Base image by name (default, pytorch, ...).")
@click.option("--apt", "apt", multiple=True, metavar="PKG", help="A Debian package (repeatable).")
@click.option(
    "--pip", "pip", multiple=True, metavar="SPEC", help="A pip package, e.g. six==1.16 (repeats)."
)
@click.option(
    "--pip-req", type=click.Path(dir_okay=False), help="A requirements file to pip install."
)
@click.option(
    "--conda-file", type=click.Path(dir_okay=False), help="A conda environment file to install."
)
@click.option(
    "--deps-from-env",
    is_flag=True,
    help="Also install this virtualenv's (or conda env's) top-level packages.",
)
@click.option(
    "--docker-image",
    "--from",
    "docker_image",
    metavar="IMAGE",
    help="Run in this image as it is (no other environment flag).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MIN",
    help="Stop the run (outputs saved) after MIN minutes.",
)
@click.option(
    "-m",
    "--mount",
    "mounts",
    multiple=True,
    metavar="RESOURCE[:PATH]",
    help="Show a SpellFS path (runs/<id>, uploads/..., a link) or s3:// URL in the run at "
    "PATH (default: its name in the working folder; /mnt/... recommended). Repeatable.",
)
@click.option("-c", "--commit-ref", metavar="REF", help="Run this commit (no uncommitted changes).")
@click.option("--github-url", metavar="URL", help="Clone this git URL as the run's code.")
@click.option("--github-ref", metavar="REF", help="Branch, tag or commit of --github-url.")
@click.option(
    "-f", "--force", is_flag=True, help="Outside a git repository, run with no code without asking."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Replace :NAME: in the command with VALUE (repeatable), as Spell's params did.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show each log line with its time and status.")
@spell_options_not_yet
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    background,
    envvars,
    description,
    labels,
    machine_type,
    framework,
    apt,
    pip,
    pip_req,
    conda_file,
    deps_from_env,
    docker_image,
    timeout,
    mounts,
    commit_ref,
    github_url,
    github_ref,
    force,
    params,
    verbose,
    command,
):
    """Run COMMAND in a new run and follow its logs.

    Quote the command to keep shell syntax for the run: spell run "echo hi > out.txt"
    """
    text = " ".join(command)
    if not text.strip():
        raise click.ClickException('give a command to run, as in: spell run "python train.py"')
    env = parse_env(envvars)
    spell = client()
    folder = None
    if not github_url:
        from ..client.code import find_repository

        if find_repository(os.getcwd()) is not None:
            folder = os.getcwd()
        elif commit_ref:
            raise click.ClickException("--commit-ref needs a git repository: run from inside one")
        elif not force and sys.stdin.isatty():
            click.confirm(
                "Could not find a git repository, so no code will be available in the run. "
                "Continue anyway?",
                default=True,
                abort=True,
            )
        else:
            click.echo("Not in a git repository: the run has no code.", err=True)
    new = spell.runs.new(
        command=text,
        envvars=env,
        labels=list(labels),
        description=description,
        machine_type=machine_type,
        framework=framework,
        docker_image=docker_image,
        apt_packages=list(apt),
        pip_packages=list(pip),
        requirements_file=pip_req,
        conda_file=conda_file,
        deps_from_env=deps_from_env,
        timeout=timeout,
        mounts=list(mounts),
        cwd=folder,
        commit_ref=commit_ref,
        github_url=github_url,
        github_ref=github_ref,
        params=parse_params(params) or None,
    )
    for warning in new.code_warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"💫 Casting spell #{new.id}…")
    if background:
        click.echo(f"View logs with `spell logs {new.id}`")
        return
    click.echo("✨ Stop viewing logs with ^C")
    sys.exit(print_logs(new, follow=True, verbose=verbose))


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
def ps(number, labels, statuses, show_all, verbose, as_json):
    """List the newest runs (with -l, those carrying any of the labels)."""
    spell = client()
    runs = spell.runs.list(
        number=number,
        labels=list(labels),
        statuses=list(statuses),
        kinds=[] if show_all else list(VISIBLE_KINDS),
        archived=None if show_all else False,
    )
    if as_json:
        click.echo(json.dumps([r.raw for r in reversed(runs)], indent=2, ensure_ascii=False))
        return
    if not runs:
        if labels or statuses:
            click.echo("No runs match these filters")
        else:
            click.echo("No runs yet: start one with spell run")
        return
    headers = ["ID", "COMMAND", "STATUS", "CREATED", "LABELS"]
    rows = [
        [
            str(r.id),
            shorten(r.command, 48),
            format_status(r),
            ago(r.created_at),
            ", ".join(r.labels),
        ]
        for r in reversed(runs)
    ]
    if verbose:
        headers += ["MACHINE", "COMMIT"]
        for row, r in zip(rows, reversed(runs), strict=True):
            commit = f"{r.repository}@{r.commit_hash[:10]}" if r.commit_hash else "-"
            row += [r.machine_type, commit + ("+patch" if r.has_patch else "")]
    click.echo(table(headers, rows))


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
    host = report["host"]
    gpus = ", ".join(f"{g['index']}:{g['model']}" for g in host["gpus"]) or "none"
    rows = [
        [
            t["name"],
            f"{t['cpus']:g}",
            human_size(t["memory_mib"] * 2**20),
            f"{t['gpus']}x {t['gpu']}" if t["gpus"] else "-",
            str(t["available"])
            if not t["unavailable_reason"]
            else f"0 ({t['unavailable_reason']})",
        ]
        for t in report["machine_types"]
    ]
    click.echo(table(["NAME", "CPUS", "MEMORY", "GPUS", "FREE NOW"], rows))
    click.echo(
        f"\nHost: {host['cpus']:g} CPUs, {human_size(host['memory_mib'] * 2**20)}, GPUs: {gpus}"
    )
