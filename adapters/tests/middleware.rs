//! Integration tests of the middleware component adapters against real servers on loopback:
//! the shared Redis (6379), RabbitMQ (5672), Mosquitto (1883) and NATS (4222) the machine runs,
//! and private instances (nginx, and Redis/Mosquitto/NATS with passwords or to be killed) that a
//! test starts on a free port and kills by PID.
//!
//! Faults must give a clear error quickly, never a hang: every test bounds itself.
//!
//! (long because one test binary for all middleware adapters: Redis, RabbitMQ, MQTT, NATS and HTTP share the private-server helpers and one build)

use adaptest_adapters::component::{
    self, ComponentConfig, ComponentError, Endpoint, Secret, Session,
};
use adaptest_adapters::target::LocalTarget;
use serde_json::{Map, Value, json};
use servers::{Server, free_port};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tests/support/servers.rs"]
mod servers;

// ---------------------------------------------------------------- helpers

fn cfg(kind: &str) -> ComponentConfig {
    ComponentConfig {
        id: format!("test-{kind}"),
        kind: kind.into(),
        ..Default::default()
    }
}

fn login(kind: &str, user: &str, password: &str) -> ComponentConfig {
    ComponentConfig {
        user: Some(user.into()),
        password: Some(Secret::new(password)),
        ..cfg(kind)
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        target: Arc::new(LocalTarget::new("host")),
        workdir: std::env::temp_dir().display().to_string(),
    }
}

async fn open(cfg: &ComponentConfig, port: u16) -> Result<Box<dyn Session>, ComponentError> {
    let c = component::create(cfg).expect("kind known").expect("not os");
    c.open(&endpoint(port)).await
}

async fn open_ok(cfg: &ComponentConfig, port: u16) -> Box<dyn Session> {
    match open(cfg, port).await {
        Ok(s) => s,
        Err(e) => panic!("opening {} on {port}: {e}", cfg.kind),
    }
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("args must be an object: {other}"),
    }
}

async fn run(s: &mut Box<dyn Session>, op: &str, a: Value) -> Result<Value, ComponentError> {
    s.execute(op, &args(a)).await
}

async fn ok(s: &mut Box<dyn Session>, op: &str, a: Value) -> Value {
    match run(s, op, a.clone()).await {
        Ok(v) => v,
        Err(e) => panic!("{op} {a}: {e}"),
    }
}

/// `pubsub.publish`, which must succeed: its result.
async fn publish(s: &mut Box<dyn Session>, a: Value) -> Value {
    ok(s, "pubsub.publish", a).await
}

/// `pubsub.expect`, which must receive a message: the message.
async fn receive(s: &mut Box<dyn Session>, a: Value) -> Value {
    ok(s, "pubsub.expect", a).await
}

/// `queue.consume`, which must receive a message: the message.
async fn consume(s: &mut Box<dyn Session>, a: Value) -> Value {
    ok(s, "queue.consume", a).await
}

/// A unique name for keys, topics and queues, so reruns and parallel tests do not collide.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory for a private server, removed with it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("adaptest-mw-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn private_redis(password: Option<&str>) -> Server {
    let dir = scratch("redis");
    servers::redis(&dir, password).removing(dir)
}

fn private_mosquitto(user: Option<(&str, &str)>) -> Server {
    let port = free_port();
    let dir = scratch("mosquitto");
    let mut conf = format!("user root\nlistener {port} 127.0.0.1\npersistence false\n");
    if let Some((u, p)) = user {
        let pwfile = dir.join("passwd");
        let st = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&pwfile)
            .args([u, p])
            .status()
            .expect("mosquitto_passwd");
        assert!(st.success());
        conf.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            pwfile.display()
        ));
    } else {
        conf.push_str("allow_anonymous true\n");
    }
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(dir.join("mosquitto.conf"));
    Server::start("mosquitto", port, &dir.join("server.log"), &mut cmd).removing(dir)
}

fn private_nats(user: Option<(&str, &str)>) -> Server {
    let port = free_port();
    let dir = scratch("nats");
    let mut cmd = Command::new("nats-server");
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((u, p)) = user {
        cmd.args(["--user", u, "--pass", p]);
    }
    Server::start("nats-server", port, &dir.join("server.log"), &mut cmd).removing(dir)
}

/// nginx serving the test docroot (and `/upload`, `/hello`).
fn private_nginx() -> Server {
    let dir = scratch("nginx");
    servers::nginx(&dir, false).removing(dir)
}

/// The same over TLS, and the certificate of the CA that signed its certificate.
fn private_nginx_tls() -> (Server, PathBuf) {
    let dir = scratch("nginx-tls");
    let ca = dir.join("ca.pem");
    (servers::nginx(&dir, true).removing(dir), ca)
}

fn assert_connect(res: Result<Box<dyn Session>, ComponentError>, needles: &[&str]) -> String {
    match res {
        Ok(_) => panic!("expected a connect error"),
        Err(e @ ComponentError::Connect { .. }) => {
            let msg = e.to_string();
            eprintln!("connect error: {msg}");
            let lower = msg.to_lowercase();
            assert!(
                needles.iter().any(|n| lower.contains(n)),
                "connect error `{msg}` mentions none of {needles:?}"
            );
            msg
        }
        Err(other) => panic!("expected a Connect error, got {other:?}"),
    }
}

fn assert_lost(res: Result<Value, ComponentError>) -> String {
    match res {
        Err(e @ ComponentError::Lost { .. }) => {
            eprintln!("lost: {e}");
            e.to_string()
        }
        other => panic!("expected Lost, got {other:?}"),
    }
}

/// Run `op`, which must fail with an operation error containing `needle`: the error's message.
async fn assert_operation(s: &mut Box<dyn Session>, op: &str, a: Value, needle: &str) -> String {
    match run(s, op, a).await {
        Err(ComponentError::Operation(m)) => {
            assert!(m.contains(needle), "operation error `{m}` lacks `{needle}`");
            m
        }
        other => panic!("expected an Operation error containing `{needle}`, got {other:?}"),
    }
}

/// Opening `c` on a port nobody listens on is a connect error that says so (within 20 s).
async fn assert_refused(c: &ComponentConfig) {
    let res = bounded("connect to a closed port", 20, open(c, free_port())).await;
    assert_connect(res, &["cannot connect", "refused"]);
}

/// Bound a whole fault scenario: a hang is a failure, not a stuck test run.
async fn bounded<T>(what: &str, secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {secs} s"))
}

// ---------------------------------------------------------------- kinds

#[test]
fn middleware_kinds_are_registered_with_ports_and_capabilities() {
    for (kind, port, cap) in [
        ("redis", 6379, "kv"),
        ("amqp", 5672, "queue"),
        ("mqtt", 1883, "pubsub"),
        ("nats", 4222, "pubsub"),
        ("http", 80, "http"),
    ] {
        let k = component::component_kind(kind).unwrap_or_else(|| panic!("{kind} registered"));
        assert_eq!(k.default_port, Some(port));
        assert!(k.capabilities.contains(&cap));
        for c in k.capabilities {
            assert!(
                component::KNOWN_CAPABILITIES.contains(c),
                "{c} is a known capability"
            );
        }
    }
    let mut c = cfg("redis");
    c.lifecycle.stop = Some("redis-cli shutdown".into());
    c.lifecycle.start = Some("redis-server --daemonize yes".into());
    let comp = component::create(&c).unwrap().unwrap();
    assert!(comp.capabilities().contains(&"lifecycle".to_string()));
}

#[test]
fn secrets_do_not_leak_through_debug() {
    let mut c = cfg("redis");
    c.password = Some(Secret::new("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
}

// ---------------------------------------------------------------- redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kv_operations_round_trip() {
    let mut s = open_ok(&cfg("redis"), 6379).await;
    let v = s.version().await.unwrap();
    assert!(v.chars().next().unwrap().is_ascii_digit(), "version {v}");
    let key = unique("adaptest:k");
    assert_eq!(
        ok(&mut s, "kv.set", json!({"key": key, "value": "值"})).await,
        json!(true)
    );
    assert_eq!(ok(&mut s, "kv.get", json!({"key": key})).await, json!("值"));
    assert_eq!(
        ok(&mut s, "kv.exists", json!({"key": key})).await,
        json!(true)
    );
    assert_eq!(ok(&mut s, "kv.ttl", json!({"key": key})).await, json!(-1));
    assert_eq!(
        ok(&mut s, "kv.expire", json!({"key": key, "ttl_ms": 60000})).await,
        json!(true)
    );
    let ttl = ok(&mut s, "kv.ttl", json!({"key": key}))
        .await
        .as_i64()
        .unwrap();
    assert!((1..=60000).contains(&ttl), "ttl {ttl}");
    assert_eq!(ok(&mut s, "kv.del", json!({"key": key})).await, json!(1));
    assert_eq!(ok(&mut s, "kv.get", json!({"key": key})).await, Value::Null);
    assert_eq!(ok(&mut s, "kv.ttl", json!({"key": key})).await, Value::Null);
    let n = unique("adaptest:n");
    assert_eq!(ok(&mut s, "kv.incr", json!({"key": n})).await, json!(1));
    assert_eq!(
        ok(&mut s, "kv.incr", json!({"key": n, "by": 41})).await,
        json!(42)
    );
    ok(
        &mut s,
        "kv.set",
        json!({"key": n, "value": "x", "ttl_ms": 100}),
    )
    .await;
    // The server expires the key on its own clock: ask until it is gone (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&mut s, "kv.get", json!({"key": n})).await != Value::Null {
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::task::yield_now().await;
    }
    // A server-side refusal is an operation error, and the session goes on.
    ok(&mut s, "kv.set", json!({"key": n, "value": "not a number"})).await;
    assert_operation(&mut s, "kv.incr", json!({"key": n}), "not an integer").await;
    assert_eq!(ok(&mut s, "kv.del", json!({"key": n})).await, json!(1));
    assert!(matches!(
        run(&mut s, "pubsub.publish", json!({"topic": "t"})).await,
        Err(ComponentError::Unsupported { .. })
    ));
    assert!(matches!(
        run(&mut s, "kv.get", json!({})).await,
        Err(ComponentError::Arguments { .. })
    ));
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wrong_password_says_so() {
    let server = private_redis(Some("right-password"));
    let mut c = cfg("redis");
    c.password = Some(Secret::new("wrong-password"));
    let msg = bounded("wrong password", 20, open(&c, server.port)).await;
    let msg = assert_connect(msg, &["password"]);
    assert!(!msg.contains("wrong-password"), "the secret leaked: {msg}");
    c.password = Some(Secret::new("right-password"));
    let mut s = open_ok(&c, server.port).await;
    assert_eq!(
        ok(&mut s, "kv.set", json!({"key": "a", "value": "1"})).await,
        json!(true)
    );
    // No password at all against a server that requires one.
    let res = bounded("no password", 20, async {
        let mut s = open(&cfg("redis"), server.port).await?;
        s.execute("kv.get", &args(json!({"key": "a"}))).await
    })
    .await;
    match res {
        Err(e) => assert!(e.to_string().to_lowercase().contains("auth"), "{e}"),
        Ok(v) => panic!("an unauthenticated GET succeeded: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_not_listening_is_a_quick_connect_error() {
    let started = Instant::now();
    assert_refused(&cfg("redis")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_session_is_lost_not_a_hang() {
    let mut server = private_redis(None);
    let mut c = cfg("redis");
    c.options.insert("timeout_ms".into(), "3000".into());
    let mut s = open_ok(&c, server.port).await;
    ok(&mut s, "kv.set", json!({"key": "k", "value": "v"})).await;
    server.kill();
    let res = bounded(
        "an op after the kill",
        20,
        run(&mut s, "kv.get", json!({"key": "k"})),
    )
    .await;
    let msg = assert_lost(res);
    assert!(msg.contains("test-redis"), "{msg}");
}

// ---------------------------------------------------------------- mqtt

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_subscribe_qos_and_retain() {
    let c = cfg("mqtt");
    let mut a = open_ok(&c, 1883).await;
    let mut b = open_ok(&c, 1883).await;
    let v = a.version().await.unwrap();
    assert!(v.to_lowercase().contains("mosquitto"), "version {v}");
    let topic = format!("adaptest/{}", unique("t"));
    assert_eq!(
        ok(
            &mut b,
            "pubsub.subscribe",
            json!({"topic": topic, "qos": 1})
        )
        .await["qos"],
        json!(1)
    );
    publish(&mut a, json!({"topic": topic, "payload": "你好 0"})).await;
    let m = receive(&mut b, json!({"topic": topic, "within_ms": 3000})).await;
    assert_eq!(m["payload"], json!("你好 0"));
    assert_eq!(m["qos"], json!(0));
    assert_eq!(m["retain"], json!(false));
    let p = publish(&mut a, json!({"topic": topic, "payload": "q1", "qos": 1})).await;
    assert_eq!(p["acked"], json!(true));
    let m = receive(
        &mut b,
        json!({"topic": topic, "payload": "q1", "within_ms": 3000}),
    )
    .await;
    assert_eq!(m["qos"], json!(1));
    // Wildcard subscriptions deliver concrete topics.
    let base = format!("adaptest/{}", unique("w"));
    ok(
        &mut b,
        "pubsub.subscribe",
        json!({"topic": format!("{base}/+")}),
    )
    .await;
    publish(
        &mut a,
        json!({"topic": format!("{base}/x"), "payload": "w"}),
    )
    .await;
    let m = receive(
        &mut b,
        json!({"topic": format!("{base}/+"), "within_ms": 3000}),
    )
    .await;
    assert_eq!(m["topic"], json!(format!("{base}/x")));
    // Retained: a later subscriber gets the last retained message, flagged as such.
    let rt = format!("adaptest/{}", unique("r"));
    publish(
        &mut a,
        json!({"topic": rt, "payload": "kept", "qos": 1, "retain": true}),
    )
    .await;
    let mut late = open_ok(&c, 1883).await;
    ok(&mut late, "pubsub.subscribe", json!({"topic": rt})).await;
    let m = receive(&mut late, json!({"topic": rt, "within_ms": 3000})).await;
    assert_eq!(m["retain"], json!(true));
    assert_eq!(m["payload"], json!("kept"));
    publish(&mut a, json!({"topic": rt, "payload": "", "retain": true})).await;
    // Nothing comes: a clear operation error after the wait.
    let started = Instant::now();
    let quiet = format!("adaptest/{}", unique("quiet"));
    ok(&mut b, "pubsub.subscribe", json!({"topic": quiet})).await;
    let msg = assert_operation(
        &mut b,
        "pubsub.expect",
        json!({"topic": quiet, "within_ms": 300}),
        "no message on",
    )
    .await;
    assert!(msg.ends_with("within 300 ms"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(3));
    ok(&mut b, "pubsub.unsubscribe", json!({"topic": topic})).await;
    publish(&mut a, json!({"topic": topic, "payload": "after"})).await;
    assert_operation(
        &mut b,
        "pubsub.expect",
        json!({"topic": topic, "within_ms": 300}),
        "no message",
    )
    .await;
    // A large payload goes through.
    ok(&mut b, "pubsub.subscribe", json!({"topic": quiet})).await;
    publish(
        &mut a,
        json!({"topic": quiet, "payload_size": 1 << 20, "qos": 1}),
    )
    .await;
    let m = receive(&mut b, json!({"topic": quiet, "within_ms": 5000})).await;
    assert_eq!(m["payload_len"], json!(1 << 20));
    for s in [a, b, late] {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_wrong_password_says_so() {
    let server = private_mosquitto(Some(("certifier", "s3cret")));
    let mut c = login("mqtt", "certifier", "wrong");
    let res = bounded("wrong password", 20, open(&c, server.port)).await;
    assert_connect(res, &["password", "not authorized"]);
    c.password = Some(Secret::new("s3cret"));
    let mut s = open_ok(&c, server.port).await;
    publish(&mut s, json!({"topic": "x", "payload": "y", "qos": 1})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_not_listening_and_killed_broker() {
    assert_refused(&cfg("mqtt")).await;

    let mut server = private_mosquitto(None);
    let mut c = cfg("mqtt");
    c.options.insert("timeout_ms".into(), "3000".into());
    let mut s = open_ok(&c, server.port).await;
    ok(&mut s, "pubsub.subscribe", json!({"topic": "k"})).await;
    server.kill();
    let res = bounded("publish after the kill", 20, async {
        // The first publish may still be written into the dying socket; the loss shows at once after.
        let mut last = Ok(Value::Null);
        for _ in 0..2 {
            last = run(
                &mut s,
                "pubsub.publish",
                json!({"topic": "k", "payload": "v", "qos": 1}),
            )
            .await;
            if last.is_err() {
                break;
            }
        }
        last
    })
    .await;
    assert_lost(res);
    let res = bounded(
        "expect after the kill",
        20,
        run(
            &mut s,
            "pubsub.expect",
            json!({"topic": "k", "within_ms": 200}),
        ),
    )
    .await;
    assert_lost(res);
}

// ---------------------------------------------------------------- nats

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_pubsub_request_reply_and_jetstream() {
    let c = cfg("nats");
    let mut a = open_ok(&c, 4222).await;
    let mut b = open_ok(&c, 4222).await;
    assert!(a.version().await.unwrap().starts_with("nats-server 2."));
    let subject = unique("adaptest.t").replace('-', "_");
    ok(&mut b, "pubsub.subscribe", json!({"topic": subject})).await;
    publish(&mut a, json!({"topic": subject, "payload": "你好"})).await;
    let m = receive(&mut b, json!({"topic": subject, "within_ms": 3000})).await;
    assert_eq!(m["payload"], json!("你好"));
    assert!(matches!(
        run(
            &mut a,
            "pubsub.publish",
            json!({"topic": subject, "payload": "x", "qos": 1})
        )
        .await,
        Err(ComponentError::Unsupported { .. })
    ));
    assert_operation(
        &mut b,
        "pubsub.expect",
        json!({"topic": "adaptest.nothing", "within_ms": 200}),
        "no message on adaptest.nothing within 200 ms",
    )
    .await;
    // Request/reply: b answers, a asks.
    let svc = unique("adaptest.svc").replace('-', "_");
    ok(
        &mut b,
        "rpc.serve",
        json!({"subject": svc, "reply": "pong"}),
    )
    .await;
    assert_eq!(
        ok(
            &mut a,
            "rpc.request",
            json!({"subject": svc, "payload": "ping", "within_ms": 3000})
        )
        .await,
        json!("pong")
    );
    assert_operation(
        &mut a,
        "rpc.request",
        json!({"subject": "adaptest.nobody.home", "within_ms": 1000}),
        "no responders",
    )
    .await;
    // JetStream.
    let stream = unique("ADAPTEST").replace('-', "_");
    let subj = format!("{}.in", stream.to_lowercase());
    ok(
        &mut a,
        "stream.create",
        json!({"stream": stream, "subjects": [subj], "storage": "memory"}),
    )
    .await;
    let ack = ok(
        &mut a,
        "stream.publish",
        json!({"subject": subj, "payload": "one"}),
    )
    .await;
    assert_eq!(ack["seq"], json!(1));
    let ack = ok(
        &mut a,
        "stream.publish",
        json!({"subject": subj, "payload": "two"}),
    )
    .await;
    assert_eq!(ack["seq"], json!(2));
    let m = ok(&mut b, "stream.get", json!({"stream": stream, "seq": 2})).await;
    assert_eq!(m["payload"], json!("two"));
    assert!(
        run(&mut b, "stream.get", json!({"stream": stream, "seq": 99}))
            .await
            .is_err()
    );
    assert_eq!(
        ok(&mut a, "stream.delete", json!({"stream": stream})).await,
        json!(true)
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_wrong_password_not_listening_and_killed_server() {
    let server = private_nats(Some(("certifier", "s3cret")));
    let c = login("nats", "certifier", "wrong");
    let res = bounded("wrong password", 20, open(&c, server.port)).await;
    assert_connect(res, &["password", "authorization"]);
    drop(server);

    assert_refused(&cfg("nats")).await;

    let mut server = private_nats(None);
    let mut s = open_ok(&cfg("nats"), server.port).await;
    ok(&mut s, "pubsub.subscribe", json!({"topic": "k"})).await;
    server.kill();
    let res = bounded("after the kill", 20, async {
        // The client notices the dead socket within moments; poll until it does.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = run(
                &mut s,
                "pubsub.publish",
                json!({"topic": "k", "payload": "v"}),
            )
            .await;
            if r.is_err() || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_lost(res);
}

// ---------------------------------------------------------------- amqp

fn rabbit() -> ComponentConfig {
    login("amqp", "guest", "guest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_queue_declare_publish_consume_ack() {
    let mut a = open_ok(&rabbit(), 5672).await;
    let mut b = open_ok(&rabbit(), 5672).await;
    let v = a.version().await.unwrap();
    assert!(v.starts_with("RabbitMQ 3."), "version {v}");
    let q = unique("adaptest.q");
    let d = ok(&mut a, "queue.declare", json!({"queue": q})).await;
    assert_eq!(d["messages"], json!(0));
    ok(
        &mut a,
        "queue.publish",
        json!({"queue": q, "payload": "消息 1"}),
    )
    .await;
    ok(
        &mut a,
        "queue.publish",
        json!({"queue": q, "payload": "two", "persistent": true}),
    )
    .await;
    let m = consume(&mut b, json!({"queue": q, "within_ms": 3000})).await;
    assert_eq!(m["payload"], json!("消息 1"));
    assert_eq!(m["redelivered"], json!(false));
    // Rejected: back in the queue, then redelivered.
    let m = consume(&mut b, json!({"queue": q, "within_ms": 3000, "ack": false})).await;
    assert_eq!(m["payload"], json!("two"));
    assert_eq!(m["persistent"], json!(true));
    let m = consume(&mut b, json!({"queue": q, "within_ms": 3000})).await;
    assert_eq!(m["payload"], json!("two"));
    assert_eq!(m["redelivered"], json!(true));
    let started = Instant::now();
    assert_operation(
        &mut b,
        "queue.consume",
        json!({"queue": q, "within_ms": 300}),
        &format!("no message in queue {q} within 300 ms"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    ok(&mut a, "queue.publish", json!({"queue": q, "payload": "x"})).await;
    assert_eq!(
        ok(&mut a, "queue.purge", json!({"queue": q})).await,
        json!(1)
    );
    // A refused operation closes the channel on the broker; the next step still works.
    assert_operation(
        &mut a,
        "queue.declare",
        json!({"queue": q, "durable": true}),
        "PRECONDITION_FAILED",
    )
    .await;
    assert_operation(
        &mut a,
        "queue.publish",
        json!({"queue": unique("adaptest.none"), "payload": "x"}),
        "returned",
    )
    .await;
    assert_eq!(
        ok(&mut a, "queue.delete", json!({"queue": q})).await,
        json!(0)
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_wrong_password_and_not_listening() {
    let mut c = rabbit();
    c.password = Some(Secret::new("not-guest"));
    let res = bounded("wrong password", 30, open(&c, 5672)).await;
    let msg = assert_connect(res, &["password"]);
    assert!(!msg.contains("not-guest"), "the secret leaked: {msg}");
    assert_refused(&rabbit()).await;
}

// ---------------------------------------------------------------- http

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_headers_bodies_and_keep_alive() {
    let server = private_nginx();
    let c = cfg("http");
    let mut s = open_ok(&c, server.port).await;
    assert!(s.version().await.unwrap().starts_with("nginx"));
    let r = ok(&mut s, "http.request", json!({"path": "/"})).await;
    assert_eq!(r["status"], json!(200));
    assert!(r["body"].as_str().unwrap().contains("适配"));
    assert_eq!(r["headers"]["content-type"], json!("text/html"));
    let r2 = ok(&mut s, "http.request", json!({"path": "/hello"})).await;
    assert_eq!(r2["headers"]["x-adaptest"], json!("yes"));
    assert_eq!(r2["connection_reused"], json!(true), "keep-alive: {r2}");
    // Reuse is decided after the previous exchange has finished, never by a race: every one of
    // many back-to-back requests goes over the kept-alive connection...
    for i in 0..200 {
        let r = ok(&mut s, "http.request", json!({"path": "/hello"})).await;
        assert_eq!(r["connection_reused"], json!(true), "request {i}: {r}");
    }
    // ...until the client asks the server to close it: the next request needs a new one.
    let r = ok(
        &mut s,
        "http.request",
        json!({"path": "/hello", "headers": {"Connection": "close"}}),
    )
    .await;
    assert_eq!(r["connection_reused"], json!(true), "{r}");
    assert_eq!(r["headers"]["connection"], json!("close"), "{r}");
    let r = ok(&mut s, "http.request", json!({"path": "/hello"})).await;
    assert_eq!(
        r["connection_reused"],
        json!(false),
        "after Connection: close: {r}"
    );
    let r = ok(&mut s, "http.request", json!({"path": "/missing"})).await;
    assert_eq!(r["status"], json!(404));
    let r = ok(&mut s, "http.request", json!({"path": "/big.bin"})).await;
    assert_eq!(r["status"], json!(200));
    assert_eq!(r["body_len"], json!(5 << 20));
    assert_eq!(r["body_truncated"], json!(true));
    assert_eq!(r["body"].as_str().unwrap().len(), 1 << 20);
    use sha2::Digest as _;
    let want = sha2::Sha256::digest(servers::pattern(5 << 20));
    let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["body_sha256"], json!(want));
    let r = ok(
        &mut s,
        "http.request",
        json!({"method": "POST", "path": "/upload", "body_size": 4 << 20}),
    )
    .await;
    assert_eq!(r["status"], json!(200), "{r}");
    assert_eq!(r["sent_len"], json!(4 << 20));
    let r = ok(
        &mut s,
        "http.request",
        json!({"method": "POST", "path": "/hello", "body_size": 2 << 20}),
    )
    .await;
    assert_eq!(r["status"], json!(413));
    let r = ok(
        &mut s,
        "http.request",
        json!({"method": "HEAD", "path": "/big.bin", "headers": {"Range": "bytes=0-9"}}),
    )
    .await;
    assert_eq!(r["status"], json!(206));
    // A fresh session opens a fresh connection.
    let mut t = open_ok(&c, server.port).await;
    let r = ok(&mut t, "http.request", json!({"path": "/"})).await;
    assert_eq!(r["connection_reused"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_not_listening_and_killed_server() {
    assert_refused(&cfg("http")).await;
    let mut server = private_nginx();
    let mut c = cfg("http");
    c.options.insert("timeout_ms".into(), "3000".into());
    let mut s = open_ok(&c, server.port).await;
    ok(&mut s, "http.request", json!({"path": "/"})).await;
    server.kill();
    let res = bounded(
        "a request after the kill",
        20,
        run(&mut s, "http.request", json!({"path": "/"})),
    )
    .await;
    assert_lost(res);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_over_tls_checks_the_certificate() {
    let (server, ca) = private_nginx_tls();
    let mut c = cfg("http");
    c.options.insert("tls".into(), "true".into());
    c.options
        .insert("tls_ca_file".into(), ca.display().to_string());
    let mut s = open_ok(&c, server.port).await;
    let r = ok(&mut s, "http.request", json!({"path": "/"})).await;
    assert_eq!(r["status"], json!(200));
    let r = ok(&mut s, "http.request", json!({"path": "/"})).await;
    assert_eq!(r["connection_reused"], json!(true));
    // The name in the URL (and SNI) can differ from the address connected to.
    c.options.insert("server_name".into(), "localhost".into());
    let mut s = open_ok(&c, server.port).await;
    assert_eq!(
        ok(&mut s, "http.request", json!({"path": "/"})).await["status"],
        json!(200)
    );
    // Without the CA the certificate is not trusted: opening the session fails (the first
    // connection is made then), it does not hang.
    let mut c = cfg("http");
    c.options.insert("tls".into(), "true".into());
    c.options.insert("timeout_ms".into(), "3000".into());
    let res = bounded("an untrusted certificate", 20, open(&c, server.port)).await;
    assert_connect(res, &["certificate"]);
}
