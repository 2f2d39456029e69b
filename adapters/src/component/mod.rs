//! Component adapters: the product under test (a database, a middleware, the OS) and what it
//! can do, reached from the harness through the target.
//!
//! One protocol-neutral shape serves built-in adapters and vendor plugins alike: a
//! [`Component`] opens [`Session`]s, and a session executes named operations (`sql.query`,
//! `kv.set`, `pubsub.publish`, `http.request`, …) whose arguments and result are JSON values.
//! Suites' `steps`, `bench` and `sql` cases are written against these operations only.

pub mod amqp;
pub mod http;
pub mod mqtt;
pub mod nats;
mod net;
pub mod ops;
pub mod redis;
pub mod sql;
pub mod sql_cli;
pub mod sql_errors;

use crate::target::{Target, TargetError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a component offers to suites (`requires = { capabilities = [...] }`).
pub const KNOWN_CAPABILITIES: &[&str] = &[
    "shell",
    "sql",
    "kv",
    "pubsub",
    "queue",
    "http",
    "cli",
    // finer middleware capabilities: MQTT QoS 1 and retained messages, NATS request/reply and
    // JetStream, and `lifecycle` (the plan gives the component stop/start commands)
    "pubsub.qos1",
    "pubsub.retain",
    "rpc",
    "stream",
    "lifecycle",
    // SQL: `sql.tx`, transactions that span operations of a session (driver kinds, not CLI ones)
    "sql.tx",
];

/// A component kind this build knows, with the capabilities it offers.
#[derive(Debug, Clone, Copy)]
pub struct ComponentKind {
    pub name: &'static str,
    pub capabilities: &'static [&'static str],
    /// The TCP port its server listens on by default, if it has one.
    pub default_port: Option<u16>,
}

/// Component kinds built into this build. `os` is always present: the target's operating system,
/// reached through the target's shell.
pub const COMPONENT_KINDS: &[ComponentKind] = &[
    ComponentKind {
        name: "os",
        capabilities: &["shell"],
        default_port: None,
    },
    // middleware (net.rs and one file per protocol)
    ComponentKind {
        name: "redis",
        capabilities: &["kv"],
        default_port: Some(6379),
    },
    ComponentKind {
        name: "amqp",
        capabilities: &["queue"],
        default_port: Some(5672),
    },
    ComponentKind {
        name: "mqtt",
        capabilities: &["pubsub", "pubsub.qos1", "pubsub.retain"],
        default_port: Some(1883),
    },
    ComponentKind {
        name: "nats",
        capabilities: &["pubsub", "rpc", "stream"],
        default_port: Some(4222),
    },
    ComponentKind {
        name: "http",
        capabilities: &["http"],
        default_port: Some(80),
    },
    // SQL databases: through a driver in the harness (sql.rs; `sql.tx`: transactions span
    // operations) or a client on the target (sql_cli.rs)
    ComponentKind {
        name: "postgres",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(5432),
    },
    ComponentKind {
        name: "opengauss",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(5432),
    },
    ComponentKind {
        name: "kingbase",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(54321),
    },
    ComponentKind {
        name: "mysql",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(3306),
    },
    ComponentKind {
        name: "mariadb",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(3306),
    },
    ComponentKind {
        name: "oceanbase",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(2881),
    },
    ComponentKind {
        name: "tidb",
        capabilities: &["sql", "sql.tx"],
        default_port: Some(4000),
    },
    ComponentKind {
        name: "sqlite",
        capabilities: &["sql", "sql.tx"],
        default_port: None,
    },
    ComponentKind {
        name: "psql",
        capabilities: &["sql"],
        default_port: Some(5432),
    },
    ComponentKind {
        name: "mysql-cli",
        capabilities: &["sql"],
        default_port: Some(3306),
    },
    ComponentKind {
        name: "sqlite-cli",
        capabilities: &["sql"],
        default_port: None,
    },
    ComponentKind {
        name: "sql-cli",
        capabilities: &["sql"],
        default_port: None,
    },
    // a vendor's plugin (crate::plugin): what it offers is known only once it describes itself
    // at run time, so at plan time it pairs with a suite of any capability; the engine then
    // skips a suite whose capability the plugin does not describe
    ComponentKind {
        name: "plugin",
        capabilities: KNOWN_CAPABILITIES,
        default_port: None,
    },
];

pub fn component_kind(name: &str) -> Option<&'static ComponentKind> {
    COMPONENT_KINDS.iter().find(|k| k.name == name)
}

/// The capabilities of the kind `name`, or `None` for a kind this build does not know.
fn kind_capabilities(name: &str) -> Option<Vec<String>> {
    component_kind(name).map(|k| k.capabilities.iter().map(|c| c.to_string()).collect())
}

/// A secret (password, token). Its `Debug` and `Display` never show the value, so it cannot
/// leak into logs, results or reports by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for handing to a driver. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Shell commands run on the target around a component's life (each optional).
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub install: Option<String>,
    pub start: Option<String>,
    /// A command that exits 0 once the component is ready; with no command, readiness is the
    /// port accepting connections and a session opening.
    pub ready: Option<String>,
    pub ready_timeout: Option<Duration>,
    pub stop: Option<String>,
    pub uninstall: Option<String>,
    /// Snapshot the target before `install` and after `uninstall`; what is left is a
    /// certification item (`residue`).
    pub residue: Option<Residue>,
}

/// Where the uninstall residue check looks, and what it may find left.
#[derive(Debug, Clone, Default)]
pub struct Residue {
    /// Directories whose files are listed (default `/etc /usr /opt /var/lib /var/log`).
    pub roots: Vec<String>,
    /// The passwd and group files whose names are compared (default `/etc/passwd /etc/group`).
    pub passwd: String,
    pub group: String,
    /// Globs of leftovers that do not fail the item (`/var/log/foo/*`, `user:foo`).
    pub allow: Vec<String>,
}

/// A component as configured in a plan (`[[component]]`), secrets already resolved from their
/// references (`password_env`, `password_file`).
#[derive(Debug, Clone, Default)]
pub struct ComponentConfig {
    pub id: String,
    pub kind: String,
    /// The version the vendor declares (adapters also detect one).
    pub version: Option<String>,
    /// Address of the server as seen from the target (default `127.0.0.1`).
    pub host: Option<String>,
    /// Port on the target (default: the kind's).
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub database: Option<String>,
    /// For file-backed engines (SQLite): the database file.
    pub path: Option<PathBuf>,
    /// For CLI adapters: the client command on the target (`psql`, `mysql`, `sqlite3`, `gsql` …).
    pub cli: Option<String>,
    /// Kind-specific settings, passed through as written.
    pub options: BTreeMap<String, String>,
    pub lifecycle: Lifecycle,
}

/// Where a session connects: the forwarded address on the harness side, and the target itself
/// (CLI adapters run their client there).
#[derive(Clone)]
pub struct Endpoint {
    pub addr: Option<SocketAddr>,
    pub target: Arc<dyn Target>,
    /// A scratch directory on the target for this combination.
    pub workdir: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("target", &self.target.id())
            .field("workdir", &self.workdir)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Could not connect, authenticate or open the session.
    #[error("failed to connect to component `{component}`: {reason}")]
    Connect { component: String, reason: String },
    /// The operation reached the server and failed there (an SQL error, a refused publish).
    /// Steps may expect these.
    #[error("{0}")]
    Operation(String),
    /// The operation's arguments were wrong (a suite problem).
    #[error("invalid arguments for `{op}`: {reason}")]
    Arguments { op: String, reason: String },
    /// This component does not offer the operation.
    #[error("component kind `{kind}` does not support the operation `{op}`")]
    Unsupported { kind: String, op: String },
    /// The connection broke or timed out (an infrastructure problem).
    #[error("connection to component `{component}` lost: {reason}")]
    Lost { component: String, reason: String },
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// A component adapter, created once per component per run.
#[async_trait::async_trait]
pub trait Component: Send + Sync {
    fn id(&self) -> &str;
    fn kind(&self) -> &str;
    fn capabilities(&self) -> Vec<String>;
    /// Open a session (a connection and whatever state it needs).
    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError>;
}

/// One connection to a component. Sessions are used by one case at a time.
#[async_trait::async_trait]
pub trait Session: Send {
    /// The server's version as it reports it (`PostgreSQL 15.19`, `7.0.15`).
    async fn version(&mut self) -> Result<String, ComponentError>;
    /// Execute the operation `op` with `args`; the result's shape is the operation's.
    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError>;
    /// Close cleanly (drop also closes, less politely).
    async fn close(self: Box<Self>) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// The `Component` methods a built-in adapter answers from its configuration alone: `id` and
/// `kind` as the plan gives them, `capabilities` from `$capabilities(&ComponentConfig)`.
/// Invoked inside `impl Component for …` of a type with a `cfg: ComponentConfig` field.
macro_rules! configured_identity {
    ($capabilities:path) => {
        fn id(&self) -> &str {
            &self.cfg.id
        }

        fn kind(&self) -> &str {
            &self.cfg.kind
        }

        fn capabilities(&self) -> Vec<String> {
            $capabilities(&self.cfg)
        }
    };
}
use configured_identity;

/// Build the adapter for a configured component, or `None` for `os` (the target's shell).
pub fn create(cfg: &ComponentConfig) -> Result<Option<Arc<dyn Component>>, ComponentError> {
    match cfg.kind.as_str() {
        "os" => Ok(None),
        "redis" => Ok(Some(Arc::new(redis::RedisComponent::new(cfg)?))),
        "amqp" => Ok(Some(Arc::new(amqp::AmqpComponent::new(cfg)?))),
        "mqtt" => Ok(Some(Arc::new(mqtt::MqttComponent::new(cfg)?))),
        "nats" => Ok(Some(Arc::new(nats::NatsComponent::new(cfg)?))),
        "http" => Ok(Some(Arc::new(http::HttpComponent::new(cfg)?))),
        "plugin" => Ok(Some(Arc::new(crate::plugin::PluginComponent::new(cfg)?))),
        k if sql::sql_kind(k).is_some_and(|k| k.access == sql::Access::Driver) => {
            Ok(Some(Arc::new(sql::SqlxComponent::new(cfg)?)))
        }
        k if sql::sql_kind(k).is_some() => Ok(Some(Arc::new(sql_cli::CliComponent::new(cfg)?))),
        other => Err(ComponentError::Unsupported {
            kind: other.to_string(),
            op: "open".into(),
        }),
    }
}

/// Fetch a required string argument.
pub fn arg_str<'a>(
    op: &str,
    args: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, ComponentError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ComponentError::Arguments {
            op: op.to_string(),
            reason: format!("`{name}` (a string) is required"),
        })
}

/// Render a JSON scalar as the text a protocol carries (`"a"` → `a`, `5` → `5`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
