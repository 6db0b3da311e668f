#!/usr/bin/env bash
# Third-party WebRTC clients the e2e tests drive, fetched with npm into a cache folder once
# (the tests run in a network namespace that cannot reach the registry):
#   whip-whep 1.2.0  medooze's WHIP client (MIT), published in chromium by tests/e2e/test_whip.py
set -euo pipefail
CACHE="${MICROCUE_TEST_CLIENTS:-$HOME/.cache/microcue/npm}"
install() {  # name version
  local dir="$CACHE/$1@$2"
  [ -f "$dir/node_modules/$1/package.json" ] && return 0
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts "$1@$2" >/dev/null
}
install whip-whep 1.2.0
