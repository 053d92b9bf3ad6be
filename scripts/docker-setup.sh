#!/usr/bin/env bash
# Docker for spell-jupyter, idempotently (run as root on Debian/Ubuntu without systemd, e.g. CI):
# install docker.io + mmdebstrap + zstd, start dockerd if none answers, and build the base image
# with `spell images build-base` (its root filesystem cached in $SPELL_ROOTFS_CACHE, so a later
# run on the same machine re-imports it in seconds). Needs .venv from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
BASE_TAG=${SPELL_TEST_BASE_IMAGE:-spell/base:bookworm-py311}
CACHE=${SPELL_ROOTFS_CACHE:-/var/cache/spell-jupyter/rootfs-bookworm.tar.zst}
LOG=${DOCKERD_LOG:-/var/log/spell-dockerd.log}

need=()
command -v dockerd >/dev/null || need+=(docker.io cgroupfs-mount)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's docker CLI: a newer one elsewhere on PATH may not speak to this daemon.
DOCKER=/usr/bin/docker
if ! "$DOCKER" info >/dev/null 2>&1; then
  mountpoint -q /sys/fs/cgroup || cgroupfs-mount
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid  # a stale pid file of a dead daemon blocks start-up
  fi
  if [ ! -f /var/run/docker.pid ]; then
    setsid dockerd >>"$LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 120); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || { tail -20 "$LOG" >&2; echo "dockerd did not start" >&2; exit 1; }
fi
"$DOCKER" info --format 'Docker {{.ServerVersion}} ({{.Driver}}, cgroup v{{.CgroupVersion}})'

.venv/bin/spell images build-base --tag "$BASE_TAG" --rootfs-cache "$CACHE"
