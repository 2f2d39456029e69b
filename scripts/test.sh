#!/usr/bin/env bash
# The whole test suite: install what a fresh machine lacks, then format, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
