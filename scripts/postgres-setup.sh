#!/usr/bin/env bash
# What the team-store tests need beyond the virtualenv, idempotently: Debian's PostgreSQL server
# binaries (the tests start throw-away servers of their own in temporary folders, as the
# `postgres` user; no cluster of the package is used or started here).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null || { apt-get update -qq && apt-get install -y -q postgresql >/dev/null; }
else
  echo "The team-store tests need PostgreSQL's server binaries: sudo apt-get install postgresql" >&2
  exit 1
fi
