#!/usr/bin/env bash
# Benchmark of `sql` cases (numbers go into issue notes; nothing here asserts a time): one
# generated sqllogictest file (N inserts, N point queries with a result each, aggregates) run
#  1. library: through adaptest's adapter + sql case runner (harness example `sql_slt`) vs the
#     sqllogictest runner alone over a direct sqlx connection (adapters example
#     `slt_baseline`) — the same driver, so the difference is adaptest's own cost;
#  2. binary: `adaptest run` of a plan whose one case is that file (start-up, environment probe,
#     journal and reports included) vs the baseline process.
# Engines: this machine's PostgreSQL (5432, postgres, db test), MariaDB (3306, root, db test)
# and SQLite (a scratch file). Best of REPEAT runs each. Goal: ratio <= 1.1.
# Usage: bench/sql.sh [N=1000] [REPEAT=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
repeat=${2:-5}
cargo build --release -q -p adaptest --bin adaptest --example sql_slt
cargo build --release -q -p adaptest-adapters --example slt_baseline
dir="${CARGO_TARGET_DIR:-target}/release"
bin="$PWD/$dir/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the file
slt="$work/bench.slt"
{
  printf 'statement ok\ndrop table if exists adaptest_bench_slt\n\n'
  printf 'statement ok\ncreate table adaptest_bench_slt (id integer primary key, name varchar(40), v integer)\n\n'
  for i in $(seq "$n"); do printf 'statement ok\ninsert into adaptest_bench_slt values (%d, '"'"'名字 %d'"'"', %d)\n\n' "$i" "$i" $((i * 7)); done
  for i in $(seq "$n"); do printf 'query ITI\nselect id, name, v from adaptest_bench_slt where id = %d\n----\n%d 名字 %d %d\n\n' "$i" "$i" "$i" $((i * 7)); done
  printf 'query II\nselect count(*), sum(v) from adaptest_bench_slt\n----\n%d %d\n\n' "$n" $((7 * n * (n + 1) / 2))
  printf 'statement ok\ndrop table adaptest_bench_slt\n'
} > "$slt"
records=$((2 * n + 4))

best_ms() { # the smallest "NNN.N ms" figure of the output lines, or fail on FAILED
  if grep -q FAILED <<<"$1"; then echo "$1" >&2; exit 1; fi
  grep -o '[0-9.]* ms' <<<"$1" | sort -n | head -1 | cut -d' ' -f1
}
now() { date +%s%N; }

echo "sql bench: $records records ($n inserts, $n point queries), best of $repeat"
for engine in postgres mariadb sqlite; do
  case $engine in
    postgres) url="postgres://postgres@127.0.0.1:5432/test"; comp='kind = "postgres"\nuser = "postgres"\ndatabase = "test"' ;;
    mariadb) url="mysql://root@127.0.0.1:3306/test"; comp='kind = "mariadb"\nuser = "root"\ndatabase = "test"' ;;
    sqlite) url="sqlite://$work/baseline.db"; comp='kind = "sqlite"' ;;
  esac
  # 1. library
  base=$(best_ms "$("$dir/examples/slt_baseline" "$url" "$slt" --repeat "$repeat")")
  ours=$(best_ms "$("$dir/examples/sql_slt" "$engine" "$slt" --repeat "$repeat")")
  echo "  $engine library: adaptest ${ours} ms, sqllogictest+sqlx ${base} ms, ratio $(python3 -c "print(round($ours/$base, 3))")"
  # 2. binary
  mkdir -p "$work/s"
  printf '[suite]\nid = "bench.sql"\ntitle = "t"\ncomponent = "sql"\n\n[defaults]\ntimeout = "10m"\n\n[[case]]\nid = "file"\ntitle = "t"\nsql = "bench.slt"\n' > "$work/s/bench.toml"
  cp "$slt" "$work/s/bench.slt"
  printf '[[target]]\nid = "local"\nkind = "local"\n\n[[component]]\nid = "db"\n'"$comp"'\n\n[[matrix]]\ntargets = ["local"]\ncomponents = ["db"]\nsuites = ["bench.sql"]\n' > "$work/plan.toml"
  best_run=999999999; best_base=999999999
  for _ in $(seq "$repeat"); do
    t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s --no-builtin --format json >/dev/null); t1=$(now)
    rm -rf "$work/adaptest-runs"
    r=$(( (t1 - t0) / 1000000 )); [ "$r" -lt "$best_run" ] && best_run=$r
    t0=$(now); "$dir/examples/slt_baseline" "$url" "$slt" >/dev/null; t1=$(now)
    b=$(( (t1 - t0) / 1000000 )); [ "$b" -lt "$best_base" ] && best_base=$b
  done
  echo "  $engine binary:  adaptest run ${best_run} ms, baseline process ${best_base} ms, ratio $(python3 -c "print(round($best_run/$best_base, 3))")"
done
echo "(goal: ratio <= 1.1)"
