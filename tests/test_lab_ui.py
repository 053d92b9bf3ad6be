"""The JupyterLab extension in a real Chromium (fixtures in lab_pages.py): the Spell sidebar, a
run submitted from the dialog appearing and completing without a reload, its logs streaming
while it runs, Stop, the server's refusal shown in the dialog, a server restart and a changed
token."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import Lab
from lab_pages import LAB_ARGS, row_status, submit

pytestmark = pytest.mark.ui


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


def test_the_wheel_carries_the_prebuilt_extension(wheel_site, home):
    """What `pip install spell-jupyter` gives: the extension listed, enabled and working,
    with no Node and no build."""
    from lab_pages import wheel_env

    env = {**home.env, **wheel_env(wheel_site)}
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = listed.stdout + listed.stderr
    shared = wheel_site / "share" / "jupyter" / "labextensions" / "spell-jupyter"
    assert f"{shared.parent}" in out, out
    line = next(line for line in out.splitlines() if "spell-jupyter" in line)
    assert "enabled" in line and "OK" in line, out
    assert (shared / "package.json").is_file() and list((shared / "static").glob("*.js"))


def test_a_workspace_from_the_sidebar_opens_its_jupyterlab_in_a_tab(lab_page, home):
    """New workspace: the dialog's bad name comes back with the server's message; a good one
    starts it, its tab shows the workspace's own JupyterLab (through the proxy, same origin),
    and Stop ends it; the run's tab offers Open workspace instead of Rerun."""
    page = lab_page
    page.get_by_test_id("spell-new-workspace").click()
    page.get_by_test_id("spell-workspace-name").fill("bad name")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    page.get_by_test_id("spell-workspace-error").get_by_text("invalid workspace name").wait_for()
    page.get_by_test_id("spell-workspace-name").fill("labws")
    page.locator("[data-testid=spell-workspace-machine-type] option").first.wait_for(
        state="attached"
    )
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    frame = page.frame_locator("[data-testid=spell-workspace-frame]")
    frame.locator(".jp-LabShell").wait_for(timeout=90_000)
    frame.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)  # its own Lab, working
    page.get_by_test_id("spell-workspace-state").get_by_text("Running").wait_for()
    page.get_by_test_id("spell-workspace-stop").click()
    page.get_by_test_id("spell-workspace-state").get_by_text("Ended").wait_for(timeout=60_000)
    run = home.client().workspaces.get("labws").run
    assert run.status == "stopped"
    page.get_by_test_id("spell-filter-kind").select_option("workspace")
    page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]').click()
    page.get_by_test_id("spell-open-workspace").wait_for()
    assert page.get_by_test_id("spell-rerun").is_hidden()
    refused = [e for e in page.spell_errors if "400 POST" in e and "/workspaces" in e]
    assert len(refused) == 1  # the bad name, and nothing else failed
    assert [e for e in page.spell_errors if e not in refused and "400" not in e] == []


def test_a_run_with_a_tensorboard_links_it_from_its_tab(lab_page, home):
    page = lab_page
    client = home.client()
    run = client.runs.new("mkdir -p logs && sleep 600", tensorboard_directory="logs", labels=["tb"])
    page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]').click()
    link = page.get_by_test_id("spell-run-tensorboard")
    link.wait_for(timeout=60_000)
    href = link.get_attribute("href")
    assert href.endswith(f"/spell/runs/{run.id}/tensorboard/")
    assert page.spell_errors == []
    with page.expect_response(
        lambda r: r.url.split("?")[0].endswith("/tensorboard/data/runs") and r.status == 200,
        timeout=90_000,
    ):
        page.goto(href)  # the Lab's login cookie lets the browser in
    page.wait_for_function("document.title.includes('TensorBoard')", timeout=90_000)
    # TensorBoard's own stylesheet asks for its fonts at the server's root, not under its
    # prefix: those (and only those) fail
    failed = [e for e in page.spell_errors if e.startswith(("4", "5"))]
    assert failed and all("/font-roboto/" in e for e in failed), failed
    run.kill()
