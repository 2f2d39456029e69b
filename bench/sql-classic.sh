#!/usr/bin/env bash
# Benchmark of a classic-dialect sqllogictest file on PostgreSQL (numbers go into issue notes;
# nothing here asserts a time): adaptest (`adaptest run` of a plan whose one `sql` case is the
# file) vs the `sqllogictest` CLI (the crate's own runner) on the same file, wall time and peak
# RSS (/usr/bin/time -v), median of REPEAT interleaved runs. Goal: wall ratio <= 1.1.
#
# The file: `hash-threshold 8`, a table, N/3 inserts, 2N/3 `query II rowsort` range queries with
# expected results (over eight values: `N values hashing to <md5>`) — the subset of the classic
# dialect both runners read, so both must pass it.
#
# The CLI is not part of this repository. Install it outside the repo, e.g.
#   CARGO_TARGET_DIR=/tmp/slt-build cargo install sqllogictest-bin --locked --root /tmp/slt
# and point SLT at it: SLT=/tmp/slt/bin/sqllogictest bench/sql-classic.sh
# Usage: bench/sql-classic.sh [RECORDS=3000] [REPEAT=5]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-3000}
repeat=${2:-5}
slt=${SLT:-$(command -v sqllogictest || true)}
if [ -z "$slt" ] || [ ! -x "$slt" ]; then
  echo "sqllogictest CLI not found: install it outside the repo with" >&2
  echo "  CARGO_TARGET_DIR=/tmp/slt-build cargo install sqllogictest-bin --locked --root /tmp/slt" >&2
  echo "and run SLT=/tmp/slt/bin/sqllogictest $0" >&2
  exit 2
fi
cargo build --release -q -p adaptest --bin adaptest
dir="${CARGO_TARGET_DIR:-target}/release"
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac
bin="$dir/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/s"
python3 - "$records" > "$work/s/classic.slt" <<'EOF'
import hashlib, sys
n = int(sys.argv[1])
inserts = n // 3
queries = n - inserts - 3
rows = [(i, (i * 37) % 101) for i in range(1, inserts + 1)]
print("hash-threshold 8\n")
print("statement ok\ndrop table if exists adaptest_bench_classic\n")
print("statement ok\ncreate table adaptest_bench_classic (a integer, b integer)\n")
for a, b in rows:
    print(f"statement ok\ninsert into adaptest_bench_classic values ({a}, {b})\n")
for q in range(queries - 1):
    lo = 1 + (q * 13) % inserts
    hi = lo + q % 7
    vals = sorted((str(a), str(b)) for a, b in rows if lo <= a <= hi)
    flat = [v for r in vals for v in r]
    print(f"query II rowsort\nselect a, b from adaptest_bench_classic where a between {lo} and {hi}\n----")
    if len(flat) > 8:
        h = hashlib.md5("".join(v + "\n" for v in flat).encode()).hexdigest()
        print(f"{len(flat)} values hashing to {h}\n")
    else:
        print("\n".join(" ".join(r) for r in vals) + "\n")
print("statement ok\ndrop table adaptest_bench_classic")
EOF
printf '[suite]\nid = "bench.classic"\ntitle = "t"\ncomponent = "sql"\n\n[defaults]\ntimeout = "10m"\n\n[[case]]\nid = "file"\ntitle = "t"\nsql = "classic.slt"\n' > "$work/s/bench.toml"
printf '[[target]]\nid = "local"\nkind = "local"\n\n[[component]]\nid = "db"\nkind = "postgres"\nuser = "postgres"\ndatabase = "test"\n\n[[matrix]]\ntargets = ["local"]\ncomponents = ["db"]\nsuites = ["bench.classic"]\n' > "$work/plan.toml"
n=$(grep -cE '^(statement|query) ' "$work/s/classic.slt")

# run CMD...: prints "wall_ms rss_kb"; fails when the command fails
measure() {
  local t0 t1
  t0=$(date +%s%N)
  if ! /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/out.txt" 2>&1; then
    cat "$work/out.txt" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 )) $(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
ratio() { python3 -c "print(round($1/$2, 3))"; }

ours_ms=(); ours_kb=(); cli_ms=(); cli_kb=()
for rep in $(seq "$repeat"); do
  for which in $( [ $((rep % 2)) = 0 ] && echo "cli ours" || echo "ours cli"); do
    if [ "$which" = cli ]; then
      read -r ms kb < <(measure "$slt" --color never --engine postgres --host 127.0.0.1 --port 5432 \
        --user postgres --db test "$work/s/classic.slt")
      cli_ms+=("$ms"); cli_kb+=("$kb")
    else
      read -r ms kb < <(cd "$work" && measure "$bin" run --plan plan.toml --suites s --no-builtin --format json)
      grep -q '"status":"passed"' "$work/out.txt" || { cat "$work/out.txt" >&2; exit 1; }
      rm -rf "$work/adaptest-runs"
      ours_ms+=("$ms"); ours_kb+=("$kb")
    fi
  done
done
om=$(echo "${ours_ms[*]}" | median); ok=$(echo "${ours_kb[*]}" | median)
cm=$(echo "${cli_ms[*]}" | median); ck=$(echo "${cli_kb[*]}" | median)
echo "classic file: $n records on PostgreSQL, median of $repeat interleaved runs"
echo "  wall: adaptest run ${om} ms, sqllogictest CLI ${cm} ms, ratio $(ratio "$om" "$cm") (goal <= 1.1)"
echo "  peak RSS: adaptest ${ok} kB, sqllogictest CLI ${ck} kB, ratio $(ratio "$ok" "$ck")"
echo "  (runs: adaptest ${ours_ms[*]} ms / ${ours_kb[*]} kB; CLI ${cli_ms[*]} ms / ${cli_kb[*]} kB)"
