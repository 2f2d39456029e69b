//! Resource profile: a private redis-server sampled from `/proc` by a shell loop on the target
//! in an idle window and during a suite with a benchmark; thresholds in the plan judge the
//! `resources` item.

use crate::util::{Sandbox, alive, case, free_port, results, suite_toml};

const LOAD_SUITE: &str = r#"[[case]]
id = "load"
title = "write load"
level = "optional"
timeout = "2m"
bench = { op = "kv.set", key = "adaptest:res:{i}", value = "x", ttl_ms = 60000, ops = 60000, concurrency = 8, warmup = 10, min_ops_per_sec = 1 }
"#;

fn plan(port: u16, dir: &std::path::Path, thresholds: &str) -> String {
    let d = dir.display();
    format!(
        r#"[product]
name = "Redis"
vendor = "test"

[[target]]
id = "local"
kind = "local"

[[component]]
id = "cache"
kind = "redis"
port = {port}

[component.lifecycle]
start = "redis-server --bind 127.0.0.1 --port {port} --daemonize yes --pidfile {d}/redis.pid --dir {d} --save ''"
ready = "redis-cli -p {port} ping | grep -q PONG"
ready_timeout = "20s"
stop = "redis-cli -p {port} shutdown nosave || true; while [ -e {d}/redis.pid ] && kill -0 $(cat {d}/redis.pid) 2>/dev/null; do sleep 0.1; done"

[component.resources]
pid_file = "{d}/redis.pid"
sample_interval = "200ms"
idle_window = "2s"
{thresholds}

[[matrix]]
targets = ["local"]
components = ["cache"]
suites = ["t.load"]
"#
    )
}

fn metric(item: &serde_json::Value, name: &str) -> f64 {
    item["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {item}"))["value"]
        .as_f64()
        .unwrap()
}

fn run(thresholds: &str) -> (Sandbox, serde_json::Value, i32) {
    let sb = Sandbox::new();
    let data = sb.path().join("redis-data");
    std::fs::create_dir(&data).unwrap();
    sb.write(
        "suites/load.toml",
        &suite_toml("t.load", "load", "kv", LOAD_SUITE),
    );
    sb.write("plan.toml", &plan(free_port(), &data, thresholds));
    let r = sb.run_own_suites(&[]);
    let res = results(&sb.run_dir());
    let code = r.code;
    let pid: i32 = std::fs::read_to_string(data.join("redis.pid"))
        .map(|t| t.trim().parse().unwrap())
        .unwrap_or(0);
    assert!(pid == 0 || !alive(pid), "redis-server {pid} left running");
    (sb, res, code)
}

#[test]
fn idle_and_load_are_sampled_and_thresholds_judge_the_item() {
    let (sb, res, _) = run("cpu_idle_max = \"50%\"\nrss_max = \"2GiB\"");
    let item = case(&res, "local/cache/lifecycle", "resources");
    assert_eq!(item["status"], "passed", "{item}");
    assert!(metric(item, "idle/samples") >= 3.0, "{item}");
    assert!(metric(item, "t.load/samples") >= 1.0, "{item}");
    let idle = metric(item, "idle/cpu_pct.avg");
    let load = metric(item, "t.load/cpu_pct.max");
    assert!(load > idle, "load CPU {load} <= idle CPU {idle}");
    assert!(metric(item, "idle/rss_bytes.max") > 1_000_000.0, "{item}");
    assert!(metric(item, "idle/threads.min") >= 1.0, "{item}");
    assert!(metric(item, "idle/fds.min") >= 3.0, "{item}");
    assert!(metric(item, "t.load/machine_mem_pct.avg") > 0.0, "{item}");
    // The samples were streamed to the run directory, both phases named.
    let samples =
        std::fs::read_to_string(sb.run_dir().join("resources/local/cache.samples")).unwrap();
    assert!(
        samples.lines().any(|l| l.starts_with("idle\t")),
        "{samples}"
    );
    assert!(
        samples.lines().any(|l| l.starts_with("t.load\t")),
        "{samples}"
    );
    let html = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(html.contains("<svg"), "no resource chart in the report");

    // Thresholds set too low fail the item, naming what was missed.
    let (_sb, res, code) = run("cpu_idle_max = \"0%\"\nrss_max = \"1KiB\"");
    let item = case(&res, "local/cache/lifecycle", "resources");
    assert_eq!(item["status"], "failed", "{item}");
    let reason = item["reason"].as_str().unwrap();
    assert!(reason.contains("rss_max"), "{reason}");
    assert_ne!(code, 0);
}
