#!/usr/bin/env bash
# Wall time of the built-in os.basic suite on this host (`local`) and under QEMU user-mode
# emulation (`qemu-user`: the arm64 Debian rootfs and the LoongArch sysroot that
# scripts/build-payloads.sh builds), one combination each, run one after the other.
# Numbers go into issue notes; nothing here asserts a time.
# Usage: bench/qemu-user.sh [runs]   (default 1; builds the release binary and the payloads first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
cargo build --release -q -p adaptest
dir="${CARGO_TARGET_DIR:-target}/release"
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac
bin="$dir/adaptest"
paths=$(bash scripts/build-payloads.sh aarch64 loongarch64)
arm64=$(awk '$1 == "debian-bookworm-arm64" { print $2 }' <<<"$paths")
la64=$(awk '$1 == "loongarch64-sysroot" { print $2 }' <<<"$paths")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
bench() { # name target-table
  local name=$1 best=999999999 t0 t1 ms summary
  printf '%s\n[[matrix]]\ntargets = ["%s"]\ncomponents = ["os"]\nsuites = ["os.basic"]\n' "$2" "$name" > "$work/plan.toml"
  for _ in $(seq "$runs"); do
    rm -rf "$work/adaptest-runs"
    t0=$(now)
    (cd "$work" && "$bin" run --plan plan.toml --format json >"$work/events.jsonl" 2>/dev/null) || true
    t1=$(now)
    ms=$(( (t1 - t0) / 1000000 ))
    [ "$ms" -lt "$best" ] && best=$ms
  done
  summary=$(python3 - "$work"/adaptest-runs/*/results.json <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = {}
for c in r["combinations"]:
    for k in c["cases"]:
        n[k["status"]] = n.get(k["status"], 0) + 1
print(", ".join(f"{v} {k}" for k, v in sorted(n.items())))
EOF
)
  printf '%-22s %7.1f s   (%s)\n' "$name" "$(python3 -c "print($best/1000)")" "$summary"
}

echo "os.basic wall time, best of $runs run(s):"
bench local '[[target]]
id = "local"
kind = "local"'
bench arm64-qemu-user "[[target]]
id = \"arm64-qemu-user\"
kind = \"qemu-user\"
arch = \"aarch64\"
rootfs = \"$arm64\""
bench la64-qemu-user "[[target]]
id = \"la64-qemu-user\"
kind = \"qemu-user\"
arch = \"loongarch64\"
rootfs = \"$la64\""
