#!/usr/bin/env bash
# Join a machine to the team's Ray cluster as a node that runs Spell runs.
#
#   bash scripts/team/node.sh HEAD_ADDRESS [MACHINE_TYPE...]     e.g. 10.0.0.5:6379 T4
#   bash scripts/team/node.sh --head [MACHINE_TYPE...]           the first machine: the head
#
# Installs spell-jupyter with its Ray and S3 extras into .venv; where this node's Docker Engine
# answers, builds the team's base image (spell/base:bookworm-py311, from Debian packages: no
# registry needed) so runs here are containers of their environments (built on this node, and
# cached by its engine); without Docker, runs are processes of that .venv's Python. Then starts
# Ray with one `spell-TYPE` resource per machine type this node holds (the Ray backend asks for
# it, so runs of that type land here), its GPUs counted by Ray (GPU runs in containers need the
# NVIDIA Container Toolkit). SPELL_NODE_HOME (default: a folder of /tmp) is where the node
# keeps its runs' folders; SpellFS (the team's bucket) must be reachable from here with the
# same FSSPEC_S3_* settings. A cluster with Ray's token authentication (RAY_AUTH_MODE=token, or
# a token already in ~/.ray/auth_token when the head starts) needs that token on every node and
# every Spell server (~/.ray/auth_token or RAY_AUTH_TOKEN), with RAY_AUTH_MODE=token set there.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
target=$1
shift
if [ ! -x .venv/bin/ray ]; then
  PYTHON=${PYTHON:-python3}
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[team]"
fi
if docker info >/dev/null 2>&1; then
  .venv/bin/spell images build-base  # once: a no-op when the image exists
else
  echo "no Docker Engine answers here: runs on this node will be local processes" >&2
fi
resources="{"
for type in "$@"; do
  resources+="\"spell-${type}\": 1, "
done
resources="${resources%, }}"
export RAY_USAGE_STATS_ENABLED=0
if [ "$target" = "--head" ]; then
  exec .venv/bin/ray start --head --port 6379 --resources "$resources"
fi
exec .venv/bin/ray start --address "$target" --resources "$resources"
