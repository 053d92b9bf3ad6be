"""Remote kernels: a notebook's kernel spec "Python 3 (Spell · CPU)" starts its kernel as a run
(a container on Docker), driven through the host Jupyter server's own kernel API: the code runs
in the container, in the notebook's folder of the host; interrupt, restart and shutdown work."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import docker
import pytest
from conftest import docker_env, make_home
from helpers import LAB_TOKEN, Lab, handle_of, kernel_execute

pytestmark = pytest.mark.timeout(600)


def api(lab: Lab, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(
        f"{lab.url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {LAB_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def channels(lab: Lab, kernel_id: str) -> str:
    return f"{lab.url.replace('http://', 'ws://')}api/kernels/{kernel_id}/channels"


@pytest.fixture
def docker_lab(tmp_path):
    home = make_home(tmp_path, **docker_env())
    lab = Lab(home)
    yield home, lab
    lab.stop()


@pytest.mark.docker
def test_a_spell_kernel_runs_in_a_container_in_the_notebooks_folder(docker_lab, tmp_path):
    home, lab = docker_lab
    status, specs = api(lab, "GET", "api/kernelspecs")
    assert specs["kernelspecs"]["spell-cpu"]["spec"]["display_name"] == "Python 3 (Spell · CPU)"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "data.txt").write_text("from the host\n")
    status, session = api(
        lab,
        "POST",
        "api/sessions",
        {"path": "project/nb.ipynb", "type": "notebook", "kernel": {"name": "spell-cpu"}},
    )
    assert status == 201, session
    kernel = session["kernel"]["id"]
    client = home.client()
    (run,) = client.runs.list(kinds=["kernel"])
    assert run.status == client.runs.RUNNING

    found = kernel_execute(
        channels(lab, kernel),
        LAB_TOKEN,
        "import os, socket\n"
        "open('written.txt', 'w').write('from the kernel')\n"
        "(os.path.exists('/.dockerenv'), socket.gethostname(), open('data.txt').read())",
    )
    in_container, hostname, data = eval(found["result"])
    assert in_container and hostname != socket.gethostname()
    assert data == "from the host\n"
    assert (folder / "written.txt").read_text() == "from the kernel"

    # interrupt stops a long cell at once
    start = time.monotonic()

    def interrupt_soon() -> None:
        time.sleep(2)
        api(lab, "POST", f"api/kernels/{kernel}/interrupt")

    threading.Thread(target=interrupt_soon, daemon=True).start()
    found = kernel_execute(channels(lab, kernel), LAB_TOKEN, "import time; time.sleep(100)")
    assert found.get("error") == "KeyboardInterrupt"
    assert time.monotonic() - start < 60

    # restart: a fresh kernel (a new run), state gone
    kernel_execute(channels(lab, kernel), LAB_TOKEN, "remembered = 1")
    status, _ = api(lab, "POST", f"api/kernels/{kernel}/restart")
    assert status == 200
    found = kernel_execute(channels(lab, kernel), LAB_TOKEN, "'remembered' in globals()")
    assert found["result"] == "False"
    runs = client.runs.list(kinds=["kernel"])
    assert len(runs) == 2 and runs[1].id == run.id
    run.wait_status(*client.runs.FINAL, timeout=60)  # the first kernel's run has ended

    # shutdown: the kernel's run ends and its container is gone
    status, _ = api(lab, "DELETE", f"api/sessions/{session['id']}")
    assert status == 204
    for each in client.runs.list(kinds=["kernel"]):
        each.wait_status(*client.runs.FINAL, timeout=120)
    engine = docker.from_env()
    for each in runs:  # removed before the run was made final
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(handle_of(home, each.id)["container"])
    assert "python3 -m spell_jupyter.kernel_launcher" in home.spell("ps", "-a").stdout


def test_a_kernel_spec_naming_an_unknown_machine_type_fails_with_that_reason(tmp_path):
    home = make_home(tmp_path)
    lab = Lab(home)
    try:
        from unittest import mock

        from spell_jupyter.kernels.specs import install

        env = {"JUPYTER_DATA_DIR": home.env["JUPYTER_DATA_DIR"]}
        with mock.patch.dict(os.environ, env):
            install("nope", {"machine_type": "NOPE"})
        status, body = api(lab, "POST", "api/kernels", {"name": "spell-nope"})
        assert status == 400 and "unknown machine type 'nope'" in str(body).lower(), body
        # a notebook's `spell` metadata is taken over its kernel spec's options
        notebook = {"cells": [], "metadata": {"spell": {"machine_type": "NOPE2"}}}
        notebook.update(nbformat=4, nbformat_minor=5)
        (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
        session = {"path": "nb.ipynb", "type": "notebook", "kernel": {"name": "spell-cpu"}}
        status, body = api(lab, "POST", "api/sessions", session)
        assert status >= 400 and "unknown machine type 'nope2'" in str(body).lower(), body
        assert home.client().runs.list(kinds=["kernel"]) == []
    finally:
        lab.stop()


def test_spell_kernelspec_add_ls_rm(tmp_path):
    home = make_home(tmp_path)
    added = home.spell(
        "kernelspec", "add", "t4-torch", "-t", "T4", "--pip", "torch", "-m", "uploads/data"
    )
    assert added.returncode == 0, added.stderr
    spec = json.loads(
        (tmp_path / "jupyter-data" / "kernels" / "spell-t4-torch" / "kernel.json").read_text()
    )
    assert spec["display_name"] == "Python 3 (Spell · T4)"
    provisioner = spec["metadata"]["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "spell-provisioner"
    assert provisioner["config"]["options"]["pip_packages"] == ["torch"]
    assert provisioner["config"]["options"]["mounts"] == [{"resource": "uploads/data", "path": ""}]
    listed = home.spell("kernelspec", "ls").stdout
    assert "spell-t4-torch" in listed and "Python 3 (Spell · T4)" in listed
    bad = home.spell("kernelspec", "add", "bad", "--pip", "six;rm -rf /")
    assert bad.returncode == 1 and "invalid pip package" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert home.spell("kernelspec", "rm", "t4-torch").returncode == 0
    gone = home.spell("kernelspec", "rm", "t4-torch")
    assert gone.returncode == 1 and "no kernel spec spell-t4-torch" in gone.stderr
