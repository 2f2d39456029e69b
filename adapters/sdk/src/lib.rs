//! The adaptest plugin SDK: what a vendor's component plugin depends on, and nothing else.
//!
//! A plugin implements [`Adapter`] (describe itself, open sessions) and [`Session`] (execute
//! named operations with JSON arguments and results: `kv.set`, `sql.query`, …), then is hosted
//! one of two ways, both speaking adapter protocol v1 (`docs/adapter-protocol-v1.md`):
//!
//! - **dylib**: `export_adapter!(MyAdapter::new());` in a `cdylib` exports the C symbol
//!   `adaptest_adapter`, which returns the [`abi::AdapterTable`]. Every call is wrapped in
//!   `catch_unwind`, so a panic becomes an `internal` error instead of tearing the host down.
//! - **exec**: `fn main() { adaptest_plugin_sdk::serve_stdio(MyAdapter::new()) }` in a binary
//!   answers JSON lines on stdin/stdout.
//!
//! The same [`Plugin`] dispatcher sits behind both, so a plugin behaves identically either way.

pub mod abi;
mod stdio;

pub use serde_json;
pub use stdio::serve_stdio;

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The adapter protocol version this SDK speaks. Every request carries it as `protocol`.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a plugin says about itself in answer to `describe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// The product it adapts (`memcached`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// What suites may rely on: `kv`, `sql`, `pubsub`, `queue`, `http`, …
    pub capabilities: Vec<String>,
    /// The operations `execute` accepts (informational).
    pub operations: Vec<String>,
}

impl Description {
    /// The `describe` result as sent on the wire.
    pub fn to_json(&self) -> Value {
        json!({
            "protocol": PROTOCOL_VERSION,
            "name": self.name,
            "version": self.version,
            "capabilities": self.capabilities,
            "operations": self.operations,
        })
    }
}

/// The component as the plan configures it, and where to reach it (the `open` request's
/// `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenConfig {
    /// The component's id in the plan.
    pub id: String,
    /// `host:port` on the harness's side that reaches the component's port on the target
    /// (forwarded when the target is not the local host). `None` when no port is known.
    pub addr: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The resolved secret. Never log it.
    pub password: Option<String>,
    pub database: Option<String>,
    /// The plan's `options`, as strings (the host's own `plugin` and `timeout` included).
    pub options: BTreeMap<String, String>,
    /// The target's id, and a scratch directory on it for this combination.
    pub target: String,
    pub workdir: String,
}

impl OpenConfig {
    /// Read the `config` object of an `open` request (absent fields are `None`/empty).
    pub fn from_json(v: &Value) -> OpenConfig {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        OpenConfig {
            id: s("id").unwrap_or_default(),
            addr: s("addr"),
            host: s("host"),
            port: v
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
            user: s("user"),
            password: s("password"),
            database: s("database"),
            options: v
                .get("options")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            target: s("target").unwrap_or_default(),
            workdir: s("workdir").unwrap_or_default(),
        }
    }

    /// The wire form (the host builds it; tests use it).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "addr": self.addr, "host": self.host, "port": self.port,
            "user": self.user, "password": self.password, "database": self.database,
            "options": self.options, "target": self.target, "workdir": self.workdir,
        })
    }

    /// An option by name.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// Why an operation failed; the host maps the kind to its own errors (and so to a case's
/// status: `connect`, `lost`, `internal` and `protocol` are infrastructure errors, the rest
/// are failures of the product or the suite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Could not connect, authenticate or open the session.
    Connect,
    /// The server answered with an error (a refused write, a type error). Steps may expect it.
    Operation,
    /// The arguments were wrong (a suite problem).
    Arguments,
    /// This plugin does not offer the operation.
    Unsupported,
    /// The connection broke or timed out.
    Lost,
    /// The plugin itself failed (a panic caught by the SDK).
    Internal,
    /// A malformed request, or one for a protocol version the plugin does not speak.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Operation => "operation",
            ErrorKind::Arguments => "arguments",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Lost => "lost",
            ErrorKind::Internal => "internal",
            ErrorKind::Protocol => "protocol",
        }
    }

    /// The kind named on the wire; an unknown name is `None`.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        Some(match s {
            "connect" => ErrorKind::Connect,
            "operation" => ErrorKind::Operation,
            "arguments" => ErrorKind::Arguments,
            "unsupported" => ErrorKind::Unsupported,
            "lost" => ErrorKind::Lost,
            "internal" => ErrorKind::Internal,
            "protocol" => ErrorKind::Protocol,
            _ => return None,
        })
    }
}

/// An error a plugin returns from [`Adapter::open`] or [`Session::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn connect(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Connect, message)
    }
    pub fn operation(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Operation, message)
    }
    pub fn arguments(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Arguments, message)
    }
    pub fn lost(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Lost, message)
    }
    /// `op` is not offered by this plugin.
    pub fn unsupported(op: &str) -> Error {
        Error::new(
            ErrorKind::Unsupported,
            format!("operation `{op}` is not supported"),
        )
    }

    /// The `error` object of a response.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind.as_str(), "message": self.message })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// A plugin: describes itself and opens sessions. Called from several threads at once.
pub trait Adapter: Send + Sync + 'static {
    fn describe(&self) -> Description;
    /// Open one connection to the component.
    fn open(&self, config: &OpenConfig) -> Result<Box<dyn Session>, Error>;
}

/// One connection. The host uses a session from one case at a time, one call at a time.
pub trait Session: Send {
    /// The server's version as it reports it, sent back in the `open` result.
    fn server_version(&mut self) -> Option<String> {
        None
    }
    /// Execute `op` with `args`; the result's shape is the operation's.
    fn execute(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, Error>;
    /// Close cleanly.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A required string argument.
pub fn arg_str<'a>(op: &str, args: &'a Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::arguments(format!("{op}: `{name}` (a string) is required")))
}

/// A JSON scalar as the text a protocol carries (`"a"` → `a`, `5` → `5`, `null` → ``).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

type SharedSession = Arc<Mutex<Box<dyn Session>>>;

/// The protocol dispatcher: one request in, one response out, whatever the hosting.
/// It owns the sessions (ids are assigned here) and never lets a panic escape.
pub struct Plugin {
    adapter: Box<dyn Adapter>,
    sessions: Mutex<HashMap<u64, SharedSession>>,
    next: AtomicU64,
}

impl Plugin {
    pub fn new(adapter: impl Adapter) -> Plugin {
        Plugin {
            adapter: Box::new(adapter),
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Answer one request (a JSON text) with one response (a JSON text, one line).
    pub fn handle(&self, request: &str) -> String {
        self.handle_as(None, request)
    }

    /// Like [`Plugin::handle`], for a C ABI entry that serves only requests whose `op` is
    /// `expected` (any other is answered with a `protocol` error).
    pub fn handle_as(&self, expected: Option<&str>, request: &str) -> String {
        let parsed: Result<Value, _> = serde_json::from_str(request);
        let id = parsed
            .as_ref()
            .ok()
            .and_then(|v| v.get("id"))
            .cloned()
            .unwrap_or(Value::Null);
        let outcome = match parsed {
            Err(e) => Err(Error::new(
                ErrorKind::Protocol,
                format!("the request is not JSON: {e}"),
            )),
            Ok(req)
                if expected.is_some_and(|op| req.get("op").and_then(Value::as_str) != Some(op)) =>
            {
                Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "the `{}` entry point received a request with another `op`",
                        expected.unwrap_or_default()
                    ),
                ))
            }
            Ok(req) => match catch_unwind(AssertUnwindSafe(|| self.dispatch(&req))) {
                Ok(r) => r,
                Err(panic) => Err(Error::new(
                    ErrorKind::Internal,
                    format!("the plugin panicked: {}", panic_message(panic.as_ref())),
                )),
            },
        };
        response(id, outcome)
    }

    fn dispatch(&self, req: &Value) -> Result<Value, Error> {
        match req.get("protocol").and_then(Value::as_u64) {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            Some(v) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "the host speaks adapter protocol {v}; this plugin speaks protocol {PROTOCOL_VERSION}"
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "the request has no `protocol` version",
                ));
            }
        }
        let session_id = || {
            req.get("session")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::new(ErrorKind::Protocol, "the request has no `session`"))
        };
        match req.get("op").and_then(Value::as_str) {
            Some("describe") => Ok(self.adapter.describe().to_json()),
            Some("open") => {
                let config = OpenConfig::from_json(req.get("config").unwrap_or(&Value::Null));
                let mut session = self.adapter.open(&config)?;
                let server_version = session.server_version();
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                self.lock_sessions()
                    .insert(id, Arc::new(Mutex::new(session)));
                Ok(json!({ "session": id, "server_version": server_version }))
            }
            Some("execute") => {
                let id = session_id()?;
                let name = req.get("name").and_then(Value::as_str).ok_or_else(|| {
                    Error::new(ErrorKind::Protocol, "`execute` has no operation `name`")
                })?;
                let empty = Map::new();
                let args = match req.get("args") {
                    None | Some(Value::Null) => &empty,
                    Some(Value::Object(o)) => o,
                    Some(_) => {
                        return Err(Error::new(ErrorKind::Protocol, "`args` must be an object"));
                    }
                };
                let session = self.session(id)?;
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
                    s.execute(name, args)
                }));
                match result {
                    Ok(r) => r,
                    Err(panic) => {
                        // The session's state is unknown after a panic: it is gone.
                        self.lock_sessions().remove(&id);
                        Err(Error::new(
                            ErrorKind::Internal,
                            format!(
                                "the plugin panicked in `{name}`: {}",
                                panic_message(panic.as_ref())
                            ),
                        ))
                    }
                }
            }
            Some("close") => {
                let id = session_id()?;
                let session = self.lock_sessions().remove(&id);
                match session {
                    Some(s) => s
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .close()
                        .map(|()| Value::Null),
                    None => Ok(Value::Null), // closing twice is harmless
                }
            }
            Some(other) => Err(Error::new(
                ErrorKind::Protocol,
                format!("unknown request op `{other}`"),
            )),
            None => Err(Error::new(ErrorKind::Protocol, "the request has no `op`")),
        }
    }

    fn session(&self, id: u64) -> Result<SharedSession, Error> {
        self.lock_sessions().get(&id).cloned().ok_or_else(|| {
            Error::lost(format!(
                "session {id} does not exist (closed, or lost to an earlier panic)"
            ))
        })
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SharedSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Close every open session (the exec server does this when the host goes away).
    pub fn close_all(&self) {
        let all: Vec<SharedSession> = self.lock_sessions().drain().map(|(_, s)| s).collect();
        for s in all {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                s.lock().unwrap_or_else(|p| p.into_inner()).close()
            }));
        }
    }
}

/// The response envelope: `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error"}`.
fn response(id: Value, outcome: Result<Value, Error>) -> String {
    let v = match outcome {
        Ok(result) => json!({ "id": id, "ok": true, "result": result }),
        Err(e) => json!({ "id": id, "ok": false, "error": e.to_json() }),
    };
    v.to_string()
}

/// The text of a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    struct EchoSession(u32);

    impl Adapter for Echo {
        fn describe(&self) -> Description {
            Description {
                name: "echo".into(),
                version: "1.0".into(),
                capabilities: vec!["kv".into()],
                operations: vec!["echo".into(), "boom".into()],
            }
        }
        fn open(&self, config: &OpenConfig) -> Result<Box<dyn Session>, Error> {
            if config.option("refuse").is_some() {
                return Err(Error::connect("refused as asked"));
            }
            Ok(Box::new(EchoSession(0)))
        }
    }

    impl Session for EchoSession {
        fn server_version(&mut self) -> Option<String> {
            Some("echo 1".into())
        }
        fn execute(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, Error> {
            self.0 += 1;
            match op {
                "echo" => Ok(json!({ "n": self.0, "args": args })),
                "boom" => panic!("boom at call {}", self.0),
                other => Err(Error::unsupported(other)),
            }
        }
    }

    fn call(p: &Plugin, req: Value) -> Value {
        serde_json::from_str(&p.handle(&req.to_string())).unwrap()
    }

    #[test]
    fn describe_open_execute_close() {
        let p = Plugin::new(Echo);
        let d = call(&p, json!({"protocol": 1, "id": 1, "op": "describe"}));
        assert_eq!(d["id"], 1);
        assert_eq!(d["result"]["name"], "echo");
        assert_eq!(d["result"]["protocol"], 1);
        assert_eq!(d["result"]["capabilities"], json!(["kv"]));
        let o = call(
            &p,
            json!({"protocol": 1, "id": 2, "op": "open", "config": {"id": "e"}}),
        );
        assert_eq!(o["ok"], true, "{o}");
        assert_eq!(o["result"]["server_version"], "echo 1");
        let s = o["result"]["session"].clone();
        let e = call(
            &p,
            json!({"protocol": 1, "id": 3, "op": "execute", "session": s, "name": "echo", "args": {"k": "v"}}),
        );
        assert_eq!(e["result"], json!({"n": 1, "args": {"k": "v"}}));
        let u = call(
            &p,
            json!({"protocol": 1, "id": 4, "op": "execute", "session": s, "name": "nope"}),
        );
        assert_eq!(u["error"]["kind"], "unsupported");
        let c = call(
            &p,
            json!({"protocol": 1, "id": 5, "op": "close", "session": s}),
        );
        assert_eq!(c, json!({"id": 5, "ok": true, "result": null}));
        let gone = call(
            &p,
            json!({"protocol": 1, "id": 6, "op": "execute", "session": s, "name": "echo"}),
        );
        assert_eq!(gone["error"]["kind"], "lost");
        let refused = call(
            &p,
            json!({"protocol": 1, "op": "open", "config": {"options": {"refuse": "yes"}}}),
        );
        assert_eq!(
            refused["error"],
            json!({"kind": "connect", "message": "refused as asked"})
        );
    }

    #[test]
    fn a_panic_becomes_an_internal_error_and_drops_the_session() {
        let p = Plugin::new(Echo);
        let o = call(&p, json!({"protocol": 1, "op": "open", "config": {}}));
        let s = o["result"]["session"].clone();
        let e = call(
            &p,
            json!({"protocol": 1, "op": "execute", "session": s, "name": "boom"}),
        );
        assert_eq!(e["ok"], false);
        assert_eq!(e["error"]["kind"], "internal");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("boom at call 1"),
            "{e}"
        );
        let after = call(
            &p,
            json!({"protocol": 1, "op": "execute", "session": s, "name": "echo"}),
        );
        assert_eq!(after["error"]["kind"], "lost");
        // The plugin itself still works.
        let o2 = call(&p, json!({"protocol": 1, "op": "open", "config": {}}));
        assert_eq!(o2["ok"], true);
    }

    #[test]
    fn protocol_problems_are_named() {
        let p = Plugin::new(Echo);
        let v2 = call(&p, json!({"protocol": 2, "id": 9, "op": "describe"}));
        assert_eq!(v2["id"], 9);
        assert_eq!(v2["error"]["kind"], "protocol");
        let msg = v2["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("protocol 2") && msg.contains("protocol 1"),
            "{msg}"
        );
        let bad: Value = serde_json::from_str(&p.handle("{not json")).unwrap();
        assert_eq!(bad["error"]["kind"], "protocol");
        assert_eq!(bad["id"], Value::Null);
        let none = call(&p, json!({"protocol": 1, "op": "dance"}));
        assert!(none["error"]["message"].as_str().unwrap().contains("dance"));
    }

    #[test]
    fn open_config_round_trips() {
        let mut c = OpenConfig {
            id: "mc".into(),
            addr: Some("127.0.0.1:11211".into()),
            port: Some(11211),
            target: "local".into(),
            ..OpenConfig::default()
        };
        c.options.insert("timeout".into(), "5s".into());
        assert_eq!(OpenConfig::from_json(&c.to_json()), c);
    }
}
