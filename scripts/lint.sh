#!/usr/bin/env bash
# The project's static checks, run by CI before the tests: the house format (rustfmt.toml),
# clippy with every warning an error (rustc's `missing_docs` included), and the API docs built
# without a warning. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

# A formatting difference fails: run `cargo fmt --all` to fix it.
cargo fmt --all --check
# Lints are part of the build: any clippy warning fails.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The API docs build cleanly: no broken or private intra-doc link, no bad HTML, no bare URL.
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --no-deps --all-features --locked
