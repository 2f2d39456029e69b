//! Recovery item: a private redis-server (append-only file in a scratch dir) is SIGKILLed;
//! restarted by the lifecycle `start` it comes back with the key written before the kill;
//! when nothing restarts it, or its data was not persisted, the item fails and says why.

use crate::util::{Sandbox, alive, case, free_port, results, suite_toml};

fn plan(port: u16, dir: &std::path::Path, aof: &str, recovery: &str) -> String {
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
start = "redis-server --bind 127.0.0.1 --port {port} --daemonize yes --pidfile {d}/redis.pid --dir {d} --appendonly {aof} --appendfsync always --save ''"
ready = "redis-cli -p {port} ping | grep -q PONG"
ready_timeout = "20s"
stop = "redis-cli -p {port} shutdown nosave || true; while [ -e {d}/redis.pid ] && kill -0 $(cat {d}/redis.pid) 2>/dev/null; do sleep 0.1; done"

[component.recovery]
pid_file = "{d}/redis.pid"
prepare = "redis-cli -p {port} set adaptest:recovery kept | grep -q OK"
check = "[ \"$(redis-cli -p {port} get adaptest:recovery)\" = kept ]"
{recovery}

[[matrix]]
targets = ["local"]
components = ["cache"]
suites = ["t.up"]
"#
    )
}

fn run(aof: &str, recovery: &str) -> serde_json::Value {
    let sb = Sandbox::new();
    let data = sb.path().join("redis-data");
    std::fs::create_dir(&data).unwrap();
    sb.write(
        "suites/up.toml",
        &suite_toml(
            "t.up",
            "up",
            "kv",
            "[[case]]\nid = \"up\"\ntitle = \"up\"\nrun = \"true\"\n",
        ),
    );
    sb.write("plan.toml", &plan(free_port(), &data, aof, recovery));
    sb.run_own_suites(&[]);
    let res = results(&sb.run_dir());
    let pid: i32 = std::fs::read_to_string(data.join("redis.pid"))
        .map(|t| t.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    assert!(pid == 0 || !alive(pid), "redis-server {pid} left running");
    res
}

#[test]
fn a_killed_server_restarted_by_start_keeps_its_committed_key() {
    let res = run("yes", "restart = \"start\"\ntimeout = \"30s\"");
    let item = case(&res, "local/cache/lifecycle", "recovery");
    assert_eq!(item["status"], "passed", "{item}");
    let ms = item["metrics"][0]["value"].as_f64().unwrap();
    assert_eq!(item["metrics"][0]["name"], "recovery_ms");
    assert!(ms > 0.0, "{item}");
}

#[test]
fn nothing_restarting_it_fails_the_item() {
    let res = run("yes", "restart = \"service\"\ntimeout = \"2s\"");
    let item = case(&res, "local/cache/lifecycle", "recovery");
    assert_eq!(item["status"], "failed", "{item}");
    let reason = item["reason"].as_str().unwrap();
    assert!(reason.contains("no new main process"), "{reason}");
}

#[test]
fn data_not_persisted_before_the_kill_fails_the_item() {
    let res = run("no", "restart = \"start\"");
    let item = case(&res, "local/cache/lifecycle", "recovery");
    assert_eq!(item["status"], "failed", "{item}");
    let reason = item["reason"].as_str().unwrap();
    assert!(reason.contains("data written before the kill"), "{reason}");
}
