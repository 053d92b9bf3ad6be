"""Spine benchmarks (local backend): a warm `spell run` against `sh -c`, submit latency, queue
throughput.

    .venv/bin/python benchmarks/bench_spell_run.py [--repeat 20] [--queued 200]

Every figure is measured in this one process run, beside its baseline, on a throw-away
SPELL_HOME with a warm server (started before timing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPELL = Path(sys.executable).with_name("spell")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--queued", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        env["SPELL_HOME"] = tmp
        env["SPELL_BACKEND"] = "local"  # the spine alone; bench_docker.py measures containers
        subprocess.run([str(SPELL), "server"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            timed([str(SPELL), "run", "echo hello"], env)  # warm-up
            run_times, sh_times, submit_times = [], [], []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                run_times.append(timed([str(SPELL), "run", "echo hello"], env))
                sh_times.append(timed(["sh", "-c", "echo hello"], env))
                submit_times.append(timed([str(SPELL), "run", "-b", "true"], env))

            os.environ["SPELL_HOME"] = tmp
            from spell_jupyter.client import from_environment

            client = from_environment()
            start = time.perf_counter()
            runs = [client.runs.new(command="true") for _ in range(args.queued)]
            submitted = time.perf_counter() - start
            for run in runs:
                run.wait_status(client.runs.COMPLETE)
            total = time.perf_counter() - start
        finally:
            subprocess.run([str(SPELL), "server", "stop"], env=env, stdout=subprocess.DEVNULL)

    run_med, sh_med = statistics.median(run_times), statistics.median(sh_times)
    print(f"cores: {os.cpu_count()} (concurrency limit defaults to this)")
    print(f"spell run 'echo hello' (end to end, warm server): median {run_med * 1000:.0f} ms")
    print(f"sh -c 'echo hello' (baseline):                     median {sh_med * 1000:.1f} ms")
    print(f"ratio spell run / sh -c:                           {run_med / sh_med:.0f}x")
    print(
        f"spell run -b true (submit latency):                median "
        f"{statistics.median(submit_times) * 1000:.0f} ms"
    )
    print(
        f"{args.queued} queued 'true' runs: submitted in {submitted:.2f} s, all complete in "
        f"{total:.2f} s -> {args.queued / total:.1f} runs/s"
    )


if __name__ == "__main__":
    main()
