#!/usr/bin/env bash
# Benchmark of `sql` cases (numbers go into issue notes; nothing here asserts a time): one
# generated sqllogictest file (N inserts, N point queries with a result each, aggregates) run
#  1. library: through adaptest's adapter + sql case runner (harness example `sql_slt`) vs the
#     sqllogictest runner alone over a direct sqlx connection (adapters example
#     `slt_baseline`) — the same driver, so the difference is adaptest's own cost;
#  2. binary: `adaptest run` of a plan whose one case is that file (start-up, environment probe,
#     journal and reports included) vs the baseline process.
# Engines: this machine's PostgreSQL (5432, postgres, db test), MariaDB (3306, root, db test)
# and SQLite (a scratch file, WAL for both). Median of REPEAT interleaved runs. Goal: ratio <= 1.1.
# Usage: bench/sql.sh [N=1000] [REPEAT=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
repeat=${2:-5}
cargo build --release -q -p adaptest --bin adaptest --example sql_slt
cargo build --release -q -p adaptest-adapters --example slt_baseline
dir="${CARGO_TARGET_DIR:-target}/release"
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac
bin="$dir/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the file
slt="$work/bench.slt"
{
  printf 'statement ok\ndrop table if exists adaptest_bench_slt\n\n'
  printf 'statement ok\ncreate table adaptest_bench_slt (id integer primary key, name varchar(40), v integer)\n\n'
  # one transaction around the inserts: the runners are measured, not the disk's fsync
  printf 'statement ok\nbegin\n\n'
  for i in $(seq "$n"); do printf 'statement ok\ninsert into adaptest_bench_slt values (%d, '"'"'名字 %d'"'"', %d)\n\n' "$i" "$i" $((i * 7)); done
  printf 'statement ok\ncommit\n\n'
  for i in $(seq "$n"); do printf 'query ITI\nselect id, name, v from adaptest_bench_slt where id = %d\n----\n%d 名字 %d %d\n\n' "$i" "$i" "$i" $((i * 7)); done
  printf 'query II\nselect count(*), sum(v) from adaptest_bench_slt\n----\n%d %d\n\n' "$n" $((7 * n * (n + 1) / 2))
  printf 'statement ok\ndrop table adaptest_bench_slt\n'
} > "$slt"
records=$((2 * n + 6))

printed_ms() { # the "NNN.N ms" figure of a run's output line; fail on FAILED
  if grep -q FAILED <<<"$1"; then echo "$1" >&2; exit 1; fi
  grep -o '[0-9.]* ms' <<<"$1" | head -1 | cut -d' ' -f1
}
now() { date +%s%N; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
ratio() { python3 -c "print(round($1/$2, 3))"; }

echo "sql bench: $records records ($n inserts, $n point queries), median of $repeat interleaved runs"
for engine in postgres mariadb sqlite; do
  case $engine in
    postgres) url="postgres://postgres@127.0.0.1:5432/test"; comp='kind = "postgres"\nuser = "postgres"\ndatabase = "test"' ;;
    mariadb) url="mysql://root@127.0.0.1:3306/test"; comp='kind = "mariadb"\nuser = "root"\ndatabase = "test"' ;;
    sqlite) url="sqlite://$work/baseline.db"; comp='kind = "sqlite"' ;;
  esac
  mkdir -p "$work/s"
  printf '[suite]\nid = "bench.sql"\ntitle = "t"\ncomponent = "sql"\n\n[defaults]\ntimeout = "10m"\n\n[[case]]\nid = "file"\ntitle = "t"\nsql = "bench.slt"\n' > "$work/s/bench.toml"
  cp "$slt" "$work/s/bench.slt"
  printf '[[target]]\nid = "local"\nkind = "local"\n\n[[component]]\nid = "db"\n'"$comp"'\n\n[[matrix]]\ntargets = ["local"]\ncomponents = ["db"]\nsuites = ["bench.sql"]\n' > "$work/plan.toml"
  lib_base=(); lib_ours=(); bin_base=(); bin_ours=()
  for rep in $(seq "$repeat"); do
    # alternate which goes first, so both see the same background on average
    for which in $( [ $((rep % 2)) = 0 ] && echo "base ours" || echo "ours base"); do
      if [ "$which" = base ]; then
        lib_base+=("$(printed_ms "$("$dir/examples/slt_baseline" "$url" "$slt")")")
        t0=$(now); "$dir/examples/slt_baseline" "$url" "$slt" >/dev/null; t1=$(now)
        bin_base+=($(( (t1 - t0) / 1000000 )))
      else
        lib_ours+=("$(printed_ms "$("$dir/examples/sql_slt" "$engine" "$slt")")")
        t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --suites s --no-builtin --format json >/dev/null); t1=$(now)
        rm -rf "$work/adaptest-runs"
        bin_ours+=($(( (t1 - t0) / 1000000 )))
      fi
    done
  done
  lb=$(echo "${lib_base[*]}" | median); lo=$(echo "${lib_ours[*]}" | median)
  bb=$(echo "${bin_base[*]}" | median); bo=$(echo "${bin_ours[*]}" | median)
  echo "  $engine library: adaptest ${lo} ms, sqllogictest+sqlx ${lb} ms, ratio $(ratio "$lo" "$lb")"
  echo "  $engine binary:  adaptest run ${bo} ms, baseline process ${bb} ms, ratio $(ratio "$bo" "$bb") (difference $((bo - bb)) ms: start-up, environment probe, journal, reports)"
done
echo "(goal: ratio <= 1.1)"
