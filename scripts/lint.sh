#!/usr/bin/env bash
# The project's static checks, run by CI before the tests: the house format (rustfmt.toml) and
# clippy with every warning an error. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

# A formatting difference fails: run `cargo fmt --all` to fix it.
cargo fmt --all --check
# Lints are part of the build: any clippy warning fails.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
