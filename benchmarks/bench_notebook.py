"""Notebook benchmarks, each beside its baseline measured in the same run:

    .venv/bin/python benchmarks/bench_notebook.py [--backend local|docker] [--repeat N]

Against a real `jupyter server` with the extension and a python3 kernel it started:
- time from executing `%spell_run "echo hi"` to `hi` in the cell's output, against `!echo hi` in
  the same kernel and against `spell run "echo hi"` in a terminal (to `hi` on its stdout);
  aim (issue 14): the magic adds <= 0.2 s to the CLI's time;
- `%%spell --in a --out b` round trip of a 100 MB numpy array (`b = a + 1`), against
  cloudpickle dumping and loading the same array in the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


class Lab:
    def __init__(self, tmp: Path, backend: str):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        self.env.update(
            SPELL_HOME=str(tmp / "home"),
            SPELL_BACKEND=backend,
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        )
        if backend == "docker":
            self.env["SPELL_FRAMEWORKS"] = json.dumps(
                {"default": {"image": "spell/base:bookworm-py311", "packages": []}}
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                f"--IdentityProvider.token={TOKEN}",
                "--ServerApp.allow_root=True",
                "--ServerApp.jpserver_extensions=spell_jupyter=True",
                f"--ServerApp.root_dir={tmp}",
                "--no-browser",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                self.api("GET", "api/status")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("jupyter server did not start")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def kernel(self):
        from jupyter_client import BlockingKernelClient

        kernel_id = self.api("POST", "api/kernels", {"name": "python3"})["id"]
        client = BlockingKernelClient(
            connection_file=str(self.tmp / "runtime" / f"kernel-{kernel_id}.json")
        )
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(60)
        return client

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def time_to_line(kernel, code: str, line: str) -> float:
    """Seconds from sending `code` to `line` in the cell's stdout."""
    seen: list[float] = []
    start = time.perf_counter()

    def hook(msg: dict) -> None:
        if not seen and msg["msg_type"] == "stream" and line in msg["content"]["text"]:
            seen.append(time.perf_counter() - start)

    reply = kernel.execute_interactive(code, output_hook=hook, timeout=300)
    assert reply["content"]["status"] == "ok" and seen, reply["content"]
    return seen[0]


def cli_time_to_line(env: dict, cwd: Path, line: str) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "spell"), "run", "-f", "echo hi"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    found = None
    for out in proc.stdout:
        if found is None and out.strip() == line:
            found = time.perf_counter() - start
    proc.wait()
    assert found is not None
    return found


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-notebook-") as folder:
        tmp = Path(folder)
        lab = Lab(tmp, args.backend)
        try:
            kernel = lab.kernel()
            quiet = {"output_hook": lambda msg: None, "timeout": 600}
            kernel.execute_interactive("%load_ext spell_jupyter", **quiet)
            time_to_line(kernel, '%spell_run -f "echo hi"', "hi")  # warm: environment, imports
            cli_time_to_line(lab.env, tmp, "hi")
            magic, bang, cli = [], [], []
            for _ in range(args.repeat):
                magic.append(time_to_line(kernel, '%spell_run -f "echo hi"', "hi"))
                bang.append(time_to_line(kernel, "!echo hi", "hi"))
                cli.append(cli_time_to_line(lab.env, tmp, "hi"))
            print(f"backend: {args.backend}")
            print(f"%spell_run 'echo hi' -> hi in the cell: {summary(magic)}")
            print(f"!echo hi -> hi in the cell:            {summary(bang)}")
            print(f"spell run 'echo hi' -> hi on stdout:  {summary(cli)}")
            added = statistics.median(magic) - statistics.median(cli)
            print(f"the magic adds {added:+.3f} s to the CLI's time (aim <= 0.2 s)")

            setup = "import numpy as np\na = np.ones(100 * 2**20 // 8)"
            kernel.execute_interactive(setup, **quiet)
            trips, pickles = [], []
            # the run unpickles numpy arrays: a container needs the kernel's numpy (the base
            # image has none); its environment is built once, before the timed trips
            import numpy

            flags = f"--pip numpy=={numpy.__version__} " if args.backend == "docker" else ""
            cell = f"%%spell -f {flags}--in a --out b\nb = a + 1"
            reply = kernel.execute_interactive(cell, **quiet)
            assert reply["content"]["status"] == "ok", reply["content"]
            for _ in range(max(3, args.repeat // 3)):
                start = time.perf_counter()
                reply = kernel.execute_interactive(cell, **quiet)
                assert reply["content"]["status"] == "ok", reply["content"]
                trips.append(time.perf_counter() - start)
                start = time.perf_counter()
                kernel.execute_interactive(
                    "import cloudpickle\n_ = cloudpickle.loads(cloudpickle.dumps(a))\n"
                    "_ = cloudpickle.loads(cloudpickle.dumps(a + 1))",
                    **quiet,
                )
                pickles.append(time.perf_counter() - start)
            print(f"%%spell --in a --out b, 100 MB array:   {summary(trips)}")
            print(f"cloudpickle dumps+loads both ways here: {summary(pickles)}")
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
