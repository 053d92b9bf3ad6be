"""Docker benchmarks: a cached-environment `spell run` against bare `docker run`, time from
submit to `running`, and a first `--pip six` build with uv against plain pip.

    .venv/bin/python benchmarks/bench_docker.py [--repeat 15] [--builds 3] [--base IMAGE]

Every figure is measured in this one process run, beside its baseline, on a throw-away
SPELL_HOME with a warm server. Needs a Docker Engine and the base image (`spell images
build-base`); builds `<base>-uv` (the base plus uv) for the uv figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

SPELL = Path(sys.executable).with_name("spell")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def between(run, first: str, then: str) -> float:
    """Seconds between the run entering status `first` and status `then`."""
    at = {s["status"]: _time(s["at"]) for s in run.status_history}
    return (at[then] - at[first]).total_seconds()


def _time(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def uv_image(base: str) -> str:
    """The base image plus uv (the same image otherwise), built once."""
    tag = f"{base}-uv"
    if subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True).returncode != 0:
        dockerfile = f"FROM {base}\nRUN python3 -m pip install --no-cache-dir uv\n"
        subprocess.run(
            [DOCKER, "build", "-q", "-t", tag, "-"], input=dockerfile.encode(), check=True
        )
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--base", default="spell/base:bookworm-py311")
    args = parser.parse_args()
    frameworks = {"default": args.base, "with-uv": uv_image(args.base)}

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        env.update(SPELL_HOME=tmp, SPELL_BACKEND="docker", SPELL_FRAMEWORKS=json.dumps(frameworks))
        subprocess.run([str(SPELL), "server"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            timed([str(SPELL), "run", "echo hello"], env)  # builds/caches the environment
            timed([DOCKER, "run", "--rm", args.base, "echo", "hello"], env)
            spell_times, docker_times = [], []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                spell_times.append(timed([str(SPELL), "run", "echo hello"], env))
                docker_times.append(timed([DOCKER, "run", "--rm", args.base, "echo", "hello"], env))

            os.environ.update(SPELL_HOME=tmp)
            from spell_jupyter.client import from_environment

            client = from_environment()
            to_running = []
            for _ in range(args.repeat):
                run = client.runs.new(command="true")
                run.wait_status(client.runs.COMPLETE)
                run.refresh()
                to_running.append(between(run, "machine_requested", "running"))

            builds: dict[str, list[float]] = {"pip": [], "uv": []}
            for _ in range(args.builds):
                for installer, framework in (("pip", "default"), ("uv", "with-uv")):
                    # A version floor never used before: a first build every time.
                    six = f"six>=0.0.{uuid.uuid4().int % 10**9}"
                    run = client.runs.new(command="true", pip_packages=[six], framework=framework)
                    run.wait_status(client.runs.COMPLETE, timeout=600)
                    run.refresh()
                    builds[installer].append(between(run, "building", "mounting"))
        finally:
            subprocess.run([str(SPELL), "server", "stop"], env=env, stdout=subprocess.DEVNULL)

    spell_med, docker_med = statistics.median(spell_times), statistics.median(docker_times)
    pip_med, uv_med = statistics.median(builds["pip"]), statistics.median(builds["uv"])
    print(f"cores: {os.cpu_count()}, base image {args.base}, {args.repeat} runs each")
    print(f"spell run 'echo hello' (cached environment, end to end): median {spell_med:.3f} s")
    print(f"docker run --rm <base> echo hello (baseline):            median {docker_med:.3f} s")
    print(f"ratio spell run / docker run:                            {spell_med / docker_med:.2f}x")
    print(
        "submit -> running (cached environment):                 median "
        f"{statistics.median(to_running) * 1000:.0f} ms"
    )
    print(f"first build of --pip six, plain pip:                     median {pip_med:.2f} s")
    print(f"first build of --pip six, uv:                            median {uv_med:.2f} s")
    print(f"ratio uv / pip:                                          {uv_med / pip_med:.2f}x")


if __name__ == "__main__":
    main()
