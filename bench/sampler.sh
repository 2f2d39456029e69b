#!/usr/bin/env bash
# Sampling cost of the resource profile's shell loop (harness/src/engine/resources.rs):
# CPU time (user+sys, the loop and its `sleep`s) per wall second, at 1 s and 100 ms intervals,
# sampling one process by pid file. Goal: under 1 % of one core at 1 s.
# Usage: bench/sampler.sh [seconds per interval, default 30]
set -euo pipefail
secs=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
sleep 100000 & target=$!
trap 'kill $target 2>/dev/null; rm -rf "$tmp"' EXIT
echo $target > "$tmp/pid"
# The loop exactly as the harness sends it (the text between `const SAMPLER: &str = r#"` and `"#;`).
sed -n '/^const SAMPLER: &str = r#"/,/^"#;/p' "$here/harness/src/engine/resources.rs" |
  sed '1s/^const SAMPLER: &str = r#"//; $d' > "$tmp/loop.sh"
for iv in 1 0.1; do
  rm -f "$tmp/stop"
  ( sleep "$secs"; : > "$tmp/stop" ) &
  stopper=$!
  start=$(date +%s.%N)
  TIMEFORMAT='%U %S'
  cpu=$( { time STOP="$tmp/stop" SEL=pid_file ARG="$tmp/pid" IV=$iv sh "$tmp/loop.sh" > "$tmp/out.$iv"; } 2>&1 )
  end=$(date +%s.%N)
  wait $stopper
  lines=$(grep -c '^s ' "$tmp/out.$iv")
  awk -v c="$cpu" -v s="$start" -v e="$end" -v iv="$iv" -v n="$lines" 'BEGIN {
    split(c, t, " "); wall = e - s; used = t[1] + t[2];
    printf "interval %ss: %d samples in %.1fs wall, %.3fs CPU = %.3f%% of one core\n", iv, n, wall, used, 100 * used / wall }'
done
