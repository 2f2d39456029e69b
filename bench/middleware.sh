#!/usr/bin/env bash
# Middleware benchmarks (numbers go into issue notes; nothing here asserts a time): adaptest's
# `bench` cases through the component adapters vs the servers' own tools, on loopback.
#  1. kv: 100,000 `kv.set` at concurrency 8 and 50 vs `redis-benchmark -t set -n 100000 -q`
#     (its default 50 connections, and -c 8)
#  2. pubsub: 100,000 MQTT QoS 0 publishes at concurrency 1 and 4 vs `mosquitto_pub -l` (one
#     connection, a line per message) and a loop of 500 `mosquitto_pub` (a connection each);
#     100,000 NATS publishes at concurrency 4
# Usage: bench/middleware.sh   (builds the release binary; starts missing servers first)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh start >/dev/null
cargo build --release -q -p adaptest
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/adaptest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }

mkdir -p "$work/suites"
cat >"$work/suites/kv.toml" <<'EOF'
[suite]
id = "bench.kv"
title = "kv"
component = "kv"

[[case]]
id = "set-c8"
title = "kv.set x100000, 8 connections"
timeout = "5m"
bench = { op = "kv.set", key = "adaptest:bench:{i}", value = "xxx", ttl_ms = 60000, ops = 100000, concurrency = 8, warmup = 1000 }

[[case]]
id = "set-c50"
title = "kv.set x100000, 50 connections"
timeout = "5m"
bench = { op = "kv.set", key = "adaptest:bench:{i}", value = "xxx", ttl_ms = 60000, ops = 100000, concurrency = 50, warmup = 1000 }
EOF
cat >"$work/suites/pubsub.toml" <<'EOF'
[suite]
id = "bench.pubsub"
title = "pubsub"
component = "pubsub"

[[case]]
id = "publish-c1"
title = "pubsub.publish x100000, 1 connection"
timeout = "5m"
bench = { op = "pubsub.publish", topic = "adaptest.bench", payload = "x", ops = 100000, concurrency = 1, warmup = 1000 }

[[case]]
id = "publish-c4"
title = "pubsub.publish x100000, 4 connections"
timeout = "5m"
bench = { op = "pubsub.publish", topic = "adaptest.bench", payload = "x", ops = 100000, concurrency = 4, warmup = 1000 }
EOF
cat >"$work/plan.toml" <<'EOF'
[[target]]
id = "local"
kind = "local"

[[component]]
id = "redis"
kind = "redis"

[[component]]
id = "mosquitto"
kind = "mqtt"

[[component]]
id = "nats"
kind = "nats"

[[matrix]]
targets = ["local"]
components = ["redis", "mosquitto", "nats"]
suites = ["bench.*"]
EOF
(cd "$work" && "$bin" run --plan plan.toml --suites suites --no-builtin --jobs 1 --format json >/dev/null)
python3 - "$work"/adaptest-runs/*/results.json <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for c in r["combinations"]:
    for k in c["cases"]:
        m = {x["name"]: x["value"] for x in k.get("metrics", [])}
        if not m:
            print(f"adaptest {c['component']:9} {k['id']:11} {k['status']}: {k.get('reason')}")
            continue
        print(f"adaptest {c['component']:9} {k['id']:11} {m['ops_per_sec']:9.0f} ops/s  p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms")
EOF

echo "redis-benchmark -t set -n 100000 -q (50 connections):"
redis-benchmark -t set -n 100000 -q | tr '\r' '\n' | grep -a 'requests per second' | tail -n1
echo "redis-benchmark -t set -n 100000 -q -c 8:"
redis-benchmark -t set -n 100000 -q -c 8 | tr '\r' '\n' | grep -a 'requests per second' | tail -n1
redis-cli --scan --pattern 'adaptest:bench:*' | head -n0 >/dev/null || true

t0=$(now)
seq 100000 | mosquitto_pub -l -t adaptest.bench -q 0
t1=$(now)
python3 -c "print(f'mosquitto_pub -l, 100000 lines, QoS 0: {100000 / (($t1 - $t0) / 1e9):.0f} msg/s')"
t0=$(now)
for i in $(seq 500); do mosquitto_pub -t adaptest.bench -m "$i" -q 0; done
t1=$(now)
python3 -c "print(f'mosquitto_pub loop, 500 processes, QoS 0: {500 / (($t1 - $t0) / 1e9):.0f} msg/s')"
