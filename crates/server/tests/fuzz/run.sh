#!/usr/bin/env bash
# Fuzzes the API from its own OpenAPI document with schemathesis (PyPI), against
# `xcomponent-ai serve` with the order, payment and help-desk fixtures (memory store).
# Usage: run.sh [extra schemathesis options]. Env: BIN (default: debug binary), PORT (3918),
# MAX_EXAMPLES (100), SCHEMATHESIS (default: `schemathesis` on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../fixtures"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/debug/xcomponent-ai}"
PORT="${PORT:-3918}"
ST="${SCHEMATHESIS:-schemathesis}"
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" serve "$fixtures/order.yaml" "$fixtures/payment.yaml" "$fixtures/desk.yaml" --port "$PORT" --store memory >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
status=0
"$ST" --config-file "$here/schemathesis.toml" run "http://127.0.0.1:$PORT/openapi.json" --checks all \
  --max-examples "${MAX_EXAMPLES:-100}" --workers 2 --exclude-path /ws "$@" || status=$?
kill -0 "$server" || { echo "fuzz: the server died" >&2; cat "$work/server.log" >&2; exit 1; }
exit "$status"
