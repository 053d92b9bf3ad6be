"""The JupyterLab extension in a real Chromium (Playwright driving Debian's /usr/bin/chromium):
JupyterLab with the extension installed from this package, the Spell sidebar, a run submitted
from the dialog appearing and completing without a reload, its logs streaming while it runs,
Stop, and the server's refusal shown in the dialog. Each test saves a screenshot into
$SPELL_UI_SCREENSHOTS (default: ui-screenshots/ beside the tests' temporary folders)."""

from __future__ import annotations

import os
import shutil
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
pytestmark = pytest.mark.ui


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
def lab_page(home, browser, request, tmp_path):
    """JupyterLab on `home` (local backend) open in a new page, the Spell sidebar shown;
    `page.spell_lab` is its server (a test may restart it)."""
    the_lab = Lab(home, *LAB_ARGS, app="jupyterlab")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
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


def test_a_run_from_the_dialog_streams_its_logs_and_completes_live(lab_page, tmp_path):
    page = lab_page
    gate = tmp_path / "gate"
    submit(page, f"echo first line; while [ ! -e {gate} ]; do sleep 0.05; done; echo second line")
    logs = page.get_by_test_id("spell-run-logs")
    logs.get_by_text("first line").wait_for(timeout=60_000)  # while the run waits on the gate
    page.get_by_test_id("spell-run-view-status").get_by_text("running").wait_for()
    row_status(page, 1).get_by_text("running").wait_for()  # the sidebar, without a reload
    gate.touch()
    logs.get_by_text("second line").wait_for(timeout=60_000)
    row_status(page, 1).get_by_text("complete").wait_for(timeout=60_000)
    page.get_by_test_id("spell-run-view-status").get_by_text("complete").wait_for()
    assert page.spell_errors == []


def test_stop_in_the_run_view_ends_a_long_run_stopped(lab_page, home):
    page = lab_page
    run = home.client().runs.new(command="sleep 600")  # from elsewhere: the row appears
    row_status(page, run.id).get_by_text("running").wait_for(timeout=60_000)
    row_status(page, run.id).click()
    page.get_by_test_id("spell-stop").click()
    page.get_by_test_id("spell-run-view-status").get_by_text("stopped").wait_for(timeout=60_000)
    assert home.client().runs.get(run.id).status == "stopped"
    assert page.spell_errors == []


def test_the_servers_refusal_is_shown_in_the_dialog(lab_page, home):
    page = lab_page
    submit(page, "true", pip="six;rm -rf /")
    field = page.locator("label", has=page.get_by_test_id("spell-pip"))
    error = field.get_by_test_id("spell-new-run-error")  # under the field it is about
    error.wait_for(timeout=30_000)
    assert "invalid pip package 'six;rm'" in error.inner_text()
    assert page.get_by_test_id("spell-pip").input_value() == "six;rm -rf /"  # kept to mend
    page.locator(".jp-Dialog-button.jp-mod-reject").click()
    assert home.client().runs.list() == []


def test_the_panel_reconnects_after_a_server_restart_and_catches_up(lab_page, home):
    page = lab_page
    port = page.spell_lab.port
    page.spell_lab.stop()  # JupyterLab goes away with the page open
    during = home.spell("run", "-f", "echo while the Lab was away")  # a `spell server` leads
    assert during.returncode == 0, during.stderr
    page.spell_lab = Lab(home, *LAB_ARGS, app="jupyterlab", port=port)
    row_status(page, 1).get_by_text("complete").wait_for(timeout=60_000)  # no reload
    assert page.locator("#spell-sidebar .jp-spell-state").inner_text() == ""


def test_a_changed_token_is_said_plainly(lab_page, home, tmp_path):
    """The server comes back with another token and cookie secret: the page's session is no
    longer good, and the panel says so rather than going blank."""
    page = lab_page
    port = page.spell_lab.port
    page.spell_lab.stop()
    secret = f"--ServerApp.cookie_secret_file={tmp_path / 'another-secret'}"
    page.spell_lab = Lab(
        home, *LAB_ARGS, secret, app="jupyterlab", port=port, token="another-token"
    )
    state = page.locator("#spell-sidebar .jp-spell-state")
    state.get_by_text("Spell refused this session").wait_for(timeout=60_000)
