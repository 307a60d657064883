#!/usr/bin/env bash
# Runs the Python test of the external bus API (test_bus_api.py, docs/bus-api.md) against a real
# `xcomponent-ai runtime` over Redis and over RabbitMQ, with redis-py and pika pinned in a virtual
# environment (created on first use; python3 with venv and access to PyPI are needed once).
# Env: BIN (default: the debug binary in $CARGO_TARGET_DIR or ./target), XC_TEST_REDIS_URL,
#      XC_TEST_AMQP_URL (scripts/test.sh exports both), XC_BUS_API_BROKERS (redis,rabbitmq),
#      XC_BUS_API_VENV (default: ~/.cache/xcomponent-ai/bus-api-venv).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
BIN="${BIN:-$target/debug/xcomponent-ai}"
VENV="${XC_BUS_API_VENV:-$HOME/.cache/xcomponent-ai/bus-api-venv}"
# The clients the test and the documentation's examples use.
REDIS_PY=5.2.1
PIKA=1.3.2
# The whole run (both brokers) takes about a second; past this something hangs.
TIMEOUT_SECONDS=60

[ -x "$BIN" ] || { echo "bus-api: no binary at $BIN (cargo build -p xcomponent-cli)" >&2; exit 1; }
installed() {
  "$VENV/bin/python" -c 'import redis, pika, sys; sys.exit(not (redis.__version__ == sys.argv[1] and pika.__version__ == sys.argv[2]))' \
    "$REDIS_PY" "$PIKA" 2>/dev/null
}
if ! installed; then
  echo "bus-api: installing redis $REDIS_PY and pika $PIKA into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "redis==$REDIS_PY" "pika==$PIKA"
fi
XC_BIN="$BIN" RUST_LOG="${RUST_LOG:-warn}" timeout "$TIMEOUT_SECONDS" \
  "$VENV/bin/python" "$root/tests/python/test_bus_api.py"
