#!/usr/bin/env bash
# Runs the dashboard tests (layout units, source checks, headless Chromium
# against the Node mock, and end to end against the real `xcomponent-ai serve`).
# Installs what is missing: the npm packages from the lockfile and, when run as
# root, Debian's Chromium. Usable from .ci/run.
#
# The end-to-end tests need the debug binary: $XC_BIN, else debug/xcomponent-ai in the target
# directory cargo itself reports (`cargo metadata`: honours CARGO_TARGET_DIR and .cargo/config,
# ./target on a fresh clone). When it is missing it is built (`cargo build -p xcomponent-cli`).
set -euo pipefail
cd "$(dirname "$0")"
repo="$(cd ../../.. && pwd)"
if [ -z "${XC_BIN:-}" ]; then
  target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  XC_BIN="$target_dir/debug/xcomponent-ai"
  if [ ! -x "$XC_BIN" ]; then
    echo "dashboard tests: $XC_BIN is missing; building it" >&2
    (cd "$repo" && cargo build --locked -q -p xcomponent-cli)
  fi
fi
case "$XC_BIN" in /*) ;; *) XC_BIN="$repo/$XC_BIN" ;; esac
if [ ! -x "$XC_BIN" ]; then
  echo "dashboard tests need the xcomponent-ai binary at $XC_BIN (XC_BIN names another)" >&2
  exit 1
fi
export XC_BIN
# The dashboard is embedded at build time: a binary older than its files tests an old dashboard.
if [ -n "$(find ../dashboard -type f -newer "$XC_BIN" -print -quit)" ]; then
  echo "warning: files in crates/server/dashboard are newer than $XC_BIN; the end-to-end tests run the embedded copy (rebuild to test the new one)" >&2
fi
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "dashboard tests need Chromium at $chromium (apt-get install chromium)" >&2
    exit 1
  fi
fi
[ -d node_modules/playwright-core ] && [ -d node_modules/ws ] && [ -d node_modules/socket.io-client ] || npm ci --no-audit --no-fund --loglevel=error
npm test --silent
