#!/usr/bin/env bash
# Benchmarks of the engine (numbers go into issue notes; nothing here asserts a time).
#  1. overhead: 1,000 `true` cases on the local target vs a shell loop of 1,000 `sh -c true`
#  2. concurrency: 8 combinations of a `sleep 1` case with --jobs 8 vs one combination
# Usage: bench/run.sh   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p adaptest
bin="${CARGO_TARGET_DIR:-target}/release/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
plan() {
  printf '[[target]]\nid = "local"\nkind = "local"\n\n[[matrix]]\ntargets = ["local"]\ncomponents = ["os"]\nsuites = ["%s"]\n' "$1" > "$work/plan.toml"
}

# --- 1. overhead
mkdir -p "$work/s1"
{
  printf '[suite]\nid = "bench.true"\ntitle = "t"\ncomponent = "os"\n'
  for i in $(seq 1000); do printf '\n[[case]]\nid = "c%d"\ntitle = "t"\nrun = "true"\n' "$i"; done
} > "$work/s1/s.toml"
plan bench.true
best_h=999999; best_s=999999
for rep in 1 2 3; do
  t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s1 --no-builtin --format json >/dev/null); t1=$(now)
  h=$(ms "$t0" "$t1"); [ "$h" -lt "$best_h" ] && best_h=$h
  t0=$(now); for i in $(seq 1000); do sh -c true; done; t1=$(now)
  s=$(ms "$t0" "$t1"); [ "$s" -lt "$best_s" ] && best_s=$s
  rm -rf "$work/adaptest-runs"
done
echo "overhead: 1000 true cases: adaptest ${best_h} ms, shell loop ${best_s} ms, ratio $(python3 -c "print(round($best_h/$best_s,2))") (goal <= 1.5)"

# --- 2. concurrency
mkdir -p "$work/s2"
for i in $(seq 8); do
  printf '[suite]\nid = "bench.sleep%d"\ntitle = "s"\ncomponent = "os"\n\n[[case]]\nid = "nap"\ntitle = "nap"\nrun = "sleep 1"\n' "$i" > "$work/s2/s$i.toml"
done
plan 'bench.sleep1'
t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s2 --no-builtin --format json >/dev/null); t1=$(now)
one=$(ms "$t0" "$t1"); rm -rf "$work/adaptest-runs"
plan 'bench.sleep*'
t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s2 --no-builtin --jobs 8 --format json >/dev/null); t1=$(now)
eight=$(ms "$t0" "$t1")
echo "concurrency: 1 combination ${one} ms, 8 combinations --jobs 8 ${eight} ms, ratio $(python3 -c "print(round($eight/$one,2))") (goal <= 1.15)"
