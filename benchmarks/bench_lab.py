"""JupyterLab extension benchmarks, in Debian's Chromium through Playwright:

    .venv/bin/python benchmarks/bench_lab.py [--runs 10000]

- submit (the dialog's Run button) -> the sidebar row shows `running`;
- log lag: a run prints 50 lines 0.1 s apart, each with the time it printed it; the page notes
  when each line appears in the run tab (same machine clock): p50/p95. Aim (issue 15): p95 <=
  300 ms;
- a finished run of 100,000 lines: its tab opened until the last line shows, lines kept in the
  page, a search and a jump to the top;
- the sidebar with N runs in the store (queued, none started): time from navigation to the
  sidebar's first rows, and the tab's JS heap. Aim: <= 1 s with 10,000 runs, beside a baseline
  measured in the same run: JupyterLab's own load, to the sidebar attached, with no runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import LAB_TOKEN, Lab  # noqa: E402

LAB_ARGS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
PRINTER = (  # one line: the dialog's command field is a single-line input
    'python -c "import time; '
    "[print('t', time.time(), flush=True) or time.sleep(0.1) for _ in range(50)]\""
)


class Home:
    def __init__(self, folder: Path, **env: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "spell-home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPELL_")}
        self.env.update(
            SPELL_HOME=str(self.path),
            SPELL_BACKEND="local",
            JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
            **env,
        )


def open_sidebar(page, url: str) -> float:
    start = time.perf_counter()
    page.goto(f"{url}lab?token={LAB_TOKEN}")
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="spell-sidebar"]')
    tab.wait_for(timeout=120_000)
    if page.locator("#spell-sidebar").is_hidden():
        tab.click()
    page.locator("#spell-sidebar tbody tr").first.wait_for(timeout=120_000)
    return time.perf_counter() - start


def live_figures(browser, folder: Path) -> None:
    home = Home(folder / "live")
    lab = Lab(home, *LAB_ARGS, app="jupyterlab")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{lab.url}lab?token={LAB_TOKEN}")
        tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="spell-sidebar"]')
        tab.wait_for(timeout=120_000)
        if page.locator("#spell-sidebar").is_hidden():
            tab.click()
        from spell_jupyter.client import SpellClient

        client = SpellClient(token=LAB_TOKEN, base_url=lab.url)
        submits = []
        for n in range(1, 6):
            page.get_by_test_id("spell-new-run").click()
            page.get_by_test_id("spell-command").fill("sleep 30")
            page.locator("[data-testid=spell-machine-type] option").first.wait_for(state="attached")
            start = time.perf_counter()
            page.locator(".jp-Dialog-button.jp-mod-accept").click()
            row = page.locator(
                f'#spell-sidebar tr[data-run-id="{n}"] [data-testid=spell-run-status]'
            )
            row.get_by_text("running").wait_for(timeout=60_000)
            submits.append(time.perf_counter() - start)
            client.runs.get(n).kill()  # room for the next one
        print(
            f"submit -> row running: median {statistics.median(submits):.3f} s, "
            f"max {max(submits):.3f} s (n={len(submits)})"
        )
        page.get_by_test_id("spell-new-run").click()
        page.get_by_test_id("spell-command").fill(PRINTER)
        page.locator("[data-testid=spell-machine-type] option").first.wait_for(state="attached")
        page.evaluate(  # when each line is first drawn (the windowed view draws lines again)
            """() => {
              window.seen = new Map();
              new MutationObserver(records => {
                for (const r of records) for (const n of r.addedNodes) {
                  const m = /^t ([0-9.]+)/.exec(n.textContent || '');
                  if (m && !window.seen.has(m[1])) window.seen.set(m[1], Date.now() / 1000);
                }
              }).observe(document.body, {childList: true, subtree: true});
            }"""
        )
        page.locator(".jp-Dialog-button.jp-mod-accept").click()
        page.wait_for_function("() => window.seen.size >= 50", timeout=120_000)
        seen = page.evaluate("[...window.seen.entries()]")
        lags = sorted((shown - float(printed)) * 1000 for printed, shown in seen)
        p95 = lags[int(0.95 * (len(lags) - 1))]
        print(
            f"log line printed -> shown in the run tab: p50 {statistics.median(lags):.0f} ms, "
            f"p95 {p95:.0f} ms over {len(lags)} lines (aim p95 <= 300 ms)"
        )
        long_log_figures(page, client)
    finally:
        lab.stop()


def long_log_figures(page, client) -> None:
    """A finished run of 100,000 lines: opening its tab until the last line is shown, lines
    in the page, a search over all of them, and a jump to the top."""
    run = client.runs.new(command="seq 1 100000")
    run.wait_status("complete")
    row = page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]')
    row.wait_for(timeout=60_000)
    start = time.perf_counter()
    row.click()
    view = page.locator(f"#spell-run-view-{run.id}")
    logs = view.get_by_test_id("spell-run-logs")
    logs.get_by_text("100000", exact=True).wait_for(timeout=120_000)
    opened = time.perf_counter() - start
    in_page = logs.locator(".jp-spell-log-line").count()
    start = time.perf_counter()
    view.get_by_test_id("spell-log-search").fill("77777")
    logs.locator(".jp-spell-log-match", has_text="77777").wait_for()
    searched = time.perf_counter() - start
    start = time.perf_counter()
    logs.evaluate("node => { node.scrollTop = 0; }")
    logs.get_by_text("1", exact=True).wait_for()
    top = time.perf_counter() - start
    heap = page.evaluate("performance.memory.usedJSHeapSize") / 2**20
    print(
        f"a run of 100,000 lines: tab open -> last line shown {opened:.2f} s, {in_page} lines "
        f"in the page, search and jump {searched * 1000:.0f} ms, to the top {top * 1000:.0f} ms, "
        f"JS heap {heap:.0f} MiB"
    )


def many_runs_figures(browser, folder: Path, count: int) -> None:
    home = Home(folder / "many", SPELL_CONCURRENCY_LIMIT="0")
    lab = Lab(home, *LAB_ARGS, app="jupyterlab")
    try:
        from spell_jupyter.client import SpellClient

        client = SpellClient(token=LAB_TOKEN, base_url=lab.url)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.runs.new(command=f"echo {i}"), range(count)))
        print(f"{count} queued runs made in {time.perf_counter() - start:.0f} s")
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.add_init_script(  # when the sidebar is attached, and when its first row shows
            """new MutationObserver(() => {
                 const bar = document.querySelector('#spell-sidebar');
                 if (bar && !window.barAt) window.barAt = performance.now();
                 if (bar && bar.querySelector('tbody tr') && !window.rowsAt)
                   window.rowsAt = performance.now();
               }).observe(document, {childList: true, subtree: true});"""
        )
        first = open_sidebar(page, lab.url)
        own = page.evaluate("window.rowsAt - window.barAt") / 1000
        heap = page.evaluate("performance.memory.usedJSHeapSize") / 2**20
        print(
            f"sidebar with {count} runs: first rows {own:.2f} s after the sidebar is attached "
            f"(aim <= 1 s), {first:.2f} s after navigation (JupyterLab's own load included), "
            f"JS heap {heap:.0f} MiB"
        )
    finally:
        lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-lab-") as folder, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS
        )
        # a baseline in the same run: JupyterLab's own first paint, without any run
        empty = Home(Path(folder) / "empty")
        lab = Lab(empty, *LAB_ARGS, app="jupyterlab")
        try:
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(f"{lab.url}lab?token={LAB_TOKEN}")
            page.locator("#spell-sidebar").wait_for(state="attached", timeout=120_000)
            print(
                f"baseline: JupyterLab to the sidebar attached {time.perf_counter() - start:.2f} s"
            )
        finally:
            lab.stop()
        live_figures(browser, Path(folder))
        many_runs_figures(browser, Path(folder), args.runs)
        browser.close()


if __name__ == "__main__":
    main()
