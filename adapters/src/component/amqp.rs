//! The `amqp` component kind (capability `queue`): AMQP 0-9-1 brokers (RabbitMQ and compatible
//! ones) through `lapin`.
//!
//! A session is one connection with one channel in publisher-confirm mode, so `queue.publish`
//! returns only once the broker has taken responsibility for the message. `queue.consume` polls
//! with `basic.get` until a message comes or `within_ms` passes. A channel the broker closes
//! after a refused operation (a soft error, e.g. redeclaring a queue differently) is reopened
//! for the next step.
//!
//! `queue.publish` with `declare = true` first declares the queue (once per session, transient,
//! expiring a minute after its last use): benchmarks need no separate set-up step.
//!
//! Credentials default to RabbitMQ's `guest`/`guest`. Options: `vhost` (default `/`),
//! `heartbeat_s` (default 10), `tls = "true"` (amqps, rustls), `tls_ca_file`,
//! `connect_timeout_ms`, `timeout_ms`.

use super::net::{self, NetSettings};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::protocol::AMQPErrorKind;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// The AMQP adapter of one configured component.
pub struct AmqpComponent {
    cfg: ComponentConfig,
    net: NetSettings,
}

impl AmqpComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Ok(AmqpComponent {
            net: NetSettings::from_config(cfg)?,
            cfg: cfg.clone(),
        })
    }
}

/// How a lapin error counts: a refused operation, or a connection that is gone.
fn classify(net: &NetSettings, what: &str, e: &lapin::Error) -> ComponentError {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(_) => ComponentError::Operation(format!("{what}: {amqp}")),
            AMQPErrorKind::Hard(_) => {
                net.lost(format!("{what}: the broker closed the connection: {amqp}"))
            }
        },
        ErrorKind::IOError(_)
        | ErrorKind::RuntimeShutdownError(_)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::ParsingError(_) => net.lost(format!("{what}: {e}")),
        _ => ComponentError::Operation(format!("{what}: {e}")),
    }
}

fn connect_reason(target: &str, e: &lapin::Error) -> String {
    let text = e.to_string();
    let auth = match e.kind() {
        ErrorKind::ProtocolError(amqp) => {
            amqp.get_message().as_str().contains("ACCESS_REFUSED") || amqp.get_id() == 403
        }
        _ => false,
    } || text.contains("ACCESS_REFUSED")
        || text.contains("authentication");
    if auth {
        format!("authentication to {target} failed (wrong user name or password?): {text}")
    } else if let ErrorKind::InvalidConnectionState(_) = e.kind() {
        // RabbitMQ drops a connection with bad credentials without an AMQP reason on some versions.
        format!(
            "{target} closed the connection during the handshake (wrong user name, password or vhost?): {text}"
        )
    } else {
        format!("cannot connect to {target}: {text}")
    }
}

#[async_trait::async_trait]
impl Component for AmqpComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        let target = net::host_port(&host, port);
        let tls = net::option_flag(&self.cfg, "tls");
        let heartbeat = match self.cfg.options.get("heartbeat_s") {
            Some(v) => v.parse::<u16>().map_err(|_| {
                self.net.connect_err(format!(
                    "option `heartbeat_s` must be a number of seconds, not `{v}`"
                ))
            })?,
            None => 10,
        };
        let userinfo = match &self.cfg.user {
            Some(user) => AMQPUserInfo {
                username: user.clone(),
                password: self
                    .cfg
                    .password
                    .as_ref()
                    .map_or(String::new(), |p| p.expose().to_string()),
            },
            None => AMQPUserInfo::default(),
        };
        let uri = AMQPUri {
            scheme: if tls {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo,
                host: host.clone(),
                port,
            },
            vhost: self
                .cfg
                .options
                .get("vhost")
                .cloned()
                .unwrap_or_else(|| "/".into()),
            query: AMQPQueryString {
                connection_timeout: Some(self.net.connect_timeout.as_millis() as u64),
                heartbeat: Some(heartbeat),
                ..Default::default()
            },
        };
        let tls_config = OwnedTLSConfig {
            identity: None,
            cert_chain: match self.cfg.options.get("tls_ca_file") {
                Some(f) if tls => Some(std::fs::read_to_string(f).map_err(|e| {
                    self.net
                        .connect_err(format!("cannot read tls_ca_file {f}: {e}"))
                })?),
                _ => None,
            },
        };
        let runtime =
            lapin::runtime::default_runtime().map_err(|e| self.net.connect_err(e.to_string()))?;
        let props = ConnectionProperties::default().with_connection_name("adaptest".into());
        let conn = self
            .net
            .connecting(
                &format!("connecting to {target}"),
                Connection::connect_uri_with_config(uri, props, tls_config, runtime),
            )
            .await?
            .map_err(|e| self.net.connect_err(connect_reason(&target, &e)))?;
        let mut session = AmqpSession {
            net: self.net.clone(),
            target: target.clone(),
            conn,
            channel: None,
            declared: Default::default(),
        };
        session
            .channel("opening a channel")
            .await
            .map_err(|e| self.net.connect_err(format!("{target}: {e}")))?;
        Ok(Box::new(session))
    }
}

/// The server properties a broker sends in `connection.start` (product, version, …).
async fn server_properties(target: &str) -> Result<FieldTable, String> {
    use lapin::protocol::{AMQPClass, connection::AMQPMethod};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 7];
    s.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if head[0] != 1 || size > 1 << 20 {
        return Err("not an AMQP 0-9-1 method frame".into());
    }
    let mut payload = vec![0u8; size];
    s.read_exact(&mut payload)
        .await
        .map_err(|e| e.to_string())?;
    match lapin::protocol::parse_class(payload.as_slice()) {
        Ok((_, AMQPClass::Connection(AMQPMethod::Start(start)))) => Ok(start.server_properties),
        Ok(_) => Err("the first frame is not connection.start".into()),
        Err(e) => Err(format!("cannot parse connection.start: {e}")),
    }
}

struct AmqpSession {
    net: NetSettings,
    /// `host:port` of the broker (for the version probe).
    target: String,
    conn: Connection,
    channel: Option<Channel>,
    /// Queues `queue.publish {declare = true}` has declared on this session.
    declared: std::collections::HashSet<String>,
}

impl AmqpSession {
    /// The session's channel, reopened if the broker closed it after a refused operation.
    async fn channel(&mut self, what: &str) -> Result<Channel, ComponentError> {
        if let Some(ch) = &self.channel
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        if !self.conn.status().connected() {
            return Err(self.net.lost(format!("{what}: the connection is closed")));
        }
        let ch = self
            .net
            .op(what, self.conn.create_channel())
            .await?
            .map_err(|e| classify(&self.net, what, &e))?;
        self.net
            .op(what, ch.confirm_select(ConfirmSelectOptions::default()))
            .await?
            .map_err(|e| classify(&self.net, what, &e))?;
        self.channel = Some(ch.clone());
        Ok(ch)
    }

    async fn call<T>(
        &mut self,
        what: &str,
        f: impl AsyncFnOnce(Channel) -> Result<T, lapin::Error>,
    ) -> Result<T, ComponentError> {
        let ch = self.channel(what).await?;
        self.net
            .op(what, f(ch))
            .await?
            .map_err(|e| classify(&self.net, what, &e))
    }
}

#[async_trait::async_trait]
impl Session for AmqpSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        // lapin does not keep the server properties of connection.start: read them from a
        // second, short-lived connection that stops after the broker's greeting.
        let props = self
            .net
            .op(
                "reading the broker's greeting",
                server_properties(&self.target),
            )
            .await?
            .map_err(|e| {
                ComponentError::Operation(format!("reading the broker's greeting: {e}"))
            })?;
        let text = |k: &str| {
            props.inner().get(k).and_then(|v| match v {
                lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                lapin::types::AMQPValue::ShortString(s) => Some(s.to_string()),
                _ => None,
            })
        };
        match (text("product"), text("version")) {
            (Some(p), Some(v)) => Ok(format!("{p} {v}")),
            (None, Some(v)) => Ok(v),
            _ => Err(ComponentError::Operation(
                "the broker reports no version".into(),
            )),
        }
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "queue.declare" => {
                let queue = arg_str(op, args, "queue")?.to_string();
                let durable = net::arg_bool(op, args, "durable", false)?;
                let opts = QueueDeclareOptions {
                    durable,
                    ..Default::default()
                };
                let q = self
                    .call(&format!("declaring queue {queue}"), async |ch| {
                        ch.queue_declare(queue.as_str().into(), opts, FieldTable::default())
                            .await
                    })
                    .await?;
                Ok(json!({
                    "queue": q.name().as_str(),
                    "messages": q.message_count(),
                    "consumers": q.consumer_count(),
                }))
            }
            "queue.publish" => {
                let queue = arg_str(op, args, "queue")?.to_string();
                let payload = net::arg_payload(op, args)?;
                let persistent = net::arg_bool(op, args, "persistent", false)?;
                let mut props = BasicProperties::default();
                if persistent {
                    props = props.with_delivery_mode(2);
                }
                let what = format!("publishing to queue {queue}");
                if net::arg_bool(op, args, "declare", false)? && !self.declared.contains(&queue) {
                    // For benchmarks: a transient queue the broker removes a minute after its
                    // last use, so what the benchmark leaves behind goes away by itself.
                    let mut qargs = FieldTable::default();
                    qargs.insert("x-expires".into(), lapin::types::AMQPValue::LongInt(60_000));
                    self.call(&format!("declaring queue {queue}"), async |ch| {
                        ch.queue_declare(
                            queue.as_str().into(),
                            QueueDeclareOptions::default(),
                            qargs,
                        )
                        .await
                    })
                    .await?;
                    self.declared.insert(queue.clone());
                }
                let confirm = self
                    .call(&what, async |ch| {
                        let opts = BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        };
                        ch.basic_publish("".into(), queue.as_str().into(), opts, &payload, props)
                            .await?
                            .await
                    })
                    .await?;
                if confirm.is_nack() {
                    return Err(ComponentError::Operation(format!(
                        "{what}: the broker refused the message (nack)"
                    )));
                }
                if let Some(returned) = confirm.take_message() {
                    return Err(ComponentError::Operation(format!(
                        "{what}: the broker returned the message: {} (no such queue?)",
                        returned.reply_text
                    )));
                }
                Ok(json!({ "queue": queue, "confirmed": true }))
            }
            "queue.consume" => {
                let queue = arg_str(op, args, "queue")?.to_string();
                let within = net::arg_within(op, args)?;
                let ack = net::arg_bool(op, args, "ack", true)?;
                let what = format!("consuming from queue {queue}");
                let deadline = Instant::now() + within;
                let mut pause = Duration::from_millis(5);
                loop {
                    let got = self
                        .call(&what, async |ch| {
                            ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                                .await
                        })
                        .await?;
                    if let Some(msg) = got {
                        let d = msg.delivery;
                        let res = if ack {
                            d.acker.ack(BasicAckOptions::default()).await
                        } else {
                            d.acker.reject(BasicRejectOptions { requeue: true }).await
                        };
                        self.net
                            .op(&what, async { res })
                            .await?
                            .map_err(|e| classify(&self.net, &what, &e))?;
                        return Ok(json!({
                            "payload": net::text(&d.data),
                            "payload_len": d.data.len(),
                            "redelivered": d.redelivered,
                            "persistent": d.properties.delivery_mode() == &Some(2),
                            "remaining": msg.message_count,
                        }));
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ComponentError::Operation(format!(
                            "no message in queue {queue} within {} ms",
                            within.as_millis()
                        )));
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
            "queue.purge" => {
                let queue = arg_str(op, args, "queue")?.to_string();
                let n = self
                    .call(&format!("purging queue {queue}"), async |ch| {
                        ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                            .await
                    })
                    .await?;
                Ok(json!(n))
            }
            "queue.delete" => {
                let queue = arg_str(op, args, "queue")?.to_string();
                let n = self
                    .call(&format!("deleting queue {queue}"), async |ch| {
                        ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await
                    })
                    .await?;
                Ok(json!(n))
            }
            _ => Err(self.net.unsupported(op)),
        }
    }

    async fn close(self: Box<Self>) -> Result<(), ComponentError> {
        if self.conn.status().connected() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.conn.close(200, "bye".into()))
                    .await;
        }
        Ok(())
    }
}
