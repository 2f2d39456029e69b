#!/usr/bin/env bash
# Benchmarks of `qemu-system` targets (numbers go into issue notes; nothing here asserts a time):
#  1. image build: the recorded cold build time (image.json) and a cache hit
#  2. guest start per arch: cold boot (ADAPTEST_QEMU_WARM=off) vs warm start (restore of the
#     saved state), as the guest's environment reports them: to sshd answering
#     (extra.qemu_boot_seconds: the boot vs the restore) and to the first possible command
#     (extra.qemu_start_seconds: SSH login included, the same for both); goal warm >= 5x faster
#  3. os.basic wall time on an aarch64 guest (warm start included)
# Needs the images of scripts/test.sh. Usage: bench/qemu-system.sh [REPS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
cargo build --release -q -p adaptest
dir="${CARGO_TARGET_DIR:-target}/release"
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac
bin="$dir/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
median() { python3 -c 'import statistics,sys; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

arm_recipe=(--arch aarch64 --packages redis-server)
x86_recipe=(--arch x86_64)

# --- 1. image build
for recipe in "arm_recipe" "x86_recipe"; do
  declare -n r=$recipe
  dir=$("$bin" image path "${r[@]}")
  cold=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["build_seconds"])' "$dir/image.json")
  t0=$(now); "$bin" image build "${r[@]}" >/dev/null 2>&1; t1=$(now)
  echo "image build ${r[*]}: cold ${cold} s (recorded), cache hit $(( (t1 - t0) / 1000000 )) ms"
done

mkdir -p "$work/suites"
printf '[suite]\nid = "bench.one"\ntitle = "one"\ncomponent = "os"\n\n[[case]]\nid = "true"\ntitle = "true"\nrun = "true"\n' \
  > "$work/suites/one.toml"
plan() { # arch image suite
  printf '[[target]]\nid = "vm"\nkind = "qemu-system"\narch = "%s"\nimage = "%s"\nmemory_mb = 512\n\n[[matrix]]\ntargets = ["vm"]\ncomponents = ["os"]\nsuites = ["%s"]\n' \
    "$1" "$2" "$3" > "$work/plan.toml"
}
start_seconds() { # run dir → "mode boot-seconds start-seconds"
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["extra"]; print(e["qemu_start"], e["qemu_boot_seconds"], e["qemu_start_seconds"])' "$1/env/vm.json"
}

# --- 2. cold vs warm start
for arch in aarch64 x86_64; do
  if [ "$arch" = aarch64 ]; then dir=$("$bin" image path "${arm_recipe[@]}"); else dir=$("$bin" image path "${x86_recipe[@]}"); fi
  plan "$arch" "$dir" bench.one
  cold=(); warm=(); cold_login=(); warm_login=()
  for i in $(seq "$reps"); do
    rm -rf "$work/adaptest-runs"
    (cd "$work" && ADAPTEST_QEMU_WARM=off "$bin" run --plan plan.toml --suites suites --no-builtin --format json >/dev/null)
    read -r mode boot secs < <(start_seconds "$work"/adaptest-runs/*)
    cold+=("$boot"); cold_login+=("$secs")
  done
  # The first warm run may have to save the state first; it is not counted.
  rm -rf "$work/adaptest-runs"
  (cd "$work" && "$bin" run --plan plan.toml --suites suites --no-builtin --format json >/dev/null)
  for i in $(seq "$reps"); do
    rm -rf "$work/adaptest-runs"
    (cd "$work" && "$bin" run --plan plan.toml --suites suites --no-builtin --format json >/dev/null)
    read -r mode boot secs < <(start_seconds "$work"/adaptest-runs/*)
    [ "$mode" = warm ] || echo "warning: $arch run $i started $mode"
    warm+=("$boot"); warm_login+=("$secs")
  done
  c=$(median "${cold[@]}"); w=$(median "${warm[@]}")
  cl=$(median "${cold_login[@]}"); wl=$(median "${warm_login[@]}")
  echo "start $arch to sshd: cold boot ${c} s [${cold[*]}], warm restore ${w} s [${warm[*]}], ratio $(python3 -c "print(round($c/$w,1))")x (goal >= 5x)"
  echo "start $arch to first command: cold ${cl} s [${cold_login[*]}], warm ${wl} s [${warm_login[*]}], ratio $(python3 -c "print(round($cl/$wl,1))")x"
done

# --- 3. os.basic on aarch64
dir=$("$bin" image path "${arm_recipe[@]}")
plan aarch64 "$dir" os.basic
rm -rf "$work/adaptest-runs"
t0=$(now); (cd "$work" && "$bin" run --plan plan.toml --format json >/dev/null) || true; t1=$(now)
run=$(echo "$work"/adaptest-runs/*)
read -r mode boot secs < <(start_seconds "$run")
python3 - "$run" "$(( (t1 - t0) / 1000000 ))" "$mode" "$secs" <<'EOF'
import json, sys
run, wall_ms, mode, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.load(open(run + "/results.json"))
cases = [k for c in r["combinations"] for k in c["cases"]]
by = {}
for k in cases:
    by[k["status"]] = by.get(k["status"], 0) + 1
case_ms = sum(k.get("duration_ms", 0) for k in cases)
print(f"os.basic on aarch64 qemu-system: wall {wall_ms / 1000:.1f} s (start {mode} {secs} s), "
      f"cases {case_ms / 1000:.1f} s, {len(cases)} cases {by}")
EOF
