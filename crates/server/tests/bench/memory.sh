#!/usr/bin/env bash
# Memory per live instance of `xcomponent-ai serve`: creates instances over HTTP (wrk), each with a
# 5-field business context, then divides the growth of the server's anonymous memory (RssAnon) by
# the live instances it reports.
# Usage: memory.sh [STORE_URL] [DURABILITY]   (default: the embedded SQLite store, each-commit)
# Env: BIN (default: release binary in $CARGO_TARGET_DIR), CONNECTIONS (16), THREADS (2),
#      DURATION (30s), PORT (3991).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/xcomponent-ai}"
STORE="${1:-}"
DURABILITY="${2:-each-commit}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-30s}"
PORT="${PORT:-3991}"
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
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$server/status"; }
# File-backed resident pages: the store's memory-mapped file, which the kernel shares and
# reclaims (printed beside, not counted).
file_kb() { awk '/^RssFile:/ {print $2}' "/proc/$server/status"; }
live() {
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^xcomponent_live_instances\{/ {sum += $2} END {print sum + 0}'
}
# Warm the allocator and the HTTP path before the baseline.
wrk -t1 -c1 -d1s -s "$here/create.lua" "http://127.0.0.1:$PORT" >/dev/null
before_kb=$(anon_kb)
before_file_kb=$(file_kb)
before_live=$(live)
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$here/create.lua" "http://127.0.0.1:$PORT" | tail -n 1
sleep 1
after_kb=$(anon_kb)
after_file_kb=$(file_kb)
after_live=$(live)
count=$((after_live - before_live))
echo "store=${STORE:-sqlite (default)} durability=$DURABILITY live instances +$count  RssAnon ${before_kb} kB -> ${after_kb} kB"
awk -v grown="$((after_kb - before_kb))" -v count="$count" \
  'BEGIN { if (count > 0) printf "bytes per live instance %.0f\n", grown * 1024 / count }'
awk -v grown="$((after_file_kb - before_file_kb))" -v count="$count" \
  'BEGIN { if (count > 0) printf "file-backed resident (memory map) %.0f bytes per live instance\n", grown * 1024 / count }'
# What the store keeps on disk, for comparison with its page cache (SQLite keeps up to
# WRITER_CACHE_KIB of it in memory).
if [ -d "$work/data" ] && [ "$count" -gt 0 ]; then
  awk -v bytes="$(du -sb "$work/data" | cut -f1)" -v count="$count" \
    'BEGIN { printf "store files %.0f bytes per live instance\n", bytes / count }'
fi
