#!/usr/bin/env bash
# Runs the dashboard tests (layout units, source checks, headless Chromium
# against the Node mock). Installs what is missing: the npm packages from the
# lockfile and, when run as root, Debian's Chromium. Usable from .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
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
