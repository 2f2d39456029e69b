//! The `nats` component kind (capabilities `pubsub`, `rpc`, `stream`): NATS servers through
//! `async-nats` — core publish/subscribe, request/reply, and JetStream streams.
//!
//! Core NATS delivers at most once and keeps nothing, so `pubsub.publish` refuses `qos >= 1` and
//! `retain`; suites mark those cases `requires = { capabilities = ["pubsub.qos1"] }` /
//! `["pubsub.retain"]`. The client reconnects by itself; while it is disconnected every
//! operation reports the connection as lost instead of buffering silently.
//!
//! Credentials: `user` + `password`, or a `password` alone as a token. Options: `tls = "true"`
//! (rustls), `tls_ca_file`, `connect_timeout_ms`, `timeout_ms`.

use super::net::{self, Inbox, Message, NetSettings, Wildcards};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
    value_text,
};
use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, RequestErrorKind};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// The NATS adapter of one configured component.
pub struct NatsComponent {
    cfg: ComponentConfig,
    net: NetSettings,
}

impl NatsComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Ok(NatsComponent {
            net: NetSettings::from_config(cfg)?,
            cfg: cfg.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Component for NatsComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        let target = net::host_port(&host, port);
        let last_event = Arc::new(Mutex::new(None::<String>));
        let events = last_event.clone();
        let mut opts = ConnectOptions::new()
            .connection_timeout(self.net.connect_timeout)
            .request_timeout(Some(self.net.op_timeout))
            .name("adaptest")
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    *events.lock().expect("not poisoned") = Some(event.to_string());
                }
            });
        match (&self.cfg.user, &self.cfg.password) {
            (Some(user), pw) => {
                let pw = pw
                    .as_ref()
                    .map_or(String::new(), |p| p.expose().to_string());
                opts = opts.user_and_password(user.clone(), pw);
            }
            (None, Some(token)) => opts = opts.token(token.expose().to_string()),
            (None, None) => {}
        }
        if net::option_flag(&self.cfg, "tls") {
            let tls = net::tls_client_config(&self.cfg).map_err(|e| self.net.connect_err(e))?;
            opts = opts.require_tls(true).tls_client_config(tls);
        }
        let scheme = if net::option_flag(&self.cfg, "tls") {
            "tls"
        } else {
            "nats"
        };
        let client = self
            .net
            .connecting(
                &format!("connecting to {target}"),
                opts.connect(format!("{scheme}://{target}")),
            )
            .await?
            .map_err(|e| {
                let reason = match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        format!("authentication to {target} failed (wrong user name, password or token?): {e}")
                    }
                    _ => format!("cannot connect to {target}: {e}"),
                };
                self.net.connect_err(reason)
            })?;
        let (msg_tx, inbox) = Inbox::new(Wildcards::Nats);
        Ok(Box::new(NatsSession {
            net: self.net.clone(),
            js: jetstream::new(client.clone()),
            client,
            inbox,
            msg_tx,
            subscriptions: HashMap::new(),
            servers: Vec::new(),
            last_event,
        }))
    }
}

struct NatsSession {
    net: NetSettings,
    client: Client,
    js: jetstream::Context,
    inbox: Inbox,
    msg_tx: super::net::InboxSender,
    /// Forwarding task per subscribed subject (aborting it unsubscribes).
    subscriptions: HashMap<String, JoinHandle<()>>,
    /// `rpc.serve` responders, alive for the session's life.
    servers: Vec<JoinHandle<()>>,
    last_event: Arc<Mutex<Option<String>>>,
}

impl Drop for NatsSession {
    fn drop(&mut self) {
        for t in self.subscriptions.values().chain(&self.servers) {
            t.abort();
        }
    }
}

impl NatsSession {
    /// While the client is disconnected (it reconnects in the background), operations would be
    /// buffered silently: report the connection as lost instead.
    fn check_alive(&self, what: &str) -> Result<(), ComponentError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => {
                let last = self
                    .last_event
                    .lock()
                    .expect("not poisoned")
                    .clone()
                    .filter(|e| e != "connected");
                Err(self.net.lost(format!(
                    "{what}: the client is {state} from the server{}",
                    last.map(|e| format!(" (last event: {e})"))
                        .unwrap_or_default()
                )))
            }
        }
    }

    /// A round trip through the server: everything sent before it has been processed there
    /// (so a subscription is in place before another connection publishes).
    async fn round_trip(&self, what: &str) -> Result<(), ComponentError> {
        let inbox = self.client.new_inbox();
        let mut sub = self
            .net
            .op(what, self.client.subscribe(inbox.clone()))
            .await?
            .map_err(|e| self.net.lost(format!("{what}: {e}")))?;
        self.net
            .op(what, self.client.publish(inbox, Vec::new().into()))
            .await?
            .map_err(|e| self.net.lost(format!("{what}: {e}")))?;
        match self.net.op(what, sub.next()).await? {
            Some(_) => Ok(()),
            None => Err(self.net.lost(format!("{what}: the subscription closed"))),
        }
    }

    fn refuse_qos(&self, op: &str, args: &Map<String, Value>) -> Result<(), ComponentError> {
        if net::arg_opt_u64(op, args, "qos")?.unwrap_or(0) > 0 {
            return Err(self.net.unsupported(&format!(
                "{op} with qos >= 1 (core NATS delivers at most once)"
            )));
        }
        if net::arg_bool(op, args, "retain", false)? {
            return Err(self
                .net
                .unsupported(&format!("{op} with retain (core NATS keeps no messages)")));
        }
        Ok(())
    }

    async fn publish(
        &self,
        what: &str,
        subject: String,
        payload: Vec<u8>,
    ) -> Result<(), ComponentError> {
        self.check_alive(what)?;
        self.net
            .op(what, self.client.publish(subject, payload.into()))
            .await?
            .map_err(|e| self.net.lost(format!("{what}: {e}")))?;
        self.net
            .op(what, self.client.flush())
            .await?
            .map_err(|e| self.net.lost(format!("{what}: {e}")))
    }

    fn js_error(&self, what: &str, e: impl std::fmt::Display) -> ComponentError {
        match self.check_alive(what) {
            Err(lost) => lost,
            Ok(()) => ComponentError::Operation(format!("{what}: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl Session for NatsSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let info = self.client.server_info();
        Ok(format!("nats-server {}", info.version))
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "pubsub.subscribe" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                self.refuse_qos(op, args)?;
                let what = format!("subscribing to {topic}");
                self.check_alive(&what)?;
                if !self.subscriptions.contains_key(&topic) {
                    let mut sub = self
                        .net
                        .op(&what, self.client.subscribe(topic.clone()))
                        .await?
                        .map_err(|e| ComponentError::Operation(format!("{what}: {e}")))?;
                    let tx = self.msg_tx.clone();
                    let task = tokio::spawn(async move {
                        while let Some(m) = sub.next().await {
                            let _ = tx.send(Message {
                                topic: m.subject.to_string(),
                                payload: m.payload.to_vec(),
                                retain: false,
                                qos: 0,
                            });
                        }
                    });
                    self.subscriptions.insert(topic.clone(), task);
                }
                self.round_trip(&what).await?;
                Ok(json!({ "topic": topic, "qos": 0 }))
            }
            "pubsub.unsubscribe" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                let what = format!("unsubscribing from {topic}");
                self.check_alive(&what)?;
                if let Some(task) = self.subscriptions.remove(&topic) {
                    task.abort();
                    let _ = task.await;
                }
                self.round_trip(&what).await?;
                self.inbox.forget(&topic);
                Ok(Value::Bool(true))
            }
            "pubsub.publish" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                self.refuse_qos(op, args)?;
                let payload = net::arg_payload(op, args)?;
                self.publish(&format!("publishing to {topic}"), topic.clone(), payload)
                    .await?;
                Ok(json!({ "topic": topic, "qos": 0, "acked": false }))
            }
            "pubsub.expect" => {
                let (topic, payload, within) = net::expect_args(op, args)?;
                match self.inbox.expect(&topic, payload.as_deref(), within).await {
                    Ok(Some(m)) => Ok(m.to_json()),
                    _ => {
                        self.check_alive(&format!("waiting for a message on {topic}"))?;
                        Err(net::no_message(&topic, within))
                    }
                }
            }
            "rpc.serve" => {
                let subject = arg_str(op, args, "subject")?.to_string();
                let reply = args.get("reply").map(value_text).unwrap_or_default();
                let what = format!("serving requests on {subject}");
                self.check_alive(&what)?;
                let mut sub = self
                    .net
                    .op(&what, self.client.subscribe(subject.clone()))
                    .await?
                    .map_err(|e| ComponentError::Operation(format!("{what}: {e}")))?;
                let client = self.client.clone();
                self.servers.push(tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        if let Some(to) = m.reply {
                            let _ = client.publish(to, reply.clone().into_bytes().into()).await;
                            let _ = client.flush().await;
                        }
                    }
                }));
                self.round_trip(&what).await?;
                Ok(json!({ "subject": subject }))
            }
            "rpc.request" => {
                let subject = arg_str(op, args, "subject")?.to_string();
                let payload = net::arg_payload(op, args)?;
                let within = net::arg_within(op, args)?;
                let what = format!("requesting on {subject}");
                self.check_alive(&what)?;
                let req = async_nats::Request::new()
                    .payload(payload.into())
                    .timeout(Some(within));
                let res = self
                    .net
                    .op_within(
                        &what,
                        within + self.net.op_timeout,
                        self.client.send_request(subject.clone(), req),
                    )
                    .await?;
                match res {
                    Ok(m) => Ok(Value::String(net::text(&m.payload))),
                    Err(e) => match e.kind() {
                        RequestErrorKind::TimedOut => {
                            self.check_alive(&what)?;
                            Err(ComponentError::Operation(format!(
                                "no reply on {subject} within {} ms",
                                within.as_millis()
                            )))
                        }
                        RequestErrorKind::NoResponders => Err(ComponentError::Operation(format!(
                            "no responders on {subject}"
                        ))),
                        RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                            Err(ComponentError::Operation(format!("{what}: {e}")))
                        }
                        _ => Err(self.net.lost(format!("{what}: {e}"))),
                    },
                }
            }
            "stream.create" => {
                let name = arg_str(op, args, "stream")?.to_string();
                let subjects: Vec<String> = match args.get("subjects") {
                    Some(Value::Array(a)) => a.iter().map(value_text).collect(),
                    Some(Value::String(s)) => vec![s.clone()],
                    _ => vec![name.clone()],
                };
                let storage = match net::arg_opt_str(op, args, "storage")? {
                    None | Some("file") => jetstream::stream::StorageType::File,
                    Some("memory") => jetstream::stream::StorageType::Memory,
                    Some(other) => {
                        return Err(ComponentError::Arguments {
                            op: op.into(),
                            reason: format!("`storage` is `file` or `memory`, not `{other}`"),
                        });
                    }
                };
                let what = format!("creating stream {name}");
                self.check_alive(&what)?;
                let config = jetstream::stream::Config {
                    name: name.clone(),
                    subjects: subjects.clone(),
                    storage,
                    ..Default::default()
                };
                self.net
                    .op(&what, self.js.get_or_create_stream(config))
                    .await?
                    .map_err(|e| self.js_error(&what, e))?;
                Ok(json!({ "stream": name, "subjects": subjects }))
            }
            "stream.publish" => {
                let subject = arg_str(op, args, "subject")?.to_string();
                let payload = net::arg_payload(op, args)?;
                let what = format!("publishing to stream subject {subject}");
                self.check_alive(&what)?;
                let ack = self
                    .net
                    .op(&what, async {
                        let fut = self.js.publish(subject.clone(), payload.into()).await?;
                        fut.await.map_err(|e| {
                            async_nats::jetstream::context::PublishError::with_source(
                                async_nats::jetstream::context::PublishErrorKind::Other,
                                e,
                            )
                        })
                    })
                    .await?
                    .map_err(|e| self.js_error(&what, e))?;
                Ok(json!({ "stream": ack.stream, "seq": ack.sequence, "duplicate": ack.duplicate }))
            }
            "stream.get" => {
                let name = arg_str(op, args, "stream")?.to_string();
                let seq = net::arg_u64(op, args, "seq")?;
                let what = format!("reading message {seq} of stream {name}");
                self.check_alive(&what)?;
                let msg = self
                    .net
                    .op(&what, async {
                        let stream = self.js.get_stream(&name).await.map_err(|e| e.to_string())?;
                        stream.get_raw_message(seq).await.map_err(|e| e.to_string())
                    })
                    .await?
                    .map_err(|e| self.js_error(&what, e))?;
                Ok(json!({
                    "stream": name,
                    "subject": msg.subject.to_string(),
                    "seq": msg.sequence,
                    "payload": net::text(&msg.payload),
                }))
            }
            "stream.delete" => {
                let name = arg_str(op, args, "stream")?.to_string();
                let what = format!("deleting stream {name}");
                self.check_alive(&what)?;
                let st = self
                    .net
                    .op(&what, self.js.delete_stream(&name))
                    .await?
                    .map_err(|e| self.js_error(&what, e))?;
                Ok(Value::Bool(st.success))
            }
            _ => Err(self.net.unsupported(op)),
        }
    }

    async fn close(self: Box<Self>) -> Result<(), ComponentError> {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.client.flush()).await;
        Ok(())
    }
}
