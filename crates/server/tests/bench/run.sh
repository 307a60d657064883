#!/usr/bin/env bash
# HTTP event throughput of `xcomponent-ai serve` on loopback, measured with wrk (Debian package).
# Usage: run.sh [STORE_URL] [DURABILITY]   e.g. run.sh memory | run.sh "" each-commit | run.sh "" relaxed
# Env: BIN (default: release binary in $CARGO_TARGET_DIR), INSTANCES (1000), CONNECTIONS (64),
#      THREADS (2), DURATION (15s), PORT (3990).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/xcomponent-ai}"
STORE="${1:-}"
DURABILITY="${2:-each-commit}"
INSTANCES="${INSTANCES:-1000}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-15s}"
PORT="${PORT:-3990}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
args=(serve "$here/counter.yaml" --port "$PORT" --data-dir "$work/data" --durability "$DURABILITY")
[ -n "$STORE" ] && args+=(--store "$STORE")
RUST_LOG=warn "$BIN" "${args[@]}" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
python3 - "$PORT" "$INSTANCES" >"$work/ids" <<'PY'
import http.client, json, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(count):
    conn.request("POST", "/api/components/Bench/instances", body=json.dumps({"machineName": "Counter"}), headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    print(json.loads(reply.read())["instanceId"])
PY
echo "store=${STORE:-sqlite (default)} durability=$DURABILITY instances=$INSTANCES connections=$CONNECTIONS threads=$THREADS duration=$DURATION"
IDS_FILE="$work/ids" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/events.lua" "http://127.0.0.1:$PORT" | tail -n 1
curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^xcomponent_(transitions_total|store_commit_duration_seconds_(sum|count)|store_committed_events_total)' || true
