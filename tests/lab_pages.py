"""Driving JupyterLab in a real Chromium (Playwright on Debian's /usr/bin/chromium): a Lab for
each test with the extension installed from this project's wheel (built once per session, as a
user's `pip install` gets it), the Spell sidebar open, console errors and failed requests
collected, and a screenshot saved into $SPELL_UI_SCREENSHOTS (default: ui-screenshots/ beside
the tests' temporary folders) at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import LAB_TOKEN, Lab

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def wheel_site(tmp_path_factory) -> Path:
    """This project's wheel (with the prebuilt Lab extension), installed into a folder of its
    own: put first on PYTHONPATH and JUPYTER_PATH, it is what JupyterLab loads."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("spell_jupyter-*.whl")
    site = out / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300
    )
    return site


def wheel_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "JUPYTER_PATH": str(site / "share" / "jupyter")}


@pytest.fixture
def browser():
    """Chromium for one test (pytest-jupyter gives each test an asyncio loop of its own, which
    Playwright's sync API runs on: both start and end inside the test)."""
    if not shutil.which(CHROMIUM):
        message = f"UI tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("SPELL_REQUIRE_UI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


LAB_ARGS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)


@pytest.fixture
def lab_page(home, browser, request, tmp_path, wheel_site):
    """JupyterLab on `home` (local backend) open in a new page, the Spell sidebar shown;
    `page.spell_lab` is its server (a test may restart it). A test marked
    `lab_env(NAME=VALUE, ...)` starts it with those variables."""
    marker = request.node.get_closest_marker("lab_env")
    home.env.update(marker.kwargs if marker else {})
    # this test's own Lab settings and layout: nothing restored from another
    home.env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    settings = tmp_path / "lab-settings"
    home.env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no question about Jupyter news in screenshots
    home.env.update(wheel_env(wheel_site))
    the_lab = Lab(home, *LAB_ARGS, app="jupyterlab")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(  # which request failed (the console says only that one did)
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.goto(f"{the_lab.url}lab?token={LAB_TOKEN}")
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="spell-sidebar"]')
    tab.wait_for(timeout=60_000)
    if page.locator("#spell-sidebar").is_hidden():
        tab.click()
    page.get_by_test_id("spell-sidebar-heading").wait_for(state="visible")
    page.spell_errors = errors
    page.spell_lab = the_lab
    yield page
    folder = Path(os.environ.get("SPELL_UI_SCREENSHOTS") or tmp_path.parent / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{request.node.name}.png"))
    page.close()
    page.spell_lab.stop()


def row_status(page, run_id: int):
    return page.locator(f'#spell-sidebar tr[data-run-id="{run_id}"] [data-testid=spell-run-status]')


def submit(page, command: str, pip: str = "") -> None:
    page.get_by_test_id("spell-new-run").click()
    page.get_by_test_id("spell-command").fill(command)
    page.locator("[data-testid=spell-machine-type] option").first.wait_for(state="attached")
    if pip:
        page.get_by_test_id("spell-pip").fill(pip)
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
