#!/usr/bin/env bash
# HTTP event throughput of `xcomponent-ai serve` on loopback, measured with wrk (Debian package),
# beside the floor: a bare axum server parsing the same body (crates/server/examples/floor.rs),
# measured just before `serve` in the same run; the ratio of the two is printed after them. With DURABLE_FLOOR=1, also
# beside the durable floor (the same example with --durable: it flushes one appended record per
# request before answering, by group commit).
# Build both first: cargo build --release -p xcomponent-cli -p xcomponent-server --example floor
# Usage: run.sh [STORE_URL] [DURABILITY]   e.g. run.sh memory | run.sh "" each-commit | run.sh "" relaxed
# Env: BIN (default: release binary in $CARGO_TARGET_DIR), FLOOR (default: the floor example there,
#      FLOOR=skip to leave it out), DURABLE_FLOOR (1: the durable floor is measured
#      too, and the ratios to it printed), INSTANCES (1000), CONNECTIONS (64), THREADS (2), DURATION (15s),
#      PORT (3990), FLOOR_PORT (3989), SERVE_ARGS (more flags for serve, e.g. "--shards 8"),
#      ROUNDS (1: how many times the floors and serve are measured in turn, the same server
#      throughout; with more than one, the median round's ratios are printed last).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/xcomponent-ai}"
FLOOR="${FLOOR:-${CARGO_TARGET_DIR:-target}/release/examples/floor}"
FLOOR_PORT="${FLOOR_PORT:-3989}"
STORE="${1:-}"
DURABILITY="${2:-each-commit}"
INSTANCES="${INSTANCES:-1000}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-15s}"
DURABLE_FLOOR="${DURABLE_FLOOR:-}"
ROUNDS="${ROUNDS:-1}"
PORT="${PORT:-3990}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d)"
server=""
floor=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  [ -n "$floor" ] && kill "$floor" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rate() { awk '/^requests\/s/ {print $2}' "$1"; }
# CPU time of a process so far, in clock ticks (user + system), and per request over a run: a
# measure the other loads of a shared machine disturb much less than requests/s.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_request() {
  awk -v ticks="$1" -v hz="$(getconf CLK_TCK)" '/^requests\/s/ { for (i = 1; i < NF; i++) if ($i == "requests") n = $(i + 1) }
    END { if (n > 0) printf "CPU per request %.1f µs\n", ticks / hz * 1e6 / n }' "$2"
}
# Runs the floor (named $1, described by $2; more arguments for it after) under the same load;
# sets floor_rate.
measure_floor() {
  local name="$1" label="$2"
  shift 2
  "$FLOOR" "$FLOOR_PORT" "$@" >"$work/$name.log" 2>&1 &
  floor=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$FLOOR_PORT/health" >/dev/null && break; sleep 0.1; done
  # Any ids do: the floors only echo them.
  seq -f "00000000-0000-7000-8000-%012g" "$INSTANCES" >"$work/floor-ids"
  echo "$label connections=$CONNECTIONS threads=$THREADS duration=$DURATION"
  local start_ticks
  start_ticks=$(ticks "$floor")
  IDS_FILE="$work/floor-ids" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/events.lua" "http://127.0.0.1:$FLOOR_PORT" | tail -n 1 | tee "$work/$name.out"
  per_request "$(( $(ticks "$floor") - start_ticks ))" "$work/$name.out"
  floor_rate="$(rate "$work/$name.out")"
  kill "$floor" 2>/dev/null; wait "$floor" 2>/dev/null || true
  floor=""
}
args=(serve "$here/counter.yaml" --port "$PORT" --data-dir "$work/data" --durability "$DURABILITY")
[ -n "$STORE" ] && args+=(--store "$STORE")
# Extra flags for serve, e.g. SERVE_ARGS="--shards 8" (split on spaces).
# shellcheck disable=SC2206
[ -n "${SERVE_ARGS:-}" ] && args+=($SERVE_ARGS)
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
if [ "$FLOOR" != skip ]; then
  [ -x "$FLOOR" ] || { echo "bench: no floor binary at $FLOOR (build the floor example, or FLOOR=skip)" >&2; exit 1; }
fi
ratio() {
  awk -v a="$2" -v b="$3" -v what="$1" 'BEGIN { if (b > 0) printf "%s: %.0f / %.0f requests/s = %.0f%%\n", what, a, b, 100 * a / b }'
}
# The machine's speed drifts over minutes, so each round measures the floors and `serve` back to
# back, and the ratios of every round are kept; the median round is reported last.
: >"$work/ratios"
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "-- round $round of $ROUNDS"
  bare_rate=""
  durable_rate=""
  if [ "$FLOOR" != skip ]; then
    measure_floor floor "floor (bare axum, same body)"
    bare_rate="$floor_rate"
    if [ "$DURABLE_FLOOR" = 1 ]; then
      rm -f "$work/durable-floor.data"
      measure_floor durable-floor "durable floor (bare axum, one record appended and flushed per request, group commit)" --durable "$work/durable-floor.data"
      durable_rate="$floor_rate"
    fi
  fi
  echo "store=${STORE:-sqlite (default)} durability=$DURABILITY instances=$INSTANCES connections=$CONNECTIONS threads=$THREADS duration=$DURATION"
  start_ticks=$(ticks "$server")
  IDS_FILE="$work/ids" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/events.lua" "http://127.0.0.1:$PORT" | tail -n 1 | tee "$work/serve.out"
  per_request "$(( $(ticks "$server") - start_ticks ))" "$work/serve.out"
  serve_rate="$(rate "$work/serve.out")"
  [ -n "$bare_rate" ] && ratio "serve / floor" "$serve_rate" "$bare_rate"
  [ -n "$durable_rate" ] && ratio "serve / durable floor" "$serve_rate" "$durable_rate"
  [ -n "$bare_rate" ] && [ -n "$durable_rate" ] && ratio "durable floor / floor" "$durable_rate" "$bare_rate"
  [ -n "$bare_rate" ] && echo "$serve_rate $bare_rate ${durable_rate:-0}" >>"$work/ratios"
done
curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^xcomponent_(transitions_total|store_commit_duration_seconds_(sum|count)|store_committed_events_total)' || true
if [ "$ROUNDS" -gt 1 ] && [ -s "$work/ratios" ]; then
  # The round whose serve / floor ratio is the median (the lower middle one for an even count).
  read -r serve_rate bare_rate durable_rate < <(awk '{print $1 / $2, $0}' "$work/ratios" | sort -n |
    awk -v n="$(wc -l <"$work/ratios")" 'NR == int((n + 1) / 2) {print $2, $3, $4}')
  echo "median of $ROUNDS rounds:"
  ratio "serve / floor" "$serve_rate" "$bare_rate"
  [ "$durable_rate" != 0 ] && ratio "serve / durable floor" "$serve_rate" "$durable_rate"
  [ "$durable_rate" != 0 ] && ratio "durable floor / floor" "$durable_rate" "$bare_rate"
fi
true
