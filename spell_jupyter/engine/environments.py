"""Environments: a run's framework image plus its packages, as a generated Docker build context.

The context (a Dockerfile and the package lists as files) is normalised and hashed into an image
tag, so a spec is built once and every later run with the same spec reuses the image. Nothing a
user typed is ever part of a RUN line: package lists travel as files the fixed RUN steps read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from ..models import RunSpec
from ..notebook_runs import PACKAGES as NOTEBOOK_PACKAGES
from ..notebook_runs import is_notebook_run

ENVIRONMENT_LABEL = "spell.environment"
ENV_IMAGE_REPOSITORY = "spell-env"
CONTEXT_DIR = "/tmp/spell-env"  # where the build context's files land inside the image
FORMAT_VERSION = "1"  # bump when the generated Dockerfile changes meaning

# The public upstream images a user would pick; `packages` are what deps-from-env leaves out.
DEFAULT_FRAMEWORKS: dict[str, dict] = {
    "default": {"image": "python:3.11-slim-bookworm", "packages": []},
    "pytorch": {
        "image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        "packages": ["torch", "torchvision", "torchaudio", "numpy"],
    },
    "tensorflow2": {
        "image": "tensorflow/tensorflow:2.18.0-gpu",
        "packages": ["tensorflow", "keras", "numpy"],
    },
    "tensorflow1": {
        "image": "tensorflow/tensorflow:1.15.5-gpu-py3",
        "packages": ["tensorflow", "tensorflow-gpu", "keras", "numpy"],
    },
}

# Packages of the submitter's environment that never belong in a run's image.
TOOLING = {"pip", "setuptools", "wheel", "spell-jupyter", "uv"}

APT_STEP = (
    "RUN apt-get update \\\n"
    " && DEBIAN_FRONTEND=noninteractive xargs -a {dir}/apt.txt apt-get install -y"
    " --no-install-recommends \\\n"
    " && rm -rf /var/lib/apt/lists/*"
)
PIP_STEP = (
    "RUN if [ {installer} != pip ] && command -v uv >/dev/null 2>&1; then \\\n"
    "      uv pip install --system --break-system-packages -r {dir}/requirements.txt; \\\n"
    "    elif [ {installer} = uv ]; then \\\n"
    '      echo "uv was asked for but the base image has none" >&2; exit 1; \\\n'
    "    else \\\n"
    "      python3 -m pip install --no-cache-dir -r {dir}/requirements.txt; \\\n"
    "    fi"
)
CONDA_STEP = (
    "RUN if command -v micromamba >/dev/null 2>&1; then \\\n"
    "      micromamba install -y -n base -f {dir}/environment.yml; \\\n"
    "    elif command -v mamba >/dev/null 2>&1; then \\\n"
    "      mamba env update -n base -f {dir}/environment.yml; \\\n"
    "    elif command -v conda >/dev/null 2>&1; then \\\n"
    "      conda env update -n base -f {dir}/environment.yml; \\\n"
    "    else \\\n"
    '      echo "--conda-file needs conda, mamba or micromamba in the image, and this base image'
    ' has none: pick a framework that has one" >&2; exit 1; \\\n'
    "    fi"
)
CA_STEP = (
    "COPY ca-certificates/ /usr/local/share/ca-certificates/spell/\n"
    "RUN if command -v update-ca-certificates >/dev/null 2>&1; then update-ca-certificates; "
    "fi >/dev/null"
)
CA_ENV = (
    "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "
    "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt "
    "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
)


@dataclass(frozen=True)
class Framework:
    name: str
    image: str
    packages: frozenset[str] = frozenset()


class Frameworks:
    """The configured table of frameworks (names match case-insensitively)."""

    def __init__(self, table: dict[str, dict | str]):
        self.frameworks: dict[str, Framework] = {}
        for name, spec in table.items():
            if isinstance(spec, str):
                spec = {"image": spec}
            packages = frozenset(_canonical_name(p) for p in spec.get("packages", []))
            self.frameworks[name.lower()] = Framework(name, spec["image"], packages)

    def names(self) -> list[str]:
        return [f.name for f in self.frameworks.values()]

    def get(self, name: str) -> Framework:
        try:
            return self.frameworks[name.lower()]
        except KeyError:
            known = ", ".join(f.name for f in self.frameworks.values())
            raise InvalidInput(f"unknown framework {name!r}; known frameworks: {known}") from None


@dataclass(frozen=True)
class BuildContext:
    """A Dockerfile and the files it copies; `tag` names the image it builds."""

    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)
    base_id: str = ""  # the FROM image's content ID, where known

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(self.base_id.encode())
        for name, data in sorted({"Dockerfile": self.dockerfile.encode(), **self.files}.items()):
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
        return f"{ENV_IMAGE_REPOSITORY}:{digest.hexdigest()[:20]}"


@dataclass(frozen=True)
class Environment:
    """What a run runs in: an image used as it is, or one built from a context."""

    base_image: str
    context: BuildContext | None = None

    @property
    def image(self) -> str:
        return self.context.tag if self.context else self.base_image


def environment_for(
    spec: RunSpec,
    frameworks: Frameworks,
    ca_files: list[Path],
    pip_installer: str = "auto",
) -> Environment:
    """The environment a spec asks for (pure: reads only the CA files)."""
    if spec.docker_image:
        return Environment(spec.docker_image)
    framework = frameworks.get(spec.framework)
    files: dict[str, bytes] = {}
    steps = [
        f"# spell-jupyter environment, format {FORMAT_VERSION}",
        f"FROM {framework.image}",
        # on the image and on every container of its build: a failed build's are findable
        f"LABEL {ENVIRONMENT_LABEL}={FORMAT_VERSION}",
    ]
    if ca_files:
        for path in sorted(ca_files):
            files[f"ca-certificates/{path.stem}.crt"] = path.read_bytes()
        steps += [CA_STEP, CA_ENV]
    if spec.apt_packages:
        files["apt.txt"] = "".join(f"{p}\n" for p in spec.apt_packages).encode()
    requirements = merged_requirements(spec, framework)
    if requirements:
        files["requirements.txt"] = "".join(f"{r}\n" for r in requirements).encode()
    if spec.conda_env is not None:
        files["environment.yml"] = spec.conda_env.encode()
    if not files:
        return Environment(framework.image)  # nothing to add: the framework's image as it is
    package_files = [f for f in ("apt.txt", "requirements.txt", "environment.yml") if f in files]
    if package_files:
        steps.append(f"COPY {' '.join(package_files)} {CONTEXT_DIR}/")
    if "apt.txt" in files:
        steps.append(APT_STEP.format(dir=CONTEXT_DIR))
    if "environment.yml" in files:
        steps.append(CONDA_STEP.format(dir=CONTEXT_DIR))
    if "requirements.txt" in files:
        steps.append(PIP_STEP.format(dir=CONTEXT_DIR, installer=pip_installer))
    return Environment(framework.image, BuildContext("\n".join(steps) + "\n", files))


def merged_requirements(spec: RunSpec, framework: Framework) -> list[str]:
    """Spell's precedence: deps-from-env < requirements file < --pip, by package name.

    Requirement-file lines without a plain name (options, URLs) are kept first, in order.
    """
    by_name: dict[str, str] = {}
    unnamed: list[str] = []
    for spec_line in spec.pip_from_env:
        name = _canonical_name(spec_line)
        if name not in framework.packages and name not in TOOLING:
            by_name[name] = spec_line
    for line in (spec.requirements or "").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or "://" in line or "@" in line:
            unnamed.append(line)
        else:
            by_name.pop(_canonical_name(line), None)
            by_name[_canonical_name(line)] = line
    if is_notebook_run(spec.command):  # what executing the notebook needs, unless provided
        for package in NOTEBOOK_PACKAGES:
            if package not in framework.packages:
                by_name.setdefault(package, package)
    served = None  # the Jupyter a workspace serves, the kernel a kernel is, unless provided
    if spec.workspace is not None:
        served = "notebook" if spec.workspace.notebook else "jupyterlab"
    elif spec.kernel is not None:
        served = "ipykernel"
    if served is not None and served not in framework.packages:
        by_name.setdefault(served, served)
    for pip_spec in spec.pip_packages:
        by_name.pop(_canonical_name(pip_spec), None)
        by_name[_canonical_name(pip_spec)] = pip_spec
    return unnamed + list(by_name.values())


def _canonical_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    name = match.group(1) if match else requirement
    return re.sub(r"[-_.]+", "-", name).lower()
