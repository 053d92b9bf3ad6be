#!/usr/bin/env bash
# Everything spell-jupyter needs on a fresh machine, idempotently: a virtualenv in .venv with
# the package (editable) and its test tools. Safe to run again; later steps reuse what exists.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "spell-jupyter needs Python >= 3.10 (set PYTHON=/path/to/python3.x)" >&2
  exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
  else
    echo "Python's venv module is missing: install python3-venv" >&2
    exit 1
  fi
fi
# Node builds the JupyterLab extension into the package (labextension/, through jlpm).
if ! command -v node >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs
  else
    echo "Node.js (>= 18) is missing: it builds the JupyterLab extension; install nodejs" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# An editable install copies the built extension; link it instead, so a rebuild
# (`jlpm build` in labextension/) is what JupyterLab serves.
LABEXTENSION=.venv/share/jupyter/labextensions/spell-jupyter
if [ ! -L "$LABEXTENSION" ]; then
  rm -rf "$LABEXTENSION"
  ln -s "$PWD/spell_jupyter/labextension" "$LABEXTENSION"
fi

# Where a Docker Engine answers, runs are containers: make sure a base image exists that needs
# no registry (built from Debian packages), and make it the default framework.
if .venv/bin/python -c 'from spell_jupyter.backends.docker import docker_answers; exit(not docker_answers())'; then
  if ! command -v mmdebstrap >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap zstd >/dev/null
  fi
  if ! .venv/bin/spell images build-base --set-default \
      --rootfs-cache "${SPELL_ROOTFS_CACHE:-$HOME/.cache/spell-jupyter/rootfs-bookworm.tar.zst}"; then
    echo "Could not build the base image: Docker runs will start from the upstream" \
      "python:3.11-slim-bookworm (needs Docker Hub). Without a registry, run as root:" \
      ".venv/bin/spell images build-base --set-default" >&2
  fi
fi
echo "spell-jupyter is set up: .venv/bin/spell"
