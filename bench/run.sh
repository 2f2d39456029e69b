#!/usr/bin/env bash
# Benchmarks of the engine (numbers go into issue notes; nothing here asserts a time).
#  1. overhead: 1,000 `true` cases on the local target vs a shell loop of 1,000 `sh -c true`
#     (median of 5 interleaved runs of each)
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
hs=(); ss=()
for rep in 1 2 3 4 5; do # interleaved, so both see the same machine
  t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s1 --no-builtin --format json >/dev/null); t1=$(now)
  hs+=("$(ms "$t0" "$t1")")
  t0=$(now); for i in $(seq 1000); do sh -c true; done; t1=$(now)
  ss+=("$(ms "$t0" "$t1")")
  rm -rf "$work/adaptest-runs"
done
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
med_h=$(median "${hs[@]}"); med_s=$(median "${ss[@]}")
echo "overhead: 1000 true cases, median of 5: adaptest ${med_h} ms (${hs[*]}), shell loop ${med_s} ms (${ss[*]}), ratio $(python3 -c "print(round($med_h/$med_s,2))") (goal <= 1.5)"

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
