//! The `redis` component kind (capability `kv`): Redis and protocol-compatible servers (Valkey,
//! KeyDB, Tair, …) through the `redis` crate's multiplexed tokio connection.
//!
//! Options: `db` (or the plan's `database`), `tls = "true"` (rustls), `tls_ca_file`,
//! `connect_timeout_ms`, `timeout_ms`.

use super::net::{self, NetSettings};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
    value_text,
};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError};
use serde_json::{Map, Value, json};

/// The Redis adapter of one configured component.
pub struct RedisComponent {
    cfg: ComponentConfig,
    net: NetSettings,
}

impl RedisComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Ok(RedisComponent {
            net: NetSettings::from_config(cfg)?,
            cfg: cfg.clone(),
        })
    }

    fn db(&self) -> Result<i64, ComponentError> {
        let raw = self.cfg.options.get("db").or(self.cfg.database.as_ref());
        match raw {
            None => Ok(0),
            Some(s) => s.trim().parse().map_err(|_| {
                self.net
                    .connect_err(format!("the database number must be an integer, not `{s}`"))
            }),
        }
    }
}

#[async_trait::async_trait]
impl Component for RedisComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        let tls = net::option_flag(&self.cfg, "tls");
        let addr = if tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), port)
        };
        let info = addr
            .into_connection_info()
            .map_err(|e| self.net.connect_err(e.to_string()))?;
        let mut redis_info = info.redis_settings().clone().set_db(self.db()?);
        if let Some(user) = &self.cfg.user {
            redis_info = redis_info.set_username(user);
        }
        if let Some(pw) = &self.cfg.password {
            redis_info = redis_info.set_password(pw.expose());
        }
        let info = info.set_redis_settings(redis_info);
        let client = match (tls, self.cfg.options.get("tls_ca_file")) {
            (true, Some(ca)) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    self.net
                        .connect_err(format!("cannot read tls_ca_file {ca}: {e}"))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            _ => redis::Client::open(info),
        }
        .map_err(|e| self.net.connect_err(e.to_string()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.net.connect_timeout))
            .set_response_timeout(Some(self.net.op_timeout));
        let target = net::host_port(&host, port);
        let conn = self
            .net
            .connecting(
                &format!("connecting to {target}"),
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await?
            .map_err(|e| self.net.connect_err(connect_reason(&target, &e)))?;
        Ok(Box::new(RedisSession {
            net: self.net.clone(),
            conn,
        }))
    }
}

/// Why connecting failed, in words a certifier understands; a rejected password says so.
fn connect_reason(target: &str, e: &RedisError) -> String {
    let text = e.to_string();
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH");
    if auth {
        format!("authentication to {target} failed (wrong user name or password?): {text}")
    } else if e.is_io_error() || e.is_timeout() {
        format!("cannot connect to {target}: {text}")
    } else {
        format!("{target}: {text}")
    }
}

struct RedisSession {
    net: NetSettings,
    conn: MultiplexedConnection,
}

impl RedisSession {
    /// Run one command; server errors become `Operation`, a broken connection `Lost`.
    async fn run<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, ComponentError> {
        let res = self
            .net
            .op(what, cmd.query_async::<T>(&mut self.conn))
            .await?;
        res.map_err(|e| {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                self.net.lost(format!("{what}: {e}"))
            } else {
                ComponentError::Operation(format!("{what}: {e}"))
            }
        })
    }
}

#[async_trait::async_trait]
impl Session for RedisSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let info: String = self
            .run("INFO server", redis::cmd("INFO").arg("server"))
            .await?;
        // Valkey reports both; prefer its own name when present.
        for key in ["valkey_version:", "redis_version:"] {
            if let Some(v) = info.lines().find_map(|l| l.strip_prefix(key)) {
                let v = v.trim();
                return Ok(if key.starts_with("valkey") {
                    format!("Valkey {v}")
                } else {
                    v.to_string()
                });
            }
        }
        Err(ComponentError::Operation(
            "INFO server reports no version".into(),
        ))
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "kv.set" => {
                let key = arg_str(op, args, "key")?;
                let value =
                    args.get("value")
                        .map(value_text)
                        .ok_or_else(|| ComponentError::Arguments {
                            op: op.into(),
                            reason: "`value` is required".into(),
                        })?;
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(value);
                if let Some(ttl) = net::arg_opt_u64(op, args, "ttl_ms")? {
                    cmd.arg("PX").arg(ttl.max(1));
                }
                let _: Value = self.run("SET", &cmd).await.map(|()| Value::Null)?;
                Ok(Value::Bool(true))
            }
            "kv.get" => {
                let key = arg_str(op, args, "key")?;
                let v: Option<Vec<u8>> = self.run("GET", redis::cmd("GET").arg(key)).await?;
                Ok(v.map_or(Value::Null, |b| Value::String(net::text(&b))))
            }
            "kv.del" => {
                let mut cmd = redis::cmd("DEL");
                match args.get("keys") {
                    Some(Value::Array(keys)) if !keys.is_empty() => {
                        for k in keys {
                            cmd.arg(value_text(k));
                        }
                    }
                    _ => {
                        cmd.arg(arg_str(op, args, "key")?);
                    }
                }
                let n: i64 = self.run("DEL", &cmd).await?;
                Ok(json!(n))
            }
            "kv.exists" => {
                let key = arg_str(op, args, "key")?;
                let n: i64 = self.run("EXISTS", redis::cmd("EXISTS").arg(key)).await?;
                Ok(Value::Bool(n > 0))
            }
            "kv.expire" => {
                let key = arg_str(op, args, "key")?;
                let ttl = net::arg_u64(op, args, "ttl_ms")?;
                let n: i64 = self
                    .run("PEXPIRE", redis::cmd("PEXPIRE").arg(key).arg(ttl.max(1)))
                    .await?;
                Ok(Value::Bool(n > 0))
            }
            "kv.ttl" => {
                let key = arg_str(op, args, "key")?;
                let ms: i64 = self.run("PTTL", redis::cmd("PTTL").arg(key)).await?;
                // -2: no such key → null; -1: no expiry → -1; else the remaining milliseconds.
                Ok(if ms == -2 { Value::Null } else { json!(ms) })
            }
            "kv.incr" => {
                let key = arg_str(op, args, "key")?;
                let by = net::arg_opt_i64(op, args, "by")?.unwrap_or(1);
                let n: i64 = self
                    .run("INCRBY", redis::cmd("INCRBY").arg(key).arg(by))
                    .await?;
                Ok(json!(n))
            }
            "kv.ping" => {
                let pong: String = self.run("PING", &redis::cmd("PING")).await?;
                Ok(Value::String(pong))
            }
            _ => Err(self.net.unsupported(op)),
        }
    }
}
