"""Workspace benchmarks, each beside its baseline measured in the same run (Docker backend):

    .venv/bin/python benchmarks/bench_workspaces.py [--repeat N] [--executes N]

- start: from `spell jupyter NAME -b` to the proxied `/api/status` answering (environment
  cached), against `docker run` of the same image starting `jupyter-lab` to its own
  `/api/status` answering; both polled every 20 ms;
- websocket round trip of a kernel `execute_request` of `pass` to its `execute_reply`, through
  the host's proxy against straight to the workspace's Jupyter (p50/p95);
- a remote kernel: from asking a Jupyter server with the extension for a "Python 3 (Spell ·
  CPU)" kernel to the result of `1+1`, against the same for a local ipykernel.
Aim (issue 16): each at most 1.5x its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BASE_IMAGE = os.environ.get("SPELL_TEST_BASE_IMAGE", "spell/base:bookworm-py311")


def spell(env: dict, *args: str) -> str:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "spell"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"spell {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def answers(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def until_answering(url: str, token: str, started: float) -> float:
    while not answers(url, token):
        if time.monotonic() - started > 300:
            raise SystemExit(f"{url} never answered")
        time.sleep(0.02)
    return time.monotonic() - started


def execute_times(ws_url: str, token: str, count: int) -> list[float]:
    """Seconds from each `execute_request` of `pass` to its `execute_reply`."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def run() -> list[float]:
        connection = await websocket_connect(
            HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
        )
        session = uuid.uuid4().hex
        times = []
        for _ in range(count + 5):  # the first few warm the kernel up
            msg_id = uuid.uuid4().hex
            header = {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "bench",
                "session": session,
                "version": "5.3",
                "date": "",
            }
            message = {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": {"code": "pass", "silent": False},
                "channel": "shell",
                "buffers": [],
            }
            sent = time.perf_counter()
            await connection.write_message(json.dumps(message))
            while True:
                reply = json.loads(await connection.read_message())
                if (
                    reply.get("parent_header", {}).get("msg_id") == msg_id
                    and reply["msg_type"] == "execute_reply"
                ):
                    break
            times.append(time.perf_counter() - sent)
        connection.close()
        return times[5:]

    return asyncio.run(run())


def kernel_start_times(repeat: int) -> dict[str, list[float]]:
    """Seconds from POST /api/kernels to the result of `1+1`, for each kernel spec."""
    from conftest import SpellHome
    from helpers import LAB_TOKEN, Lab, kernel_execute

    from spell_jupyter.backends.debian_image import PYTHON_PACKAGES

    times: dict[str, list[float]] = {"spell-cpu": [], "python3": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        framework = {"image": BASE_IMAGE, "packages": list(PYTHON_PACKAGES)}
        env.update(
            SPELL_HOME=str(Path(tmp) / "home"),
            SPELL_BACKEND="docker",
            SPELL_FRAMEWORKS=json.dumps({"default": framework}),
            JUPYTER_RUNTIME_DIR=str(Path(tmp) / "runtime"),
            JUPYTER_DATA_DIR=str(Path(tmp) / "data"),
        )
        lab = Lab(SpellHome(Path(tmp) / "home", env))
        try:
            for _ in range(repeat):
                for name in times:
                    started = time.monotonic()
                    request = urllib.request.Request(
                        f"{lab.url}api/kernels",
                        data=json.dumps({"name": name}).encode(),
                        method="POST",
                        headers={"Authorization": f"token {LAB_TOKEN}"},
                    )
                    with urllib.request.urlopen(request, timeout=600) as response:
                        kernel = json.loads(response.read())["id"]
                    url = f"{lab.url.replace('http://', 'ws://')}api/kernels/{kernel}/channels"
                    assert kernel_execute(url, LAB_TOKEN, "1+1")["result"] == "2"
                    times[name].append(time.monotonic() - started)
                    request = urllib.request.Request(
                        f"{lab.url}api/kernels/{kernel}",
                        method="DELETE",
                        headers={"Authorization": f"token {LAB_TOKEN}"},
                    )
                    urllib.request.urlopen(request, timeout=120).close()
        finally:
            lab.stop()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executes", type=int, default=200)
    args = parser.parse_args()
    import docker

    engine = docker.from_env()
    from spell_jupyter.backends.debian_image import PYTHON_PACKAGES
    from spell_jupyter.engine.service_tokens import ServiceTokens
    from spell_jupyter.store import RunStore, connect_database

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        framework = {"image": BASE_IMAGE, "packages": list(PYTHON_PACKAGES)}
        env.update(
            SPELL_HOME=str(home),
            SPELL_BACKEND="docker",
            SPELL_FRAMEWORKS=json.dumps({"default": framework}),
            JUPYTER_RUNTIME_DIR=str(Path(tmp) / "runtime"),
        )
        spell(env, "server")
        info = json.loads((home / "server.json").read_text())
        store = RunStore(connect_database(f"sqlite:///{home / 'spell.db'}"))
        try:
            spell(env, "jupyter", "warm", "--no-browser", "-f")  # builds the environment
            image = store.handle_of(1)["image"]

            starts = []
            for index in range(args.repeat):
                name = f"bench{index}"
                started = time.monotonic()
                spell(env, "jupyter", name, "-b", "-f")
                url = f"{info['url']}spell/workspaces/{name}/api/status"
                starts.append(until_answering(url, info["token"], started))
                spell(env, "workspaces", "stop", name)

            direct_starts = []
            for _ in range(args.repeat):
                started = time.monotonic()
                container = engine.containers.run(
                    image,
                    [
                        "jupyter-lab",
                        "--no-browser",
                        "--allow-root",
                        "--ServerApp.ip=0.0.0.0",
                        "--ServerApp.port=8888",
                        "--IdentityProvider.token=bench",
                    ],
                    detach=True,
                    init=True,
                    ports={8888: ("127.0.0.1", None)},
                )
                try:
                    container.reload()
                    port = container.ports["8888/tcp"][0]["HostPort"]
                    direct_starts.append(
                        until_answering(f"http://127.0.0.1:{port}/api/status", "bench", started)
                    )
                finally:
                    container.remove(force=True)

            # the round trip of a kernel message, through the proxy and straight
            spell(env, "jupyter", "rtt", "--no-browser", "-f")
            run_id = max(r["id"] for r in json.loads(spell(env, "ps", "-a", "--json")))
            address = store.handle_of(run_id)["address"]
            request = urllib.request.Request(
                f"{info['url']}spell/workspaces/rtt/api/kernels",
                data=b'{"name": "python3"}',
                method="POST",
                headers={
                    "Authorization": f"token {info['token']}",
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                kernel = json.loads(response.read())["id"]
            path = f"spell/workspaces/rtt/api/kernels/{kernel}/channels"
            host = info["url"].replace("http://", "ws://")
            proxied = execute_times(f"{host}{path}", info["token"], args.executes)
            token = ServiceTokens(home).token(run_id)
            direct = execute_times(f"ws://{address}/{path}", token, args.executes)
        finally:
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "spell"), "server", "stop"],
                env=env,
                capture_output=True,
                timeout=120,
            )

    kernels = kernel_start_times(args.repeat)
    start, base = statistics.median(starts), statistics.median(direct_starts)
    print(f"start to /api/status answering: spell jupyter {start:.2f} s (runs {starts})")
    print(f"  baseline docker run jupyter-lab: {base:.2f} s -> {start / base:.2f}x")
    for name, times in (("proxied", proxied), ("direct", direct)):
        print(
            f"execute 'pass' round trip {name}: p50 {percentile(times, 0.5) * 1000:.2f} ms, "
            f"p95 {percentile(times, 0.95) * 1000:.2f} ms"
        )
    print(
        f"  proxied / direct: p50 {percentile(proxied, 0.5) / percentile(direct, 0.5):.2f}x, "
        f"p95 {percentile(proxied, 0.95) / percentile(direct, 0.95):.2f}x"
    )
    remote, local = statistics.median(kernels["spell-cpu"]), statistics.median(kernels["python3"])
    print(f"kernel asked for -> 1+1 answered: Spell · CPU {remote:.2f} s {kernels['spell-cpu']}")
    print(f"  baseline local ipykernel: {local:.2f} s -> {remote / local:.2f}x")


if __name__ == "__main__":
    main()
