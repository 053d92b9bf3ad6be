"""Environments as generated build contexts: what goes in, what the tag depends on, Spell's
precedence of package sources, and what the client reads from the submitter's Python."""

from __future__ import annotations

import pytest

from spell_jupyter.client.environment import top_level_packages
from spell_jupyter.engine.environments import (
    DEFAULT_FRAMEWORKS,
    Frameworks,
    environment_for,
    merged_requirements,
)
from spell_jupyter.errors import InvalidInput
from spell_jupyter.models import RunSpec

FRAMEWORKS = Frameworks({**DEFAULT_FRAMEWORKS, "default": "site/base:1"})


def env(**spec):
    return environment_for(RunSpec(command="true", **spec), FRAMEWORKS, [])


def test_nothing_to_add_runs_the_framework_image_itself():
    assert env().image == "site/base:1" and env().context is None
    assert env(docker_image="ubuntu:22.04").image == "ubuntu:22.04"
    assert env(framework="PyTorch").image == DEFAULT_FRAMEWORKS["pytorch"]["image"]


def test_user_input_travels_in_files_never_in_run_lines():
    built = env(apt_packages=["jq"], pip_packages=["six==1.17.0"], conda_env="name: x\n")
    context = built.context
    assert context.files["apt.txt"] == b"jq\n"
    assert context.files["requirements.txt"] == b"six==1.17.0\n"
    assert context.files["environment.yml"] == b"name: x\n"
    run_lines = [line for line in context.dockerfile.splitlines() if "jq" in line or "six" in line]
    assert run_lines == []
    assert built.image.startswith("spell-env:")


def test_the_tag_follows_the_content_and_only_the_content():
    assert env(pip_packages=["six"]).image == env(pip_packages=["six"]).image
    assert env(apt_packages=["jq", "tree"]).image == env(apt_packages=["tree", "jq"]).image
    assert env(pip_packages=["six"]).image != env(pip_packages=["six==1.16.0"]).image
    assert env(pip_packages=["six"]).image != env(pip_packages=["six"], framework="pytorch").image


def test_ca_certificates_are_installed_when_configured(tmp_path):
    pem = tmp_path / "proxy.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    built = environment_for(RunSpec(command="true"), FRAMEWORKS, [pem])
    assert built.context.files["ca-certificates/proxy.crt"] == pem.read_bytes()
    assert "update-ca-certificates" in built.context.dockerfile


def test_precedence_is_env_then_requirements_then_pip():
    spec = RunSpec(
        command="true",
        pip_from_env=["six==1.10.0", "torch==2.0.0", "requests==2.0.0", "pip==24.0", "Tqdm==4.0"],
        requirements="# pinned\nsix==1.16.0\n--extra-index-url https://example/simple\n"
        "tqdm>=4.60  # progress\n",
        pip_packages=["six==1.17.0"],
    )
    merged = merged_requirements(spec, FRAMEWORKS.get("pytorch"))
    assert merged == [
        "--extra-index-url https://example/simple",
        "requests==2.0.0",
        "tqdm>=4.60",
        "six==1.17.0",
    ]  # torch is the framework's own, pip is tooling


def test_notebook_runs_get_what_executes_notebooks_unless_the_framework_has_it():
    notebook = RunSpec(command="python -m spell_jupyter.notebook.execute nb.ipynb -p n 3")
    assert merged_requirements(notebook, FRAMEWORKS.get("default")) == [
        "ipykernel",
        "nbclient",
        "nbconvert",
    ]
    needed = ["ipykernel", "nbclient", "nbconvert"]
    provided = Frameworks({"base": {"image": "b", "packages": needed}})
    assert merged_requirements(notebook, provided.get("base")) == []
    pinned = notebook.model_copy(update={"pip_packages": ["nbclient==0.10.2"]})
    assert merged_requirements(pinned, FRAMEWORKS.get("default")) == [
        "ipykernel",
        "nbconvert",
        "nbclient==0.10.2",
    ]
    assert merged_requirements(RunSpec(command="python nb.py"), FRAMEWORKS.get("default")) == []


def test_unknown_framework_lists_the_known_ones():
    with pytest.raises(InvalidInput, match="known frameworks: default, pytorch, tensorflow2"):
        FRAMEWORKS.get("jax")


def test_deps_from_env_lists_what_was_installed_by_hand():
    packages = top_level_packages()
    names = {p.split("==")[0].lower() for p in packages}
    assert "pytest-jupyter" in names  # installed by name, required by nothing
    assert "pydantic-core" not in names and "pydantic_core" not in names  # pydantic's own
    assert all("==" in p for p in packages)
