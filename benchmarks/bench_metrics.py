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

THROUGHPUT = r"""
import time
from spell.metrics import send_metric
from spell_jupyter.client.metrics import current_sender

N = 200_000
start = time.perf_counter()
for i in range(N):
    send_metric("tight", i)
tight = N / (time.perf_counter() - start)
start = time.perf_counter()
current_sender().flush()
drained = time.perf_counter() - start

def work(step, size):
    total = 0.0
    for k in range(size):
        total += (step * k) % 7
    return total

out = [f"tight_calls_per_s={tight:.0f}", f"drain_s={drained:.2f}"]
for size, steps in ((40, 50_000), (1500, 5_000)):
    start = time.perf_counter()
    for step in range(steps):
        work(step, size)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    for step in range(steps):
        send_metric(f"loss{size}", work(step, size))
    metered = time.perf_counter() - start
    out.append(f"step{size}_us={bare / steps * 1e6:.1f}")
    out.append(f"slowdown{size}={metered / bare:.3f}")
print("RESULT " + " ".join(out), flush=True)
"""

LAG = r"""
import time
from spell.metrics import send_metric

for i in range(1000):
    send_metric("lag", time.time())
    time.sleep(0.005)
"""


def script(body: str) -> str:
    return f"cat > inside.py <<'EOF'\n{body}\nEOF\npython3 inside.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--base", default="spell/base:bookworm-py311")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), args.backend, args.base) as s:
        client = s.client
        run = client.runs.new(command=script(THROUGHPUT))
        run.wait_status(*client.runs.FINAL, timeout=600)
        result = next(e.text for e in run.logs() if e.text.startswith("RESULT"))
        fields = dict(part.split("=") for part in result.split()[1:])
        print(f"backend: {args.backend}")
        print(
            f"send_metric tight loop: {float(fields['tight_calls_per_s']):,.0f} calls/s "
            "(aim >= 50,000); the server took the 200,000 queued values "
            f"{float(fields['drain_s']):.2f} s after the loop "
            f"({200_000 / max(float(fields['drain_s']), 1e-3):,.0f} values/s)"
        )
        for size in (40, 1500):
            print(
                f"a loop of {fields[f'step{size}_us']} us steps with one send_metric per step: "
                f"{fields[f'slowdown{size}']}x the same loop without"
            )
        lagged = client.runs.new(command=script(LAG))
        lags = []
        for _, _, sent in lagged.metrics("lag", follow=True):
            lags.append((time.time() - sent) * 1000)
            if len(lags) == 1000:
                break
        lagged.wait_status(*client.runs.FINAL, timeout=120)
        lags.sort()
        p50, p95 = statistics.median(lags), lags[int(len(lags) * 0.95) - 1]
        print(f"lag sent -> follower: p50 {p50:.1f} ms, p95 {p95:.1f} ms (aim p95 <= 200 ms)")


if __name__ == "__main__":
    main()
