"""The Lab's run view, sidebar filters and pages, SpellFS panel and "Run on Spell", in a real
Chromium (fixtures in lab_pages.py): what a user sees and clicks, checked against the server."""

from __future__ import annotations

import json
import tarfile
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import git
import pytest
from helpers import LAB_TOKEN, write_notebook
from lab_pages import row_status

pytestmark = pytest.mark.ui

TRAIN = """\
import os
from spell.metrics import send_metric
for step in range(5):
    send_metric("loss", 1.0 / (step + 1), index=step)
    print(f"step {step} loss {1.0 / (step + 1):.3f}")
os.makedirs("out", exist_ok=True)
with open("out/table.csv", "w") as f:
    f.write("epoch,loss\\n1,0.5\\n2,0.25\\n")
print("seed", os.environ["SEED"], "data", open("data/rows.txt").read().strip())
print("edited, not committed")
"""


def _who() -> git.Actor:
    return git.Actor("Test", "test@example.com")


def make_repo(root: Path, files: dict[str, str], edits: dict[str, str]) -> git.Repo:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.index.commit("first", author=_who(), committer=_who())
    for name, text in edits.items():
        (root / name).write_text(text)
    return repo


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        return tar.getnames()


def open_run(page, run_id: int) -> None:
    row_status(page, run_id).click()
    page.locator(f"#spell-run-view-{run_id}").wait_for()


def show_tab(page, run_id: int) -> None:
    page.locator(f'.lm-TabBar-tab[data-id="spell-run-view-{run_id}"]').click()


def pane(page, run_id: int, name: str) -> None:
    page.locator(f"#spell-run-view-{run_id} .lm-TabBar-tab", has_text=name).click()


def test_the_run_view_shows_details_logs_outputs_metrics_and_acts(lab_page, home, tmp_path):
    page = lab_page
    client = home.client()
    (tmp_path / "rows.txt").write_text("three rows\n")
    client.resources.upload(tmp_path / "rows.txt", name="data/rows.txt")
    project = tmp_path / "project"
    make_repo(project, {"train.py": "print('committed')\n"}, {"train.py": TRAIN})
    run = client.runs.new(
        command="python train.py",
        cwd=str(project),
        envvars={"SEED": "7"},
        labels=["first"],
        mounts=["uploads/data:data"],
    )
    row_status(page, run.id).get_by_text("complete").wait_for(timeout=60_000)
    open_run(page, run.id)
    view = page.locator(f"#spell-run-view-{run.id}")
    view.get_by_test_id("spell-run-view-status").get_by_text("complete").wait_for()

    logs = view.get_by_test_id("spell-run-logs")
    logs.get_by_text("seed 7 data three rows").wait_for()
    view.get_by_test_id("spell-log-search").fill("loss")
    assert view.get_by_test_id("spell-log-found").inner_text() == "1 of 5"
    view.get_by_test_id("spell-log-search").press("Enter")
    assert view.get_by_test_id("spell-log-found").inner_text() == "2 of 5"
    view.locator(".jp-spell-log-match", has_text="step 1 loss 0.500").wait_for()  # drawn next frame
    href = view.get_by_test_id("spell-log-download").get_attribute("href")
    downloaded = page.request.get(href)
    assert downloaded.ok and "step 4 loss 0.200" in downloaded.text()
    assert "filename" in downloaded.headers["content-disposition"]

    pane(page, run.id, "Details")
    details = view.get_by_test_id("spell-run-details")
    for shown in ("running", "complete", "SEED", "uploads/data", run.commit_hash[:10]):
        assert shown in details.inner_text(), shown
    patch = view.get_by_test_id("spell-run-patch")
    patch.locator(".jp-spell-diff-add", has_text='print("edited, not committed")').wait_for()
    assert patch.locator(".jp-spell-diff-del", has_text="print('committed')").count() == 1

    pane(page, run.id, "Metrics")
    chart = view.locator('figure[data-metric="loss"]')
    chart.wait_for()
    assert "loss: 0.200000 at 4" in chart.inner_text()

    pane(page, run.id, "Outputs")
    outputs = view.get_by_test_id("spell-run-outputs")
    out_row = outputs.locator(f'tr[data-path="runs/{run.id}/out"]')
    tar = page.request.get(out_row.get_by_test_id("spell-download").get_attribute("href"))
    assert "out/table.csv" in tar_names(tar.body())
    out_row.dblclick()
    table_row = outputs.locator(f'tr[data-path="runs/{run.id}/out/table.csv"]')
    table_row.get_by_test_id("spell-copy-path").click()
    outputs.get_by_text(f"Copied runs/{run.id}/out/table.csv").wait_for()
    table_row.dblclick()  # opened by Lab's own CSV viewer, through the SpellFS drive
    page.locator(".lm-TabBar-tab", has_text="table.csv").wait_for()
    page.locator(".jp-CSVViewer").wait_for()

    show_tab(page, run.id)
    view.get_by_test_id("spell-label").click()
    page.locator(".jp-Dialog input").fill("best")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    view.get_by_test_id("spell-run-message").get_by_text("Labelled best").wait_for()
    page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]', has_text="best").wait_for()
    assert sorted(client.runs.get(run.id).labels) == ["best", "first"]

    view.get_by_test_id("spell-rerun").click()
    assert page.get_by_test_id("spell-command").input_value() == "python train.py"
    assert "project at " in page.get_by_test_id("spell-code-note").inner_text()
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    row_status(page, run.id + 1).get_by_text("complete").wait_for(timeout=60_000)
    again = client.runs.get(run.id + 1)
    assert again.commit_hash == run.commit_hash and sorted(again.labels) == ["best", "first"]

    show_tab(page, run.id)  # the rerun's tab opened over it
    view.get_by_test_id("spell-archive").click()
    view.get_by_test_id("spell-run-message").get_by_text("Archived").wait_for()
    page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]').wait_for(state="detached")
    assert page.spell_errors == []


@pytest.mark.lab_env(SPELL_CONCURRENCY_LIMIT="0")  # they wait: 230 runs, none started
def test_the_sidebar_pages_and_filters_thousands_of_runs(lab_page, home):
    page = lab_page
    client = home.client()
    for i in range(230):
        client.runs.new(command=f"echo {i}", labels=["tenth"] if i % 10 == 0 else [])
    sidebar = page.locator("#spell-sidebar")
    shown = sidebar.get_by_test_id("spell-page")
    shown.get_by_text("1–100 of 230").wait_for(timeout=30_000)
    assert sidebar.locator("tbody tr").first.get_attribute("data-run-id") == "230"
    sidebar.get_by_test_id("spell-page-older").click()
    shown.get_by_text("101–200 of 230").wait_for()
    sidebar.get_by_test_id("spell-page-older").click()
    shown.get_by_text("201–230 of 230").wait_for()
    assert sidebar.get_by_test_id("spell-page-older").is_disabled()
    assert sidebar.locator("tbody tr").last.get_attribute("data-run-id") == "1"

    sidebar.get_by_test_id("spell-filter-label").fill("tenth")
    sidebar.get_by_test_id("spell-filter-label").press("Enter")
    shown.get_by_text("1–23 of 23").wait_for()
    client.runs.new(command="echo late", labels=["tenth"])  # comes in live, on page one
    shown.get_by_text("1–24 of 24").wait_for()
    assert sidebar.locator("tbody tr").first.get_attribute("data-run-id") == "231"
    sidebar.get_by_test_id("spell-filter-status").select_option("complete")
    sidebar.get_by_text("No runs match these filters").wait_for()
    sidebar.get_by_test_id("spell-filter-status").select_option("live")
    shown.get_by_text("1–24 of 24").wait_for()
    sidebar.get_by_test_id("spell-filter-kind").select_option("workflow")
    sidebar.get_by_text("No runs match these filters").wait_for()
    assert page.spell_errors == []


def open_spellfs(page):
    tab = page.locator('.lm-TabBar-tab[data-id="spell-files-panel"]')
    tab.click()
    panel = page.get_by_test_id("spell-files")
    panel.wait_for(state="visible")
    return panel


def test_the_spellfs_panel_uploads_resumes_downloads_and_opens(lab_page, home, tmp_path):
    page = lab_page
    client = home.client()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (80 * 1024))  # 20 MiB: three chunks
    (tmp_path / "seed.txt").write_text("the first upload\n")
    client.resources.upload(tmp_path / "seed.txt")
    # an upload cut after its first chunk (as a closed tab leaves it)
    begun = client.transport.json(
        "POST", "uploads", json={"name": "big.bin", "files": [{"path": "", "size": 20 << 20}]}
    )
    client.transport.json(
        "PUT",
        "uploads/chunk",
        params={"name": begun["name"], "path": "", "offset": 0},
        content=big.read_bytes()[: 8 << 20],
    )
    offsets: list[str] = []
    page.on(
        "request",
        lambda r: (
            offsets.extend(parse_qs(urlsplit(r.url).query)["offset"])
            if "uploads/chunk" in r.url
            else None
        ),
    )
    panel = open_spellfs(page)
    panel.locator('tr[data-path="uploads"]').dblclick()
    panel.get_by_test_id("spell-upload-input").set_input_files(str(big))
    panel.get_by_test_id("spell-upload-progress").get_by_text("uploaded (20.0MiB)").wait_for(
        timeout=60_000
    )
    assert offsets == [str(8 << 20), str(16 << 20)]  # resumed where the server stopped

    # a file dropped from the desktop
    page.evaluate(
        """() => {
        const data = new DataTransfer();
        data.items.add(new File(['dropped text\\n'], 'dropped.txt', {type: 'text/plain'}));
        const panel = document.querySelector('[data-testid=spell-files]');
        panel.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
    }"""
    )
    row = panel.locator('tr[data-path="uploads/dropped.txt"]')
    row.wait_for(timeout=30_000)
    # a file dragged from Lab's own file browser
    (tmp_path / "from-lab.csv").write_text("a,b\n1,2\n")
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    item = page.locator(".jp-DirListing-item", has_text="from-lab.csv")
    item.wait_for()
    box = item.bounding_box()
    target = panel.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(target["x"] + 60, target["y"] + 120, steps=10)
    page.mouse.up()
    panel.locator('tr[data-path="uploads/from-lab.csv"]').wait_for(timeout=30_000)
    assert client.resources.ls("uploads/from-lab.csv")  # on the server

    href = row.get_by_test_id("spell-download").get_attribute("href")
    assert page.request.get(href).text() == "dropped text\n"
    big_href = panel.locator('tr[data-path="uploads/big.bin"] [data-testid=spell-download]')
    assert page.request.get(big_href.get_attribute("href")).body() == big.read_bytes()
    panel.locator(".jp-spell-crumbs a", has_text="SpellFS").click()
    uploads = panel.locator('tr[data-path="uploads"] [data-testid=spell-download]')
    folder = page.request.get(uploads.get_attribute("href"))
    assert "uploads/dropped.txt" in tar_names(folder.body())
    panel.locator('tr[data-path="uploads"]').dblclick()
    row.dblclick()  # Lab's editor, through the SpellFS drive
    page.locator(".lm-TabBar-tab", has_text="dropped.txt").wait_for()
    page.locator(".jp-FileEditor .cm-content", has_text="dropped text").wait_for()
    assert page.spell_errors == []


def test_run_on_spell_from_the_file_browser_and_a_notebook(lab_page, home, tmp_path):
    page = lab_page
    make_repo(tmp_path / "project", {"train.py": "print('trained here')\n"}, {})
    write_notebook(tmp_path / "analysis.ipynb", "print('notebook says', 6 * 7)", kernel=False)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator(".jp-DirListing-item", has_text="project").dblclick()
    script = page.locator(".jp-DirListing-item", has_text="train.py")
    script.click(button="right")
    page.locator(".lm-Menu-item", has_text="Run on Spell").click()
    assert page.get_by_test_id("spell-command").input_value() == "python train.py"
    assert "project at " in page.get_by_test_id("spell-code-note").inner_text()
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    view = page.locator("#spell-run-view-1")
    view.get_by_test_id("spell-run-logs").get_by_text("trained here").wait_for(timeout=60_000)
    view.get_by_test_id("spell-run-view-status").get_by_text("complete").wait_for(timeout=60_000)

    page.locator(".jp-BreadCrumbs-home").click()
    notebook = page.locator(".jp-DirListing-item", has_text="analysis.ipynb")
    notebook.click(button="right")
    page.locator(".lm-Menu-item", has_text="Run on Spell").click()
    command = page.get_by_test_id("spell-command")
    assert command.input_value().endswith("spell_jupyter.notebook.execute analysis.ipynb")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    view = page.locator("#spell-run-view-2")
    view.get_by_test_id("spell-run-view-status").get_by_text("complete").wait_for(timeout=120_000)
    view.locator(".lm-TabBar-tab", has_text="Outputs").click()
    executed = view.locator('tr[data-path="runs/2/analysis.executed.ipynb"]')
    executed.dblclick()  # the executed notebook, opened by Lab from SpellFS
    page.locator(".jp-OutputArea-output", has_text="notebook says 42").wait_for()
    # with Spell's kernel specs beside python3, Lab asks which kernel: none, to read it
    page.locator(".jp-Dialog-button", has_text="No Kernel").click()

    notebook.dblclick()  # and from the notebook's own toolbar
    page.locator(".jp-Dialog-button", has_text="No Kernel").click()  # it runs on Spell
    page.get_by_test_id("spell-notebook-run").click()
    assert command.input_value().endswith("spell_jupyter.notebook.execute analysis.ipynb")
    page.locator(".jp-Dialog-button.jp-mod-reject").click()
    assert page.spell_errors == []


def test_a_run_of_100000_lines_keeps_the_tab_responsive(lab_page, home):
    page = lab_page
    run = home.client().runs.new(command="seq 1 100000")
    row_status(page, run.id).get_by_text("complete").wait_for(timeout=120_000)
    open_run(page, run.id)
    view = page.locator(f"#spell-run-view-{run.id}")
    logs = view.get_by_test_id("spell-run-logs")
    logs.get_by_text("100000", exact=True).wait_for(timeout=60_000)  # followed to the end
    assert logs.locator(".jp-spell-log-line").count() < 300  # only what is in sight
    view.get_by_test_id("spell-log-search").fill("77777")
    assert view.get_by_test_id("spell-log-found").inner_text() == "1 of 1"
    logs.locator(".jp-spell-log-match", has_text="77777").wait_for()
    logs.evaluate("node => { node.scrollTop = 0; }")
    logs.get_by_text("1", exact=True).wait_for()
    assert not view.get_by_test_id("spell-follow").is_checked()
    assert page.spell_errors == []


def test_dark_theme_and_the_keyboard(lab_page, home):
    page = lab_page
    run = home.client().runs.new(command="echo in the dark")
    row_status(page, run.id).get_by_text("complete").wait_for(timeout=60_000)
    themes = f"{page.spell_lab.url}lab/api/settings/@jupyterlab/apputils-extension:themes"
    chosen = page.request.put(
        themes,
        headers={"Authorization": f"token {LAB_TOKEN}"},
        data=json.dumps({"raw": json.dumps({"theme": "JupyterLab Dark"})}),
    )
    assert chosen.ok, chosen.text()
    page.reload()  # as a user who chose the dark theme finds the Lab
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="spell-sidebar"]')
    if page.locator("#spell-sidebar").is_hidden():
        tab.click()
    row = page.locator(f'#spell-sidebar tr[data-run-id="{run.id}"]')
    row.focus()
    page.keyboard.press("Enter")
    view = page.locator(f"#spell-run-view-{run.id}")
    view.get_by_test_id("spell-run-logs").get_by_text("in the dark").wait_for()
    background = page.evaluate(
        "getComputedStyle(document.querySelector('#spell-sidebar')).backgroundColor"
    )
    assert background != "rgb(255, 255, 255)"  # the theme's colours, not a white panel
    assert page.spell_errors == []
