#!/usr/bin/env bash
# Runs the dashboard tests (layout units, source checks, headless Chromium
# against the Node mock, and end to end against the real `xcomponent-ai serve`).
# Installs what is missing: the npm packages from the lockfile and, when run as
# root, Debian's Chromium. Usable from .ci/run.
#
# The end-to-end tests need the debug binary: $XC_BIN, else
# $CARGO_TARGET_DIR/debug/xcomponent-ai (CARGO_TARGET_DIR defaulting to cargo's
# own default, the repository's target/; a relative one is taken from the
# repository root, where scripts/test.sh runs cargo). A missing binary fails the run.
set -euo pipefail
cd "$(dirname "$0")"
repo="$(cd ../../.. && pwd)"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
XC_BIN="${XC_BIN:-$target_dir/debug/xcomponent-ai}"
case "$XC_BIN" in /*) ;; *) XC_BIN="$repo/$XC_BIN" ;; esac
if [ ! -x "$XC_BIN" ]; then
  echo "dashboard tests need the xcomponent-ai binary at $XC_BIN:" >&2
  echo "  build it with 'cargo build -p xcomponent-cli' (scripts/test.sh does it through 'cargo test')," >&2
  echo "  or set XC_BIN (or CARGO_TARGET_DIR) to where it is" >&2
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
[ -d node_modules/playwright-core ] && [ -d node_modules/ws ] || npm ci --no-audit --no-fund --loglevel=error
npm test --silent
