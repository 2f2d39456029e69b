//! Middleware certification through the real binary: the built-in `mw.*` suites pass against
//! this machine's Redis, RabbitMQ, Mosquitto and NATS and a private nginx; a wrong password, a
//! port nobody listens on and a Redis killed mid-suite give clear failures with their cause,
//! never a hang, and the rest of the run finishes.

use crate::servers::{nginx, redis};
use crate::util::{
    Run, Sandbox, case, case_statuses, combination_ids, free_port, listening, reason, results,
    toml_list, wait_for,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn plan(components: &str, ids: &[&str], suites: &[&str]) -> String {
    format!(
        "[product]\nname = \"middleware\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n\
         [[target]]\nid = \"local\"\nkind = \"local\"\n\n{components}\n\
         [[matrix]]\ntargets = [\"local\"]\ncomponents = [{}]\nsuites = [{}]\n",
        toml_list(ids),
        toml_list(suites)
    )
}

#[test]
fn builtin_middleware_suites_pass_against_real_servers() {
    let sb = Sandbox::new();
    let web = nginx(&sb.path().join("nginx"), false);
    let components = format!(
        "[[component]]\nid = \"redis\"\nkind = \"redis\"\n\n\
         [[component]]\nid = \"rabbitmq\"\nkind = \"amqp\"\n\n\
         [[component]]\nid = \"mosquitto\"\nkind = \"mqtt\"\n\n\
         [[component]]\nid = \"nats\"\nkind = \"nats\"\n\n\
         [[component]]\nid = \"nginx\"\nkind = \"http\"\nport = {}\n",
        web.port
    );
    sb.write(
        "plan.toml",
        &plan(
            &components,
            &["redis", "rabbitmq", "mosquitto", "nats", "nginx"],
            &["mw.*"],
        ),
    );
    let started = Instant::now();
    let r = sb.run(&["run", "--plan", "plan.toml"]);
    r.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(120));
    let res = results(&sb.run_dir());
    let statuses = case_statuses(&res);
    let combos = combination_ids(&res);
    for want in [
        "local/redis/mw.kv",
        "local/rabbitmq/mw.queue",
        "local/mosquitto/mw.pubsub",
        "local/nats/mw.pubsub",
        "local/nginx/mw.http",
    ] {
        assert!(combos.contains(&want), "{want} in {combos:?}");
    }
    for (combo, id, status) in &statuses {
        let expected_skip = (combo == "local/nats/mw.pubsub"
            && ["qos1", "qos-downgrade", "retained"].contains(&id.as_str()))
            || (combo == "local/rabbitmq/mw.queue" && id == "durable-restart");
        let want = if expected_skip { "skipped" } else { "passed" };
        assert_eq!(
            status,
            want,
            "{combo}/{id}: {}",
            reason(case(&res, combo, id))
        );
    }
    assert_eq!(
        reason(case(&res, "local/nats/mw.pubsub", "retained")),
        "requires capability pubsub.retain that the component lacks"
    );
    // Benchmarks record their measurements.
    for (combo, id) in [
        ("local/redis/mw.kv", "set-throughput"),
        ("local/mosquitto/mw.pubsub", "publish-throughput"),
        ("local/nats/mw.pubsub", "publish-throughput"),
    ] {
        let metrics = case(&res, combo, id)["metrics"].as_array().unwrap().clone();
        let ops = metrics
            .iter()
            .find(|m| m["name"] == "ops_per_sec")
            .expect("ops_per_sec");
        assert!(
            ops["value"].as_f64().unwrap() > 0.0,
            "{combo}/{id}: {metrics:?}"
        );
        assert!(
            metrics.iter().any(|m| m["name"] == "p99_ms"),
            "{combo}/{id}: {metrics:?}"
        );
    }
}

#[test]
fn wrong_password_and_closed_port_fail_with_the_cause_and_the_rest_runs() {
    let sb = Sandbox::new();
    let locked = redis(sb.path(), Some("the-right-one"));
    let closed = free_port();
    let components = format!(
        "[[component]]\nid = \"locked\"\nkind = \"redis\"\nport = {}\npassword_env = \"ADAPTEST_E2E_REDIS_PASSWORD\"\n\n\
         [[component]]\nid = \"nobody\"\nkind = \"redis\"\nport = {closed}\n\n\
         [[component]]\nid = \"nats\"\nkind = \"nats\"\n",
        locked.port
    );
    sb.write(
        "plan.toml",
        &plan(
            &components,
            &["locked", "nobody", "nats"],
            &["mw.kv", "mw.pubsub"],
        ),
    );
    let started = Instant::now();
    let out = Run::from(
        sb.cmd(&["run", "--plan", "plan.toml"])
            .env("ADAPTEST_E2E_REDIS_PASSWORD", "a-wrong-one")
            .output()
            .unwrap(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the run took {:?}",
        started.elapsed()
    );
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !out.stdout.contains("a-wrong-one") && !out.stderr.contains("a-wrong-one"),
        "the password leaked"
    );
    let dir = sb.run_dir();
    let res = results(&dir);
    for (combo, id, status) in case_statuses(&res) {
        let c = case(&res, &combo, &id);
        let why = reason(c);
        eprintln!("{combo}/{id}: {status}: {why}");
        match combo.as_str() {
            "local/locked/mw.kv" => {
                assert_eq!(status, "error", "{id}: {why}");
                assert!(why.contains("password"), "{id}: {why}");
            }
            "local/nobody/mw.kv" => {
                assert_eq!(status, "error", "{id}: {why}");
                assert!(
                    why.contains("cannot connect") && why.contains(&closed.to_string()),
                    "{id}: {why}"
                );
            }
            "local/nats/mw.pubsub" => assert!(
                status == "passed" || status == "skipped",
                "{id}: {status} {why}"
            ),
            other => panic!("unexpected combination {other}"),
        }
    }
    let everything = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap()
        + &std::fs::read_to_string(dir.join("results.json")).unwrap();
    assert!(
        !everything.contains("a-wrong-one"),
        "the password reached the journal or results"
    );
}

#[test]
fn a_redis_killed_mid_suite_fails_the_remaining_cases_with_the_cause() {
    let sb = Sandbox::new();
    let mut victim = redis(sb.path(), None);
    let components = format!(
        "[[component]]\nid = \"victim\"\nkind = \"redis\"\nport = {}\n\n\
         [component.options]\ntimeout_ms = 3000\nconnect_timeout_ms = 3000\n\n\
         [[component]]\nid = \"nats\"\nkind = \"nats\"\n",
        victim.port
    );
    sb.write(
        "plan.toml",
        &plan(&components, &["victim", "nats"], &["mw.kv", "mw.pubsub"]),
    );
    let started = Instant::now();
    let mut child = sb
        .cmd(&["run", "--plan", "plan.toml", "--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the server once three kv cases have finished (the fourth, `ttl`, sleeps 600 ms).
    wait_for(
        "the kv cases did not start",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || {
            let journal = sb.journal_so_far();
            let done = journal
                .lines()
                .filter(|l| l.contains("local/victim/mw.kv"))
                .count();
            (done >= 3).then_some(())
        },
    );
    victim.kill();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run hung after the server was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(status.code(), Some(0));
    let res = results(&sb.run_dir());
    let kv: Vec<(String, String, String)> = case_statuses(&res)
        .into_iter()
        .filter(|(c, _, _)| c == "local/victim/mw.kv")
        .collect();
    assert_eq!(kv.len(), 11, "every kv case has a record: {kv:?}");
    for (_, id, status) in &kv[..3] {
        assert_eq!(status, "passed", "{id} ran before the kill");
    }
    let broken: Vec<&(String, String, String)> = kv
        .iter()
        .filter(|(_, _, s)| s != "passed" && s != "skipped")
        .collect();
    assert!(!broken.is_empty(), "cases after the kill failed: {kv:?}");
    for (combo, id, status) in broken {
        let why = reason(case(&res, combo, id));
        eprintln!("{id}: {status}: {why}");
        assert!(status == "error" || status == "failed", "{id}: {status}");
        assert!(
            why.contains("lost") || why.contains("cannot connect") || why.contains("refused"),
            "{id}: the reason names the cause: {why}"
        );
        assert!(
            why.contains("victim"),
            "{id}: the reason names the component: {why}"
        );
    }
    // The other component's suite finished normally.
    for (combo, id, status) in case_statuses(&res) {
        if combo == "local/nats/mw.pubsub" {
            assert!(status == "passed" || status == "skipped", "{id}: {status}");
        }
    }
}

/// A private RabbitMQ node (own name, ports, data and logs under `dir`), sharing the machine's
/// epmd; the engine starts, restarts and stops it through the plan's lifecycle commands.
struct RabbitNode {
    dir: PathBuf,
    node: String,
    port: u16,
}

impl RabbitNode {
    fn new(dir: &Path) -> RabbitNode {
        let port = free_port();
        let dist = free_port();
        let node = format!("adaptest-e2e-{port}@localhost");
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("env.sh"),
            format!(
                "export RABBITMQ_NODENAME={node} RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT={port} \
                 RABBITMQ_DIST_PORT={dist} RABBITMQ_MNESIA_BASE={d}/mnesia RABBITMQ_LOG_BASE={d}/log \
                 RABBITMQ_PID_FILE={d}/pid RABBITMQ_ENABLED_PLUGINS_FILE={d}/plugins \
                 RABBITMQ_CONFIG_FILE={d}/none RABBITMQ_ADVANCED_CONFIG_FILE={d}/none-advanced \
                 ERL_EPMD_ADDRESS=127.0.0.1\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("plugins"), "[].\n").unwrap();
        // The broker runs as the `rabbitmq` user.
        let st = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
        RabbitNode {
            dir: dir.to_path_buf(),
            node,
            port,
        }
    }

    fn component(&self) -> String {
        let (d, n) = (self.dir.display(), &self.node);
        format!(
            "[[component]]\nid = \"rabbit\"\nkind = \"amqp\"\nport = {port}\n\n\
             [component.lifecycle]\n\
             start = \". {d}/env.sh && rabbitmq-server -detached\"\n\
             ready = \"rabbitmqctl -q -n {n} await_startup --timeout 8\"\n\
             ready_timeout = \"90s\"\n\
             stop = \"rabbitmqctl -q -n {n} stop\"\n",
            port = self.port
        )
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        // Whatever the run left behind is ended by its PID.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// `mw.queue/durable-restart` without its `requires`, so that it runs whether or not the engine
/// sees the component's runtime `lifecycle` capability yet.
const DURABLE_SUITE: &str = r#"[suite]
id = "t.durable"
title = "durable restart"
component = "queue"

[[case]]
id = "durable-restart"
title = "a persistent message in a durable queue survives a broker restart"
timeout = "3m"
steps = [
  { op = "queue.declare", queue = "adaptest.e2e.durable", durable = true },
  { op = "queue.purge", queue = "adaptest.e2e.durable" },
  { op = "queue.publish", queue = "adaptest.e2e.durable", payload = "survivor", persistent = true, expect = { confirmed = true } },
  { op = "queue.publish", queue = "adaptest.e2e.durable", payload = "transient" },
  { op = "component.restart" },
  { op = "queue.consume", queue = "adaptest.e2e.durable", within_ms = 10000, expect = { payload = "survivor", persistent = true } },
  { op = "queue.consume", queue = "adaptest.e2e.durable", within_ms = 500, expect_error = "no message in queue" },
  { op = "queue.delete", queue = "adaptest.e2e.durable" },
]
"#;

#[test]
fn a_durable_message_survives_a_broker_restart() {
    let sb = Sandbox::new();
    let node = RabbitNode::new(&sb.path().join("rabbit"));
    sb.write("suites/durable.toml", DURABLE_SUITE);
    sb.write(
        "plan.toml",
        &plan(&node.component(), &["rabbit"], &["mw.queue", "t.durable"]),
    );
    let started = Instant::now();
    // One combination at a time: a restart breaks every other connection to the broker.
    let r = sb.run(&[
        "run",
        "--plan",
        "plan.toml",
        "--suites",
        "suites",
        "--jobs",
        "1",
    ]);
    let res = results(&sb.run_dir());
    for (combo, id, status) in case_statuses(&res) {
        let why = reason(case(&res, &combo, &id));
        if combo == "local/rabbit/mw.queue" && id == "durable-restart" && status == "skipped" {
            // The engine judges `requires` from the kind's static capabilities until the
            // adapter exists; the user suite above runs the same steps regardless.
            assert!(why.contains("lifecycle"), "{why}");
            continue;
        }
        assert_eq!(status, "passed", "{combo}/{id}: {why}\n{}", r.stderr);
    }
    r.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(240));
    assert!(
        !listening(node.port),
        "the lifecycle stop ended the private broker"
    );
}

#[test]
fn the_loopback_example_plan_is_valid() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/loopback-plan.toml");
    let sb = Sandbox::new();
    let r = sb.run(&["plan", "show", plan.to_str().unwrap()]);
    r.expect_code(0);
    for combo in [
        "local/postgres/db.sql-core",
        "local/mariadb/db.sql-core",
        "local/redis/mw.kv",
        "local/rabbitmq/mw.queue",
        "local/mosquitto/mw.pubsub",
        "local/nats/mw.pubsub",
        "local/nginx/mw.http",
    ] {
        assert!(r.stdout.contains(combo), "{combo} in:\n{}", r.stdout);
    }
}
