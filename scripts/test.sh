#!/usr/bin/env bash
# The whole test suite: install what a fresh machine lacks, then format, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash scripts/services.sh start   # the loopback servers the middleware/database tests use
bash scripts/build-payloads.sh     # foreign-arch rootfs/sysroot for the qemu-user tests (cached)
# Guest images for the qemu-system tests: built once per machine into the cache (a hit is < 1 s).
cargo run -q --locked -p adaptest -- image build --arch aarch64 --packages redis-server >/dev/null
cargo run -q --locked -p adaptest -- image build --arch x86_64 >/dev/null
# The plugin tests load these as dylib and exec plugins (the binary under test's target dir).
cargo build --locked -p memcached-plugin -p faulty-plugin
cargo test --workspace --locked
