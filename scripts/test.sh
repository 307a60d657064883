#!/usr/bin/env bash
# The project's test command (README): every crate with every backend against the real local
# servers, then the dashboard in headless Chromium. Set XC_SKIP_BROWSER=1 to skip the browser part
# (it is never skipped in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

export XC_TEST_POSTGRES_URL="${XC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export XC_TEST_REDIS_URL="${XC_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

cargo test --workspace --all-features --locked
# The examples are built and run (they assert their own outcome).
cargo run --locked -q -p order-payment-example

if [ "${XC_SKIP_BROWSER:-0}" != "1" ]; then
  bash crates/server/dashboard-tests/run.sh
fi
