"""Workspaces: JupyterLab in a run, reached through the host server's proxy (HTTP and kernel
websockets), stopped and resumed with its files, idle-stopped, and what bad input and faults
get. Real servers, real Jupyter in the run, on both backends where it matters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from helpers import handle_of, kernel_execute

from spell_jupyter.client.errors import APIError

pytestmark = pytest.mark.timeout(600)


# -- helpers ----------------------------------------------------------------------------------


def proxied(home, path: str, method: str = "GET", body: dict | None = None, token: bool = True):
    """(status, body text) of `<server>/spell/workspaces/<path>` with the host's token."""
    info = home.server_info()
    headers = {"Authorization": f"token {info['token']}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"{info['url']}spell/workspaces/{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start(home, name: str, *flags: str) -> str:
    result = home.spell("jupyter", name, "--no-browser", "-f", *flags, timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Workspace {name} is ready" in result.stdout
    return result.stdout


def execute_over_websocket(home, name: str, kernel_id: str, code: str) -> str:
    """Run `code` in a kernel of the workspace through the proxied kernel websocket; its
    execute_result as text."""
    info = home.server_info()
    url = info["url"].replace("http://", "ws://")
    channels = f"{url}spell/workspaces/{name}/api/kernels/{kernel_id}/channels"
    found = kernel_execute(channels, info["token"], code)
    assert "error" not in found, found
    return found["result"]


def saved(home, run_id: int, name: str) -> str:
    """A file of a run's outputs, as SpellFS holds it (the local root of the data directory)."""
    return (home.path / "fs" / "runs" / str(run_id) / name).read_text()


def workspace_run(home, name: str):
    return home.client().workspaces.get(name).run


# -- the way in, the files kept, on both backends ----------------------------------------------


def test_a_workspace_is_reached_through_the_host_and_resumes_with_its_files(any_backend):
    home = any_backend
    out = start(home, "ws1")
    assert "/spell/workspaces/ws1/lab?token=" in out

    status, text = proxied(home, "ws1/api/status")
    assert status == 200 and "last_activity" in json.loads(text)
    # the page served to browsers never holds the workspace's own token
    page_status, page = proxied(home, "ws1/lab")
    assert page_status == 200 and "jupyter-config-data" in page
    run = workspace_run(home, "ws1")
    from spell_jupyter.engine.service_tokens import ServiceTokens
    from spell_jupyter.store import RunStore, connect_database
    from spell_jupyter.store.database import default_db_url

    store = RunStore(connect_database(default_db_url(home.path)))
    assert ServiceTokens(store, home.path).token(run.id) not in page

    # a kernel started there runs 1+1 over the proxied websocket
    status, text = proxied(home, "ws1/api/kernels", "POST", {"name": "python3"})
    assert status == 201, text
    kernel = json.loads(text)["id"]
    assert execute_over_websocket(home, "ws1", kernel, "1+1") == "2"
    where = execute_over_websocket(home, "ws1", kernel, "import os; os.getcwd()")
    assert "/1" in where or "/spell" in where  # the run's working folder

    # a file made in it, the workspace stopped, started again: the file is back
    note = {"type": "file", "format": "text", "content": "kept across stops\n"}
    status, _ = proxied(home, "ws1/api/contents/notes.txt", "PUT", note)
    assert status in (200, 201)
    stopped = home.spell("workspaces", "stop", "ws1")
    assert stopped.returncode == 0, stopped.stderr
    client = home.client()
    client.runs.get(run.id).wait_status(*client.runs.FINAL, timeout=120)
    assert client.runs.get(run.id).status == client.runs.STOPPED
    status, page = proxied(home, "ws1/api/status")
    assert status == 502 and "is not running" in page and "spell jupyter ws1" in page

    out = start(home, "ws1")
    assert f"resuming the files of run {run.id}" in out
    status, text = proxied(home, "ws1/api/contents/notes.txt")
    assert status == 200 and json.loads(text)["content"] == "kept across stops\n"

    # workspaces are runs: in `spell ps -a`, not in `spell ps`; listed by `spell workspaces ls`
    assert "jupyter-lab" in home.spell("ps", "-a").stdout
    assert "jupyter-lab" not in home.spell("ps").stdout
    listing = home.spell("workspaces", "ls").stdout
    assert "ws1" in listing and "Running" in listing and "/spell/workspaces/ws1/" in listing


def test_without_the_hosts_authentication_nothing_is_proxied(served):
    home = served
    start(home, "ws2")
    status, page = proxied(home, "ws2/api/status", token=False)
    assert status == 403 and "last_activity" not in page
    status, page = proxied(home, "ws2/api/kernels", "POST", {"name": "python3"}, token=False)
    assert status == 403
    info = home.server_info()
    request = urllib.request.Request(
        f"{info['url']}spell/workspaces/ws2/api/status",
        headers={"Authorization": "token wrong-token"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    # the token the workspace takes is not the host's: the workspace refuses the host's own
    upstream = handle_of(home, workspace_run(home, "ws2").id)["address"]
    direct = urllib.request.Request(
        f"http://{upstream}/spell/workspaces/ws2/api/status",
        headers={"Authorization": f"token {info['token']}"},
    )
    with pytest.raises(urllib.error.HTTPError) as direct_refused:
        urllib.request.urlopen(direct, timeout=30)
    assert direct_refused.value.code == 403


def test_bad_workspace_requests_are_refused_and_make_nothing(served):
    home = served
    client = home.client()
    transport = client.transport

    def refused(method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        with pytest.raises(APIError) as error:
            transport.json(method, path, json=body)
        return error.value.status_code, str(error.value)

    for name in ("a/b", "has space", "..", "", "-x", "é"):
        code, message = refused("POST", "workspaces", {"name": name})
        assert code == 400 and "workspace name" in message, (name, message)
    code, message = refused("POST", "workspaces", {"name": "w", "spec": {"machine_type": "nope"}})
    assert code == 400 and "nope" in message
    code, message = refused("POST", "workspaces", {"name": "w", "spec": {"machine_type": "V100"}})
    assert code == 400 and "GPU" in message
    code, message = refused("POST", "workspaces", {"name": "w", "spec": {"command": "sh"}})
    assert code == 400 and "command" in message
    code, message = refused("POST", "workspaces", {"name": "w", "idle_timeout_minutes": -1})
    assert code == 400
    code, message = refused(
        "POST", "runs", {"command": "true", "kind": "workspace", "workspace": {"name": "w"}}
    )
    assert code == 400 and "POST /workspaces" in message
    assert client.runs.list(kinds=["workspace"]) == []  # nothing was made

    for method, path in (("GET", "workspaces/none"), ("POST", "workspaces/none/stop")):
        code, message = refused(method, path)
        assert code == 404 and "spell jupyter none" in message
    status, page = proxied(home, "none/lab")
    assert status == 404 and "no workspace is named" in page

    cli = home.spell("jupyter", "bad name", "--no-browser", "-f")
    assert cli.returncode != 0 and "invalid workspace name" in cli.stderr
    assert "Traceback" not in cli.stderr

    # one running: a second start says so and gives its URL; it cannot be removed
    start(home, "w")
    again = home.spell("jupyter", "w", "--no-browser", "-f")
    assert again.returncode == 1
    assert "running already" in again.stderr and "/spell/workspaces/w/" in again.stderr
    code, message = refused("DELETE", "workspaces/w")
    assert code == 409 and "stop it first" in message
    assert len(client.runs.list(kinds=["workspace"])) == 1

    # stopped, it is removed: its runs archived, the name starts afresh with no files
    home.spell("workspaces", "stop", "w")
    run = client.workspaces.get("w").run
    run.wait_status(*client.runs.FINAL, timeout=120)
    removed = home.spell("workspaces", "rm", "w")
    assert removed.returncode == 0 and f"archived its run {run.id}" in removed.stdout
    assert home.spell("workspaces", "ls").stdout.startswith("No workspaces yet")


def test_an_idle_workspace_is_stopped_with_its_files_saved(serve):
    home = serve(SPELL_IDLE_CHECK_INTERVAL="0.5")
    start(home, "idle", "--idle-timeout", "0.05")  # 3 seconds
    note = {"type": "file", "format": "text", "content": "saved when idle\n"}
    assert proxied(home, "idle/api/contents/idle.txt", "PUT", note)[0] in (200, 201)
    client = home.client()
    run = workspace_run(home, "idle")
    run.wait_status(*client.runs.FINAL, timeout=120)
    assert run.status == client.runs.STOPPED
    assert any("Idle for 0.05 minutes" in e.text for e in run.logs() if e.status_event)
    assert saved(home, run.id, "idle.txt") == "saved when idle\n"


def test_a_workspace_survives_a_restart_of_the_host_server(served):
    home = served
    start(home, "ws3")
    home.spell("server", "stop")
    home.start_server()
    status, text = proxied(home, "ws3/api/status")
    assert status == 200, text


@pytest.mark.docker
def test_a_workspace_whose_container_is_killed_ends_interrupted_with_its_files(docker_served):
    import docker

    home = docker_served
    start(home, "dk")
    note = {"type": "file", "format": "text", "content": "written before the kill\n"}
    assert proxied(home, "dk/api/contents/kept.txt", "PUT", note)[0] in (200, 201)
    run = workspace_run(home, "dk")
    docker.from_env().containers.get(handle_of(home, run.id)["container"]).kill()
    client = home.client()
    run.wait_status(*client.runs.FINAL, timeout=120)
    assert run.status == client.runs.INTERRUPTED
    status, page = proxied(home, "dk/api/status")
    assert status == 502 and "interrupted" in page
    assert saved(home, run.id, "kept.txt") == "written before the kill\n"


@pytest.mark.docker
def test_jupyterlab_of_a_workspace_runs_a_notebook_in_its_container_from_a_browser(
    docker_served, browser
):
    """The user's path: the proxied JupyterLab in Chromium, a notebook on the workspace's
    kernel (the container's hostname), with no failed request and no console error."""
    import socket

    home = docker_served
    start(home, "ui")
    info = home.server_info()
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.goto(f"{info['url']}spell/workspaces/ui/lab?token={info['token']}")
    page.locator('.jp-LauncherCard[title*="Python 3"]').first.click(timeout=60_000)
    # the kernel (in the container) has started and the notebook is connected to it
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    editor = page.locator(".jp-Cell .cm-content").first
    editor.fill("import socket; 40 + 2, socket.gethostname()")
    editor.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    try:
        output.wait_for(timeout=60_000)
    finally:
        page.screenshot(path=str(home.path.parent / "workspace-lab.png"))
    text = output.inner_text()
    assert "42" in text and socket.gethostname() not in text
    assert problems == []
