#!/usr/bin/env bash
# What the JupyterLab UI tests need beyond the virtualenv, idempotently: Debian's Chromium
# (Playwright drives it at /usr/bin/chromium; nothing is downloaded by `playwright install`).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
else
  echo "The UI tests need Chromium at /usr/bin/chromium: sudo apt-get install chromium" >&2
  exit 1
fi
