//! The `mqtt` component kind (capabilities `pubsub`, `pubsub.qos1`, `pubsub.retain`): MQTT 3.1.1
//! brokers (Mosquitto, EMQX, …) through `rumqttc`.
//!
//! A session is one MQTT client (clean session). A background task drives its event loop: it
//! buffers every message the broker delivers for the session's subscriptions, and forwards the
//! broker's acknowledgements to the operation waiting for them. The task ends when the session
//! is dropped; a broken connection is recorded and every later operation reports it as lost.
//!
//! Options: `client_id_prefix` (default `adaptest`), `keep_alive_s` (default 30), `tls = "true"`,
//! `tls_ca_file`, `connect_timeout_ms`, `timeout_ms`. With TLS the certificate must be valid for
//! the host the harness connects to.

use super::net::{self, Inbox, Message, NetSettings, Wildcards};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest packet sent or accepted (Mosquitto's own limit is 256 MiB).
const MAX_PACKET: usize = 64 << 20;

/// The MQTT adapter of one configured component.
pub struct MqttComponent {
    cfg: ComponentConfig,
    net: NetSettings,
}

impl MqttComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Ok(MqttComponent {
            net: NetSettings::from_config(cfg)?,
            cfg: cfg.clone(),
        })
    }
}

/// A unique client id per session (brokers drop an older client whose id is reused).
fn client_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn refused_reason(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => {
            "the broker refused the connection: bad user name or password (authentication failed)"
                .into()
        }
        ConnectReturnCode::NotAuthorized => {
            "the broker refused the connection: not authorized (wrong or missing credentials?)"
                .into()
        }
        other => format!("the broker refused the connection: {other:?}"),
    }
}

fn connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => refused_reason(*code),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Component for MqttComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        let target = net::host_port(&host, port);
        let prefix = self
            .cfg
            .options
            .get("client_id_prefix")
            .map_or("adaptest", String::as_str);
        let mut opts = MqttOptions::new(client_id(prefix), host.clone(), port);
        let keep_alive = match self.cfg.options.get("keep_alive_s") {
            Some(v) => v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                self.net.connect_err(format!(
                    "option `keep_alive_s` must be a positive integer, not `{v}`"
                ))
            })?,
            None => 30,
        };
        opts.set_keep_alive(Duration::from_secs(keep_alive))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &self.cfg.user {
            let pw = self.cfg.password.as_ref().map_or("", |p| p.expose());
            opts.set_credentials(user.clone(), pw.to_string());
        }
        if net::option_flag(&self.cfg, "tls") {
            let tls = net::tls_client_config(&self.cfg).map_err(|e| self.net.connect_err(e))?;
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut netopts = NetworkOptions::new();
        netopts.set_tcp_nodelay(true);
        netopts.set_connection_timeout(self.net.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(netopts);

        // Connect: the first events are the CONNECT we send and the broker's CONNACK.
        let connack = self
            .net
            .connecting(&format!("connecting to {target}"), async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => break Ok(ack),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                }
            })
            .await?;
        match connack {
            Ok(ack) if ack.code == ConnectReturnCode::Success => {}
            Ok(ack) => {
                return Err(self
                    .net
                    .connect_err(format!("{target}: {}", refused_reason(ack.code))));
            }
            Err(e) => {
                return Err(self.net.connect_err(format!(
                    "cannot connect to {target}: {}",
                    connection_error(&e)
                )));
            }
        }

        let (msg_tx, inbox) = Inbox::new(Wildcards::Mqtt);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let broken = Arc::new(Mutex::new(None));
        let driver = tokio::spawn(drive(eventloop, msg_tx, ack_tx, broken.clone()));
        Ok(Box::new(MqttSession {
            net: self.net.clone(),
            client,
            inbox,
            acks,
            broken,
            driver,
        }))
    }
}

/// What the broker acknowledged (or what left for it), for the operation waiting on it.
#[derive(Debug)]
enum Reply {
    Sent(u16),
    PubAck(u16),
    PubComp(u16),
    SubAck(Vec<SubscribeReasonCode>),
    UnsubAck,
}

/// Poll the event loop until the connection breaks or the session goes away.
async fn drive(
    mut eventloop: EventLoop,
    messages: super::net::InboxSender,
    acks: mpsc::UnboundedSender<Reply>,
    broken: Arc<Mutex<Option<String>>>,
) {
    let reason = loop {
        let ack = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = messages.send(Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                    qos: p.qos as u8,
                });
                continue;
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => Reply::PubAck(a.pkid),
            Ok(Event::Incoming(Packet::PubComp(a))) => Reply::PubComp(a.pkid),
            Ok(Event::Incoming(Packet::SubAck(a))) => Reply::SubAck(a.return_codes),
            Ok(Event::Incoming(Packet::UnsubAck(_))) => Reply::UnsubAck,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Reply::Sent(pkid),
            Ok(Event::Incoming(Packet::Disconnect)) => {
                break "the broker closed the connection".to_string();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                break "the session disconnected".to_string();
            }
            Ok(_) => continue,
            Err(ConnectionError::RequestsDone) => break "the session was closed".to_string(),
            Err(e) => break connection_error(&e),
        };
        let _ = acks.send(ack);
    };
    *broken.lock().expect("not poisoned") = Some(reason);
    // Dropping the senders tells waiting operations that nothing more will come.
}

struct MqttSession {
    net: NetSettings,
    client: AsyncClient,
    inbox: Inbox,
    acks: mpsc::UnboundedReceiver<Reply>,
    broken: Arc<Mutex<Option<String>>>,
    driver: JoinHandle<()>,
}

impl Drop for MqttSession {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn qos_of(op: &str, args: &Map<String, Value>) -> Result<QoS, ComponentError> {
    match net::arg_opt_u64(op, args, "qos")?.unwrap_or(0) {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        n => Err(ComponentError::Arguments {
            op: op.into(),
            reason: format!("`qos` must be 0, 1 or 2, not {n}"),
        }),
    }
}

impl MqttSession {
    /// `Lost` with the recorded cause, if the connection broke.
    fn check_alive(&self) -> Result<(), ComponentError> {
        match &*self.broken.lock().expect("not poisoned") {
            Some(reason) => Err(self.net.lost(reason.clone())),
            None => Ok(()),
        }
    }

    fn lost_now(&self, what: &str) -> ComponentError {
        let why = self
            .broken
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_else(|| "the client stopped".into());
        self.net.lost(format!("{what}: {why}"))
    }

    /// Forget acknowledgements left over from an operation that timed out.
    fn drain_acks(&mut self) {
        while self.acks.try_recv().is_ok() {}
    }

    /// Wait for the first acknowledgement `pick` accepts, within the operation timeout.
    async fn wait_ack<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(Reply) -> Option<T>,
    ) -> Result<T, ComponentError> {
        let deadline = Instant::now() + self.net.op_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Err(_) => {
                    self.check_alive()?;
                    return Err(self.net.lost(format!(
                        "{what}: no acknowledgement within {} ms",
                        self.net.op_timeout.as_millis()
                    )));
                }
                Ok(None) => return Err(self.lost_now(what)),
                Ok(Some(ack)) => {
                    if let Some(t) = pick(ack) {
                        return Ok(t);
                    }
                }
            }
        }
    }

    async fn request<F: Future<Output = Result<(), rumqttc::ClientError>>>(
        &self,
        what: &str,
        fut: F,
    ) -> Result<(), ComponentError> {
        self.net
            .op(what, fut)
            .await?
            .map_err(|e| self.net.lost(format!("{what}: {e}")))
    }

    async fn subscribe(&mut self, topic: &str, qos: QoS) -> Result<Value, ComponentError> {
        self.check_alive()?;
        self.drain_acks();
        let what = format!("subscribing to {topic}");
        self.request(&what, self.client.subscribe(topic, qos))
            .await?;
        let codes = self
            .wait_ack(&what, |a| match a {
                Reply::SubAck(codes) => Some(codes),
                _ => None,
            })
            .await?;
        match codes.first() {
            Some(SubscribeReasonCode::Success(granted)) => {
                Ok(json!({ "topic": topic, "qos": *granted as u8 }))
            }
            _ => Err(ComponentError::Operation(format!(
                "the broker refused the subscription to {topic}"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Session for MqttSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        // MQTT has no version request; Mosquitto (and others) publish one under $SYS.
        const SYS_VERSION: &str = "$SYS/broker/version";
        self.subscribe(SYS_VERSION, QoS::AtMostOnce).await?;
        let got = self
            .inbox
            .expect(SYS_VERSION, None, Duration::from_secs(2))
            .await
            .map_err(|_| self.lost_now("reading the broker version"))?;
        let _ = self
            .execute("pubsub.unsubscribe", &json_args(SYS_VERSION))
            .await;
        Ok(got.map_or_else(
            || "MQTT 3.1.1 broker (no version published under $SYS)".into(),
            |m| net::text(&m.payload),
        ))
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "pubsub.subscribe" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                let qos = qos_of(op, args)?;
                self.subscribe(&topic, qos).await
            }
            "pubsub.unsubscribe" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                self.check_alive()?;
                self.drain_acks();
                let what = format!("unsubscribing from {topic}");
                self.request(&what, self.client.unsubscribe(topic.clone()))
                    .await?;
                self.wait_ack(&what, |a| matches!(a, Reply::UnsubAck).then_some(()))
                    .await?;
                self.inbox.forget(&topic);
                Ok(Value::Bool(true))
            }
            "pubsub.publish" => {
                let topic = arg_str(op, args, "topic")?.to_string();
                let payload = net::arg_payload(op, args)?;
                let qos = qos_of(op, args)?;
                let retain = net::arg_bool(op, args, "retain", false)?;
                self.check_alive()?;
                self.drain_acks();
                let what = format!("publishing to {topic}");
                self.request(
                    &what,
                    self.client.publish(topic.clone(), qos, retain, payload),
                )
                .await?;
                let pkid = self
                    .wait_ack(&what, |a| match a {
                        Reply::Sent(p) => Some(p),
                        _ => None,
                    })
                    .await?;
                match qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        self.wait_ack(&what, |a| {
                            matches!(a, Reply::PubAck(p) if p == pkid).then_some(())
                        })
                        .await?
                    }
                    QoS::ExactlyOnce => {
                        self.wait_ack(&what, |a| {
                            matches!(a, Reply::PubComp(p) if p == pkid).then_some(())
                        })
                        .await?
                    }
                }
                Ok(json!({ "topic": topic, "qos": qos as u8, "acked": qos != QoS::AtMostOnce }))
            }
            "pubsub.expect" => {
                let (topic, payload, within) = net::expect_args(op, args)?;
                match self.inbox.expect(&topic, payload.as_deref(), within).await {
                    Ok(Some(m)) => Ok(m.to_json()),
                    Ok(None) => {
                        self.check_alive()?;
                        Err(net::no_message(&topic, within))
                    }
                    Err(_) => Err(self.lost_now(&format!("waiting for a message on {topic}"))),
                }
            }
            _ => Err(self.net.unsupported(op)),
        }
    }

    async fn close(self: Box<Self>) -> Result<(), ComponentError> {
        if self.check_alive().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.client.disconnect()).await;
            // Give the event loop a moment to send DISCONNECT before the task is aborted.
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                while !self.driver.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
        Ok(())
    }
}

fn json_args(topic: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("topic".into(), Value::String(topic.into()));
    m
}
