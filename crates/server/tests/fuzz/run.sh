#!/usr/bin/env bash
# Fuzzes the API from its own OpenAPI document with schemathesis, against a real
# `xcomponent-ai serve` of the order/payment example (examples/order-payment) on a free loopback
# port, with SQLite in a temporary data directory. Fails on any 5xx and on any response that
# breaks the document (status code, content type, headers, body schema). scripts/test.sh runs
# it, so CI does.
#
# Reproducible and bounded: a fixed seed, one worker (the server's state then evolves the same
# way each run), MAX_EXAMPLES cases per operation and no example database: about 3,500 requests,
# half a minute on two cores with the debug binary.
#
# schemathesis comes from PyPI, pinned, in a virtual environment kept next to the build
# (created on first use; python3 with venv and network access to PyPI are needed once).
#
# Usage: run.sh [extra schemathesis options]
# Env: BIN (default: the debug binary in $CARGO_TARGET_DIR or ./target), SEED (20261127),
#      MAX_EXAMPLES (100), SCHEMATHESIS_VENV (default: $CARGO_TARGET_DIR/schemathesis-venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
BIN="${BIN:-$target/debug/xcomponent-ai}"
SEED="${SEED:-20261127}"
MAX_EXAMPLES="${MAX_EXAMPLES:-100}"
VERSION=4.32.5
VENV="${SCHEMATHESIS_VENV:-$target/schemathesis-venv}"
# What a response must respect. Not the checks on what the server accepts
# (positive_data_acceptance, negative_data_rejection): the API may refuse data the document
# allows (a contextSchema, a missing instance) and that is not a fault.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance

[ -x "$BIN" ] || { echo "fuzz: no binary at $BIN (cargo build -p xcomponent-cli)" >&2; exit 1; }
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $VERSION" ]; then
  echo "fuzz: installing schemathesis $VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Port 0: the server picks a free port and prints it on its first line.
RUST_LOG=warn "$BIN" serve "$root/examples/order-payment/order.yaml" "$root/examples/order-payment/payment.yaml" \
  --port 0 --data-dir "$work/data" --durability none >"$work/server.out" 2>"$work/server.log" &
server=$!
base=""
for _ in $(seq 300); do
  base="$(sed -n 's/^xcomponent-ai serving .* on \(http:[^ ]*\)$/\1/p' "$work/server.out")"
  [ -n "$base" ] && curl -fs "$base/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "fuzz: serve did not start" >&2; cat "$work/server.log" >&2; exit 1; }
  base=""
  sleep 0.1
done
[ -n "$base" ] || { echo "fuzz: serve did not answer /health" >&2; cat "$work/server.log" >&2; exit 1; }
# One live order for the operations that take an instance id (schemathesis.toml binds it).
created="$(curl -fs -X POST -H 'Content-Type: application/json' \
  -d '{"machineName": "Order", "context": {"orderId": "ORD-FUZZ", "amount": 120, "paymentMethod": "visa"}}' \
  "$base/api/components/OrderComponent/instances")"
XC_FUZZ_ORDER="$(printf '%s' "$created" | sed -n 's/.*"instanceId":"\([0-9a-f-]*\)".*/\1/p')"
[ -n "$XC_FUZZ_ORDER" ] || { echo "fuzz: could not create the order: $created" >&2; exit 1; }
export XC_FUZZ_ORDER
echo "fuzz: $base, seed $SEED, $MAX_EXAMPLES examples per operation, order $XC_FUZZ_ORDER"

status=0
# From the work directory: schemathesis writes nothing into the repository.
(cd "$work" && "$VENV/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/openapi.json" \
  --checks "$CHECKS" --seed "$SEED" --max-examples "$MAX_EXAMPLES" --workers 1 \
  --generation-database none --no-color --exclude-path /ws "$@") || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "fuzz: the server died" >&2
  cat "$work/server.log" >&2
  exit 1
fi
exit "$status"
