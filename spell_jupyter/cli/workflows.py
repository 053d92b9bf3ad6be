"""spell workflow: a master run whose script starts worker runs (ls, show, stop, kill)."""

from __future__ import annotations

import sys

import click

from ..run_text import ago, format_status, shorten, table
from .connect import client
from .group import cli
from .run_options import command_text, run_arguments, run_options
from .runs import follow_new_run


class WorkflowGroup(click.Group):
    """`spell workflow ls|show|stop|kill ...`, and `spell workflow [FLAGS] COMMAND` starts one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=WorkflowGroup)
def workflow():
    """Start a workflow: a master run whose Python script starts, waits on and chains worker
    runs (spell.client); or list, show, stop and kill workflows.

    spell workflow --repo model=../model "python pipeline.py"
    """


def _repos(values: tuple[str, ...], flag: str) -> dict[str, tuple[str, str | None]]:
    from ..client.workflows import parse_repo

    found: dict[str, tuple[str, str | None]] = {}
    for text in values:
        label, source, ref = parse_repo(text)
        if label in found:
            raise click.BadParameter(f"the label {label!r} is given twice", param_hint=flag)
        found[label] = (source, ref)
    return found


@workflow.command("start", hidden=True, context_settings={"allow_interspersed_args": False})
@click.option(
    "-r",
    "--repo",
    "repos",
    multiple=True,
    metavar="LABEL=PATH[:COMMIT]",
    help="A git repository on this machine, snapshotted now (commit + uncommitted changes), "
    "that workers get with commit_label=LABEL. Repeatable.",
)
@click.option(
    "--github-repo",
    "github_repos",
    multiple=True,
    metavar="LABEL=URL[:REF]",
    help="A git URL the server clones for workers with commit_label=LABEL. Repeatable.",
)
@click.option("-b", "--background", is_flag=True, help="Do not follow the master's logs.")
@click.option(
    "--local",
    "local_master",
    is_flag=True,
    help="Run the master script here, in this folder and environment (its workers are runs).",
)
@run_options
@click.option("-v", "--verbose", is_flag=True, help="Show each log line with its time and status.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def start(repos, github_repos, background, local_master, verbose, command, **options):
    """Start a workflow whose master runs COMMAND."""
    text = command_text(command)
    local = _repos(repos, "--repo")
    remote = _repos(github_repos, "--github-repo")
    both = sorted(set(local) & set(remote))
    if both:
        raise click.BadParameter(f"the label {both[0]!r} is given twice", param_hint="--repo")
    if local_master and background:
        raise click.UsageError("--local runs the master here: it cannot go to the background")
    spell = client()
    arguments = run_arguments(options)
    if local_master:
        arguments["cwd"] = None  # the master runs in this folder; --repo snapshots still go
    flow = spell.workflows.new(
        text, repos=local, github_repos=remote, local=local_master, **arguments
    )
    click.echo(f"✨ Workflow {flow.id}: its master is run {flow.id}")
    if local_master:
        click.echo("✨ Running the master here (--local)")
        code = spell.workflows.run_local(flow)
        click.echo(f"✨ Workflow {flow.id}'s master ended {flow.status} (exit code {code})")
        sys.exit(code)
    sys.exit(follow_new_run(flow.master_run, background, verbose))


@workflow.command("ls")
@click.option("-n", "--number", default=20, show_default=True, help="How many to show.")
def list_workflows(number):
    """List the newest workflows."""
    flows = client().workflows.list(number=number)
    if not flows:
        click.echo("No workflows yet: start one with spell workflow")
        return
    rows = [
        [
            str(f.id),
            shorten(f.master_run.command, 48),
            format_status(f.master_run),
            ago(f.master_run.created_at),
        ]
        for f in reversed(flows)
    ]
    click.echo(table(["ID", "COMMAND", "STATUS", "CREATED"], rows))


@workflow.command("show")
@click.argument("workflow_id", type=int)
def show(workflow_id):
    """The workflow's master and its runs, as a tree."""
    flow = client().workflows.get(workflow_id)
    master = flow.master_run
    click.echo(f"Workflow {flow.id}  {format_status(master)}  {shorten(master.command, 60)}")
    workers = flow.runs
    for index, run in enumerate(workers):
        branch = "└─" if index == len(workers) - 1 else "├─"
        labels = f"  [{', '.join(run.labels)}]" if run.labels else ""
        click.echo(
            f"  {branch} run {run.id}  {format_status(run)}  {shorten(run.command, 50)}{labels}"
        )
    if not workers:
        click.echo("  (no runs yet)")


def _act(workflow_id: int, verb: str) -> None:
    flow = client().workflows.get(workflow_id)
    getattr(flow, verb)()
    click.echo(f"✨ Asked workflow {workflow_id} to {verb}: its master and its active runs")


@workflow.command("stop")
@click.argument("workflow_id", type=int)
def stop_workflow(workflow_id):
    """Stop the master and every active run of the workflow (outputs saved)."""
    _act(workflow_id, "stop")


@workflow.command("kill")
@click.argument("workflow_id", type=int)
def kill_workflow(workflow_id):
    """Kill the master and every active run of the workflow."""
    _act(workflow_id, "kill")
