"""The flags of `spell run`, defined once: `spell run`, `spell workflow`, `spell hyper` and the
notebook magics take the same ones, and `run_arguments` turns them into `runs.new` keywords."""

from __future__ import annotations

import os
import sys

import click

from ..stop_conditions import parse_stop_conditions


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
    click.option("--provider", expose_value=False, callback=not_supported_yet),
    click.option("--conda-env", expose_value=False, callback=not_supported_yet),
)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expects NAME=VALUE, got {item!r}", param_hint="--param")
        params[name] = value
    return params


def parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.ClickException(f"-e/--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def check_stop_conditions(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    try:
        parse_stop_conditions(list(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


RUN_OPTIONS = (
    click.option(
        "-e",
        "--env",
        "envvars",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set an environment variable in the run (repeatable).",
    ),
    click.option("-d", "--description", default="", help="A description of the run."),
    click.option("-l", "--label", "labels", multiple=True, help="Label the run (repeatable)."),
    click.option(
        "-t", "--machine-type", default="CPU", show_default=True, help="Machine type to run on."
    ),
    click.option("--framework", default=None, help="Base image by name (default, pytorch, ...)."),
    click.option("--apt", "apt", multiple=True, metavar="PKG", help="A Debian package (repeats)."),
    click.option(
        "--pip",
        "pip",
        multiple=True,
        metavar="SPEC",
        help="A pip package, e.g. six==1.16.",
    ),
    click.option(
        "--pip-req", type=click.Path(dir_okay=False), help="A requirements file to pip install."
    ),
    click.option(
        "--conda-file", type=click.Path(dir_okay=False), help="A conda environment file to install."
    ),
    click.option(
        "--deps-from-env",
        is_flag=True,
        help="Also install this virtualenv's (or conda env's) top-level packages.",
    ),
    click.option(
        "--docker-image",
        "--from",
        "docker_image",
        metavar="IMAGE",
        help="Run in this image as it is (no other environment flag).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="MIN",
        help="Stop the run (outputs saved) after MIN minutes.",
    ),
    click.option(
        "-m",
        "--mount",
        "mounts",
        multiple=True,
        metavar="RESOURCE[:PATH]",
        help="Show a SpellFS path (runs/<id>, uploads/..., a link) or s3:// URL in the run at "
        "PATH (default: its name in the working folder; /mnt/... recommended). Repeatable.",
    ),
    click.option("-c", "--commit-ref", metavar="REF", help="Run this commit (no local changes)."),
    click.option("--github-url", metavar="URL", help="Clone this git URL as the run's code."),
    click.option("--github-ref", metavar="REF", help="Branch, tag or commit of --github-url."),
    click.option(
        "-f",
        "--force",
        is_flag=True,
        help="Outside git, run with no code without asking.",
    ),
    click.option(
        "--stop-condition",
        "stop_conditions",
        multiple=True,
        metavar="'METRIC OP NUMBER[:MIN_INDEX]'",
        callback=check_stop_conditions,
        help="Stop the run (outputs saved) once the metric meets this, e.g. 'loss < 0.1:100'; "
        "&& joins clauses that must all hold; repeatable (any one stops it), at most 5.",
    ),
    click.option("-p", "--project", default=None, help="File the run in this project."),
    click.option(
        "--tensorboard-dir",
        metavar="DIR",
        help="Where the run writes TensorBoard logs: served live (and from its outputs after) at "
        "<server>/spell/runs/<id>/tensorboard/.",
    ),
    *SPELL_OPTIONS_NOT_YET,
)


# `spell run --param`; searches take --param for their own parameters instead.
PARAMS_OPTION = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Replace :NAME: in the command with VALUE (repeatable), as Spell's params did.",
)


def run_options(command=None, *, params: bool = True):
    """Decorate a click command with every flag of `spell run` (not -b, -v or the command);
    `params=False` leaves out --param (a search's parameters take its name)."""

    def decorate(command):
        for option in reversed([*RUN_OPTIONS, *([PARAMS_OPTION] if params else [])]):
            command = option(command)
        return command

    return decorate(command) if command is not None else decorate


def command_text(command: tuple[str, ...] | str) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    if not text.strip():
        raise click.ClickException('give a command to run, as in: spell run "python train.py"')
    return text


NO_CODE_NOTE = "Not in a git repository: the run has no code (-f: run without this note)."


def code_folder(github_url: str | None, commit_ref: str | None, force: bool) -> str | None:
    """The folder whose repository is the run's code: the current one inside git; outside,
    none (asked first on a terminal unless --force)."""
    if github_url:
        return None
    from ..code_snapshot import find_repository

    if find_repository(os.getcwd()) is not None:
        return os.getcwd()
    if commit_ref:
        raise click.ClickException("--commit-ref needs a git repository: run from inside one")
    if force:
        return None
    if sys.stdin.isatty():
        click.confirm(
            "Could not find a git repository, so no code will be available in the run. "
            "Continue anyway?",
            default=True,
            abort=True,
        )
    else:
        click.echo(NO_CODE_NOTE, err=True)
    return None


def run_arguments(options: dict) -> dict:
    """`runs.new` keywords from the flags of RUN_OPTIONS (and --param where it was given)."""
    arguments = {
        "envvars": parse_env(options["envvars"]),
        "labels": list(options["labels"]),
        "description": options["description"],
        "machine_type": options["machine_type"],
        "framework": options["framework"],
        "docker_image": options["docker_image"],
        "apt_packages": list(options["apt"]),
        "pip_packages": list(options["pip"]),
        "requirements_file": options["pip_req"],
        "conda_file": options["conda_file"],
        "deps_from_env": options["deps_from_env"],
        "timeout": options["timeout"],
        "mounts": list(options["mounts"]),
        "cwd": code_folder(options["github_url"], options["commit_ref"], options["force"]),
        "commit_ref": options["commit_ref"],
        "github_url": options["github_url"],
        "github_ref": options["github_ref"],
        "stop_conditions": list(options["stop_conditions"]) or None,
        "project": options["project"],
        "tensorboard_directory": options["tensorboard_dir"],
    }
    if "params" in options:
        arguments["params"] = parse_params(options["params"]) or None
    return arguments
