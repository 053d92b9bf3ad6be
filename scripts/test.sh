#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: lint (Python, then the JupyterLab
# extension's TypeScript types and formatting), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
(cd labextension && PATH="$PWD/../.venv/bin:$PATH" jlpm install --immutable >/dev/null && PATH="$PWD/../.venv/bin:$PATH" jlpm check)
.venv/bin/python -m pytest -q "$@"
