#!/usr/bin/env bash
# The whole test suite: install what a fresh machine lacks, then format, lints, every test.
#
# On a fresh machine most of the time goes to compiling and to building the foreign-arch
# payloads and guest images (all cached after that: ~/.cache/adaptest, the cargo target dir).
# Those builds wait on the network and on single-threaded emulation, so they run in the
# background, niced, while cargo compiles on both cores; the tests start once all are done.
set -euo pipefail
cd "$(dirname "$0")/.."
set -m # background jobs get process groups of their own: on failure, each is ended whole
target=${CARGO_TARGET_DIR:-$PWD/target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
logs=$(mktemp -d "${TMPDIR:-/tmp}/adaptest-test.XXXXXX")
jobs_started=()
stop_jobs() {
  local pid
  for pid in "${jobs_started[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
}
trap stop_jobs EXIT
t0=$SECONDS
step() { echo "test.sh: [$((SECONDS - t0)) s] $*"; }

step "install-deps"
bash scripts/install-deps.sh
cargo fmt --all -- --check

# The LoongArch sysroot needs no adaptest binary: zig compiles it from Debian's sources.
step "background: scripts/build-payloads.sh loongarch64 (log: $logs/loongarch64.log)"
nice -n 10 bash scripts/build-payloads.sh loongarch64 >"$logs/loongarch64.log" 2>&1 &
loong=$!
jobs_started+=("$loong")

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "services"
bash scripts/services.sh start # the loopback servers the middleware/database tests use
step "build adaptest and the test plugins"
# The plugin tests load these as dylib and exec plugins (the binary under test's target dir).
cargo build --locked -p adaptest -p memcached-plugin -p faulty-plugin

# Guest images for the qemu-system tests, then the arm64 rootfs of the qemu-user tests as a copy
# of the aarch64 image's root (one debootstrap instead of two). Cache hits take < 1 s.
step "background: image builds + arm64 payload (log: $logs/images.log)"
(
  bin="$target/debug/adaptest"
  arm=(--arch aarch64 --packages redis-server)
  nice -n 10 "$bin" image build "${arm[@]}"
  ADAPTEST_ARM64_ROOTFS_FROM="$("$bin" image path "${arm[@]}")/rootfs" \
    nice -n 10 bash scripts/build-payloads.sh aarch64
  nice -n 10 "$bin" image build --arch x86_64
) >"$logs/images.log" 2>&1 &
images=$!
jobs_started+=("$images")

step "build the tests"
cargo test --workspace --locked --no-run

finish() { # PID NAME LOG: wait for a background build; show its log; stop here if it failed
  local rc=0
  wait "$1" || rc=$?
  echo "--- $2 ---"
  cat "$3"
  if [ "$rc" != 0 ]; then
    echo "test.sh: $2 failed (exit $rc)" >&2
    exit 1
  fi
}
step "waiting for the payload and image builds"
finish "$loong" "build-payloads.sh loongarch64" "$logs/loongarch64.log"
finish "$images" "image builds + arm64 payload" "$logs/images.log"
jobs_started=()

step "tests"
cargo test --workspace --locked
step "done"
rm -rf "$logs"
