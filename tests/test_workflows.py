"""Workflows as Spell users ran them: `spell workflow --repo ... "python pipeline.py"`, whose
master script starts, follows, waits on, kills, labels and chains worker runs."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import SPELL_ARGV
from helpers import configured_server, wait_for_line

from spell_jupyter.client.errors import APIError, InvalidArgument

PIPELINE = """
import spell.client

client = spell.client.from_environment()
print("workflow:", client.active_workflow)

r1 = client.runs.new(command="echo hello from run 1 > foo.txt")
r1.wait_status(*client.runs.FINAL)
r2 = client.runs.new(
    command="cat foo.txt", attached_resources={f"runs/{r1.id}/foo.txt": "foo.txt"}
)
for entry in r2.logs(follow=True):
    if not entry.status_event:
        print("run 2 says:", entry)
r3 = client.runs.new(command="python3 send_loss.py", commit_label="model")
r3.wait_metric("loss", client.runs.LESS_THAN, 10)
r3.kill()
r3.add_label("converged")
print("loss below 10 in run", r3.id)
parallel = [client.runs.new(command=f"echo part {i}") for i in range(3)]
for run in parallel:
    run.wait_status(*client.runs.FINAL)
print("finished:", sorted(r.status for r in parallel))
"""

SEND_LOSS = """
import time
from spell.metrics import send_metric

for step in range(3000):
    send_metric("loss", 100.0 / (step + 1))
    time.sleep(0.01)
"""


def git_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    for name, text in files.items():
        (path / name).write_text(textwrap.dedent(text))
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "code"],
        cwd=path,
        check=True,
    )
    return path


@pytest.fixture
def projects(tmp_path):
    pipe = git_repo(tmp_path / "pipe", {"pipeline.py": PIPELINE})
    model = git_repo(tmp_path / "model", {"send_loss.py": SEND_LOSS})
    return pipe, model


def test_the_pipeline_of_the_workflow_documents_runs_unchanged(any_backend, projects):
    home = any_backend
    pipe, _ = projects
    result = home.spell("workflow", "--repo", "model=../model", "python3 pipeline.py", cwd=pipe)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    master_id = int(out.split("Workflow ")[1].split(":")[0])
    assert f"workflow: Workflow {master_id} (running): python3 pipeline.py" in out
    assert "run 2 says: hello from run 1" in out
    assert "finished: ['complete', 'complete', 'complete']" in out
    client = home.client()
    flow = client.workflows.get(master_id)
    workers = flow.runs
    assert [r.command for r in workers][:3] == [
        "echo hello from run 1 > foo.txt",
        "cat foo.txt",
        "python3 send_loss.py",
    ]
    assert len(workers) == 6 and all(r.workflow_id == master_id for r in workers)
    sender = workers[2]
    assert sender.status == "killed" and sender.labels == ["converged"]
    assert sender.repository == "model"  # the --repo snapshot, by its label
    assert any(v < 10 for _, _, v in sender.metrics("loss"))
    shown = home.spell("workflow", "show", str(master_id)).stdout
    assert all(f"run {r.id}" in shown for r in workers)
    ps = home.spell("ps").stdout.splitlines()
    row = next(line for line in ps if line.startswith(f"{sender.id} "))
    assert row.rstrip().endswith(str(master_id))
    assert client.active_workflow is None  # outside a workflow's master


def test_stop_of_a_workflow_stops_its_master_and_active_workers(served, tmp_path):
    pipe = git_repo(
        tmp_path / "flow",
        {
            "master.py": """
                import spell.client
                client = spell.client.from_environment()
                worker = client.runs.new(command="echo worker up; sleep 120")
                print("worker", worker.id, flush=True)
                worker.wait_status(*client.runs.FINAL)
            """
        },
    )
    client = served.client()
    flow = client.workflows.new("python3 master.py", cwd=str(pipe))
    line = wait_for_line(flow.master_run, "worker ")
    worker = client.runs.get(int(line.split()[1]))
    wait_for_line(worker, "worker up")
    result = served.spell("workflow", "stop", str(flow.id))
    assert result.returncode == 0, result.stderr
    flow.master_run.wait_status(*client.runs.FINAL)
    worker.wait_status("stopped")
    assert flow.master_run.status in ("stopped", "failed")


ROOMY = {"host_capacity": {"cpus": 8, "memory": "32GiB"}}  # several CPU runs at once


def test_a_workflow_token_dies_with_its_master(serve, tmp_path):
    pipe = git_repo(
        tmp_path / "flow",
        {
            "master.py": """
                import os
                open("token.txt", "w").write(os.environ["SPELL_TOKEN"])
                print("ready", flush=True)
                import time
                time.sleep(120)
            """
        },
    )
    from test_metrics import as_run

    served = serve()
    client = served.client()
    flow = client.workflows.new("python3 master.py", cwd=str(pipe))
    wait_for_line(flow.master_run, "ready")
    flow.stop()
    flow.master_run.wait_status("stopped")
    client.resources.cp(f"runs/{flow.id}/token.txt", str(tmp_path / "token"))
    token = (tmp_path / "token" / "token.txt").read_text()
    assert token.startswith(f"spellrun-{flow.id}-")
    with pytest.raises(APIError) as dead:
        as_run(served, token).json("GET", f"runs/{flow.id}")
    assert dead.value.status_code == 403


def test_a_live_workflow_token_cannot_see_other_runs(serve, tmp_path):
    from test_metrics import as_run, run_token

    served = configured_server(serve, tmp_path, **ROOMY)
    client = served.client()
    outsider = client.runs.new(command="echo ready; sleep 120")
    other_flow = client.workflows.new("echo ready; sleep 120")
    flow = client.workflows.new("echo ready; sleep 120")
    try:
        for run in (outsider, other_flow.master_run, flow.master_run):
            wait_for_line(run, "ready")
        api = as_run(served, run_token(served, flow.id, "workflow"))
        worker = api.json("POST", "runs", json={"command": "echo hi"})
        assert worker["workflow_id"] == flow.id
        listed = api.json("GET", "runs")["runs"]
        assert {r["id"] for r in listed} == {flow.id, worker["id"]}
        for run_id in (outsider.id, other_flow.id):
            for method, path in [
                ("GET", f"runs/{run_id}"),
                ("POST", f"runs/{run_id}/kill"),
                ("GET", f"runs/{run_id}/logs"),
            ]:
                with pytest.raises(APIError) as hidden:
                    api.json(method, path)
                assert hidden.value.status_code == 404, (method, path)
        with pytest.raises(APIError) as nested:
            api.json("POST", "runs", json={"command": "x", "kind": "workflow"})
        assert nested.value.status_code == 400
        with pytest.raises(APIError) as label:
            api.json("POST", "runs", json={"command": "x", "commit_label": "nope"})
        assert label.value.status_code == 400 and "no repository labelled 'nope'" in str(
            label.value
        )
    finally:
        flow.kill()
        outsider.kill()
        other_flow.kill()


def test_commit_label_outside_a_workflow_is_refused(served):
    client = served.client()
    before = client.transport.json("GET", "runs")["total"]
    with pytest.raises(APIError) as refused:
        client.runs.new(command="true", commit_label="model")
    assert refused.value.status_code == 400 and "workflow" in str(refused.value)
    assert client.transport.json("GET", "runs")["total"] == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "model=../nowhere"], "is not a folder"),
        (["--repo", "model=../model", "--repo", "model=../model"], "given twice"),
        (["--repo", "model"], "LABEL=PATH"),
        (["--repo", "bad label=../model"], "invalid repository label"),
    ],
)
def test_bad_repos_create_no_workflow(served, projects, args, message):
    pipe, _ = projects
    client = served.client()
    before = client.transport.json("GET", "runs")["total"]
    result = served.spell("workflow", *args, "python3 pipeline.py", cwd=pipe)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert client.transport.json("GET", "runs")["total"] == before


def test_workflows_new_refuses_a_path_outside_git(served, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidArgument, match="not in a git repository"):
        served.client().workflows.new("true", repos={"x": str(tmp_path / "plain")})


def test_a_master_reads_spellfs_and_uploads(served, tmp_path):
    pipe = git_repo(
        tmp_path / "flow",
        {
            "master.py": """
                import os
                import spell.client

                client = spell.client.from_environment()
                os.makedirs("data", exist_ok=True)
                with open("data/a.txt", "w") as f:
                    f.write("A")
                client.resources.upload("data", name="from-master")
                worker = client.runs.new(command="echo hi > w.txt")
                worker.wait_status(*client.runs.FINAL)
                client.resources.cp(f"runs/{worker.id}/w.txt", "got", quiet=True)
                print("got", open("got/w.txt").read().strip())
                print("uploads", [line.path for line in client.resources.ls("uploads")])
            """
        },
    )
    client = served.client()
    flow = client.workflows.new("python3 master.py", cwd=str(pipe))
    flow.master_run.wait_status("complete", timeout=120)
    lines = [e.text for e in flow.master_run.logs() if not e.status_event]
    assert "got hi" in lines
    assert "uploads ['uploads/from-master']" in lines
    assert [e["name"] for e in client.resources.ls("uploads/from-master")] == ["a.txt"]


def test_a_local_master_runs_here_and_its_workers_are_runs(served, projects):
    pipe, _ = projects
    result = served.spell(
        "workflow", "--local", "--repo", "model=../model", "python3 pipeline.py", cwd=pipe
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run 2 says: hello from run 1" in result.stdout  # printed here, not in a run
    assert "finished: ['complete', 'complete', 'complete']" in result.stdout
    client = served.client()
    flow = client.workflows.list()[0]
    assert flow.status == "complete" and flow.master_run.raw["spec"]["local"] is True
    assert len(flow.runs) == 6 and flow.runs[2].labels == ["converged"]


def test_stop_of_a_local_workflow_stops_its_script(served, tmp_path):
    pipe = git_repo(
        tmp_path / "flow",
        {"master.py": "import time\nprint('ready', flush=True)\ntime.sleep(120)\n"},
    )
    master = subprocess.Popen(
        [*SPELL_ARGV, "workflow", "--local", "python3 master.py"],
        cwd=pipe,
        env=served.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in master.stdout:
        if line.startswith("ready"):
            break
    flow = served.client().workflows.list()[0]
    assert served.spell("workflow", "stop", str(flow.id)).returncode == 0
    assert master.wait(timeout=60) == 128 + 15  # SIGTERM, at the next report
    flow.refresh()
    assert flow.status == "stopped"


def test_local_belongs_to_workflows_alone(served):
    client = served.client()
    with pytest.raises(APIError) as refused:
        client.transport.json("POST", "runs", json={"command": "true", "local": True})
    assert refused.value.status_code == 400 and "spell workflow --local" in str(refused.value)
    result = served.spell("workflow", "--local", "-b", "true")
    assert result.returncode == 2 and "cannot go to the background" in result.stderr


def test_a_github_repo_is_cloned_for_the_workers_that_name_it(served, projects, tmp_path):
    _, model = projects
    flow_dir = git_repo(
        tmp_path / "flow",
        {
            "master.py": """
                import spell.client
                from spell_jupyter.metrics import send_metric
                client = spell.client.from_environment()
                worker = client.runs.new(command="ls", commit_label="model")
                worker.wait_status(*client.runs.FINAL)
                send_metric("workers", 1)
                print("worker saw", [e.log for e in worker.logs() if not e.status_event])
            """
        },
    )
    result = served.spell(
        "workflow", "--github-repo", f"model=file://{model}", "python3 master.py", cwd=flow_dir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker saw ['send_loss.py']" in result.stdout
