#!/usr/bin/env bash
# Runs the node:test suites. Node 20 does not expand globs in `node --test` arguments (Node >= 21
# does), so bash expands test/<suite>/**/*.test.ts here, the same on every Node line.
#
#   bash scripts/test.sh                 # unit + e2e
#   bash scripts/test.sh e2e             # one suite
#   bash scripts/test.sh unit -- --test-name-pattern=snapshot   # extra node args after --
#
# Test files run one at a time (--test-concurrency=1): the e2e ones start real Envoys and
# measure timings on a 2-core machine.
set -euo pipefail
shopt -s globstar nullglob
cd "$(dirname "${BASH_SOURCE[0]}")/.."

suites=()
while (($#)) && [[ "$1" != "--" ]]; do suites+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
((${#suites[@]})) || suites=(unit e2e)

files=()
for suite in "${suites[@]}"; do
  if [[ ! -d "test/$suite" ]]; then
    echo "scripts/test.sh: no such suite: test/$suite" >&2
    exit 2
  fi
  files+=(test/"$suite"/**/*.test.ts)
done
if ((${#files[@]} == 0)); then
  echo "scripts/test.sh: no test files in: ${suites[*]}" >&2
  exit 1
fi

exec node --import tsx --test --test-concurrency=1 "$@" "${files[@]}"
