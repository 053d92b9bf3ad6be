"""Metrics benchmarks: `send_metric` from inside a real run, and the lag from a send to a
follower of `run.metrics(follow=True)`, each beside its baseline measured in the same run.

    .venv/bin/python benchmarks/bench_metrics.py [--backend local|docker] [--base IMAGE]

Figures:
- calls/s of `send_metric` in a tight loop (200,000 calls), inside a run;
- a "training loop" of 50,000 steps of a little work each, with one send_metric per step
  against the same loop without: the slowdown ratio (1.00 = no cost);
- end-to-end lag, sent -> seen by an HTTP follower outside the run, p50/p95 of 1,000 values
  sent 200 per second. Aims (issue 13): >= 50,000 calls/s, p95 lag <= 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import Server

INSIDE = r"""
import time
from spell.metrics import send_metric

N = 200_000
start = time.perf_counter()
for i in range(N):
    send_metric("tight", i)
tight = N / (time.perf_counter() - start)

def work(step):
    total = 0.0
    for k in range(40):
        total += (step * k) % 7
    return total

STEPS = 50_000
start = time.perf_counter()
for step in range(STEPS):
    work(step)
bare = time.perf_counter() - start
start = time.perf_counter()
for step in range(STEPS):
    send_metric("loss", work(step))
metered = time.perf_counter() - start
print(f"RESULT tight_calls_per_s={tight:.0f} loop_slowdown={metered / bare:.3f} "
      f"bare_step_us={bare / STEPS * 1e6:.1f}", flush=True)

for i in range(1000):
    send_metric("lag", time.time())
    time.sleep(0.005)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--base", default="spell/base:bookworm-py311")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), args.backend, args.base) as s:
        client = s.client
        command = f"cat > inside.py <<'EOF'\n{INSIDE}\nEOF\npython3 inside.py"
        run = client.runs.new(command=command)
        lags = []
        for _, _, sent in run.metrics("lag", follow=True):
            lags.append((time.time() - sent) * 1000)
            if len(lags) == 1000:
                break
        run.wait_status(*client.runs.FINAL, timeout=300)
        result = next(e.text for e in run.logs() if e.text.startswith("RESULT"))
        fields = dict(part.split("=") for part in result.split()[1:])
        lags.sort()
        print(f"backend: {args.backend}")
        print(
            f"send_metric tight loop: {float(fields['tight_calls_per_s']):,.0f} calls/s "
            "(aim >= 50,000)"
        )
        print(
            f"training loop ({fields['bare_step_us']} us/step) with one send_metric per step: "
            f"{fields['loop_slowdown']}x the loop without"
        )
        p50 = statistics.median(lags)
        p95 = lags[int(len(lags) * 0.95) - 1]
        print(f"lag sent -> follower: p50 {p50:.1f} ms, p95 {p95:.1f} ms (aim p95 <= 200 ms)")
        counts = {m["name"]: m["count"] for m in run.metric_names()}
        print(f"values stored: {counts}")


if __name__ == "__main__":
    main()
