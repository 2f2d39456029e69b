//! Plumbing shared by the network middleware adapters (`redis`, `amqp`, `mqtt`, `nats`, `http`):
//! where to connect, timeouts on every await, argument helpers, TLS (rustls + ring) and the
//! buffered inbox that `pubsub.expect` reads from. The SQL adapters share the settings (identity,
//! timeouts) and where a driver connects.

use super::{
    ComponentConfig, ComponentError, Endpoint, component_kind, kind_capabilities, value_text,
};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Connecting (TCP + handshake + authentication) gives up after this long by default (the SQL
/// adapters' default too).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One operation's round trip gives up after this long by default (the connection counts as lost).
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(15);
/// `within_ms` when a step gives none.
pub(crate) const DEFAULT_WITHIN: Duration = Duration::from_secs(5);

/// Who a component is and how long its adapter waits, resolved from the plan's `[[component]]`
/// (`options.connect_timeout_ms`, `options.timeout_ms`), with the errors that name it.
///
/// `K` is what the adapter knows of its kind: the kind's name for the middleware adapters
/// ([`NetSettings`]), its [`SqlKind`](super::sql::SqlKind) for the SQL ones
/// ([`SqlSettings`](super::sql::SqlSettings)).
#[derive(Debug, Clone)]
pub(crate) struct Settings<K> {
    pub(crate) id: String,
    pub(crate) kind: K,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
}

/// The settings of a network middleware adapter.
pub(crate) type NetSettings = Settings<String>;

impl NetSettings {
    pub(crate) fn from_config(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Settings::resolve(cfg, cfg.kind.clone(), DEFAULT_OP_TIMEOUT)
    }

    pub(crate) fn unsupported(&self, op: &str) -> ComponentError {
        ComponentError::Unsupported {
            kind: self.kind.clone(),
            op: op.to_string(),
        }
    }
}

impl<K> Settings<K> {
    /// The settings of `cfg`, known as `kind`: the connect timeout defaults to
    /// [`DEFAULT_CONNECT_TIMEOUT`], the operation timeout to `default_op_timeout`.
    pub(crate) fn resolve(
        cfg: &ComponentConfig,
        kind: K,
        default_op_timeout: Duration,
    ) -> Result<Self, ComponentError> {
        let ms = |name: &str, default: Duration| -> Result<Duration, ComponentError> {
            match cfg.options.get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| ComponentError::Connect {
                        component: cfg.id.clone(),
                        reason: format!(
                            "option `{name}` must be a positive number of milliseconds, not `{v}`"
                        ),
                    }),
            }
        };
        Ok(Settings {
            id: cfg.id.clone(),
            kind,
            connect_timeout: ms("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
            op_timeout: ms("timeout_ms", default_op_timeout)?,
        })
    }

    pub(crate) fn connect_err(&self, reason: impl Into<String>) -> ComponentError {
        ComponentError::Connect {
            component: self.id.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn lost(&self, reason: impl Into<String>) -> ComponentError {
        ComponentError::Lost {
            component: self.id.clone(),
            reason: reason.into(),
        }
    }

    /// Run a connect step under the connect timeout; elapsing is a `Connect` error.
    pub(crate) async fn connecting<T>(
        &self,
        what: &str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ComponentError> {
        tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| {
                self.connect_err(format!(
                    "{what} timed out after {} ms",
                    self.connect_timeout.as_millis()
                ))
            })
    }

    /// Run one network await under the operation timeout; elapsing is `Lost`.
    pub(crate) async fn op<T>(
        &self,
        what: &str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ComponentError> {
        self.op_within(what, self.op_timeout, fut).await
    }

    pub(crate) async fn op_within<T>(
        &self,
        what: &str,
        limit: Duration,
        fut: impl Future<Output = T>,
    ) -> Result<T, ComponentError> {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| self.lost(format!("{what}: no answer within {} ms", limit.as_millis())))
    }
}

/// The address the harness connects to: the target's forwarded address when there is one, else
/// the configured host and port (default: 127.0.0.1 and the kind's port).
pub(crate) fn server_addr(cfg: &ComponentConfig, endpoint: &Endpoint) -> (String, u16) {
    if let Some(addr) = endpoint.addr {
        return (addr.ip().to_string(), addr.port());
    }
    let port = cfg
        .port
        .or_else(|| component_kind(&cfg.kind).and_then(|k| k.default_port))
        .unwrap_or(0);
    (cfg.host.clone().unwrap_or_else(|| "127.0.0.1".into()), port)
}

/// `host:port`, with brackets around an IPv6 literal.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Is `options.<name>` set to a true value (`true`, `yes`, `1`, `on`)?
pub(crate) fn option_flag(cfg: &ComponentConfig, name: &str) -> bool {
    cfg.options.get(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "1" | "on"
        )
    })
}

/// Capabilities of a kind plus `lifecycle` when the plan gives the component stop and start
/// commands (cases that restart the server need both).
pub(crate) fn capabilities_of(cfg: &ComponentConfig) -> Vec<String> {
    let mut caps = kind_capabilities(&cfg.kind).unwrap_or_default();
    if cfg.lifecycle.stop.is_some() && cfg.lifecycle.start.is_some() {
        caps.push("lifecycle".into());
    }
    caps
}

// ---------------------------------------------------------------- arguments

fn bad(op: &str, reason: String) -> ComponentError {
    ComponentError::Arguments {
        op: op.to_string(),
        reason,
    }
}

/// An optional string argument (`null` counts as absent).
pub(crate) fn arg_opt_str<'a>(
    op: &str,
    args: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ComponentError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(op, format!("`{name}` must be a string, not {other}"))),
    }
}

/// An optional non-negative integer argument; numeric strings are accepted too.
pub(crate) fn arg_opt_u64(
    op: &str,
    args: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, ComponentError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
        Some(other) => Err(bad(
            op,
            format!("`{name}` must be a non-negative integer, not {other}"),
        )),
    }
}

/// A required non-negative integer argument.
pub(crate) fn arg_u64(
    op: &str,
    args: &Map<String, Value>,
    name: &str,
) -> Result<u64, ComponentError> {
    arg_opt_u64(op, args, name)?
        .ok_or_else(|| bad(op, format!("`{name}` (an integer) is required")))
}

/// An optional integer argument (may be negative).
pub(crate) fn arg_opt_i64(
    op: &str,
    args: &Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, ComponentError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().ok()),
        Some(other) => Err(bad(op, format!("`{name}` must be an integer, not {other}"))),
    }
}

/// An optional boolean argument.
pub(crate) fn arg_bool(
    op: &str,
    args: &Map<String, Value>,
    name: &str,
    default: bool,
) -> Result<bool, ComponentError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(
            op,
            format!("`{name}` must be true or false, not {other}"),
        )),
    }
}

/// `within_ms` (default 5 s).
pub(crate) fn arg_within(op: &str, args: &Map<String, Value>) -> Result<Duration, ComponentError> {
    Ok(arg_opt_u64(op, args, "within_ms")?.map_or(DEFAULT_WITHIN, Duration::from_millis))
}

/// The bytes a step sends: `payload` (a string; other scalars as their JSON text), or
/// `payload_size` bytes of a repeating printable pattern, or nothing.
pub(crate) fn arg_payload(op: &str, args: &Map<String, Value>) -> Result<Vec<u8>, ComponentError> {
    if let Some(n) = arg_opt_u64(op, args, "payload_size")? {
        if args.contains_key("payload") {
            return Err(bad(op, "give `payload` or `payload_size`, not both".into()));
        }
        return Ok(pattern_bytes(n as usize));
    }
    match args.get("payload") {
        None => Ok(Vec::new()),
        Some(Value::Array(_) | Value::Object(_)) => Ok(args["payload"].to_string().into_bytes()),
        Some(v) => Ok(value_text(v).into_bytes()),
    }
}

/// `n` bytes of `0123456789abcdefghijklmnopqrstuvwxyz…` repeated (printable, so results stay
/// readable, and position-dependent, so a corrupted transfer changes it).
pub(crate) fn pattern_bytes(n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..n).map(|i| ALPHABET[i % ALPHABET.len()]).collect()
}

/// Bytes as the text a result carries (invalid UTF-8 replaced).
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- TLS

/// A rustls client configuration using the ring provider: the system's roots, plus the PEM
/// certificates in `options.tls_ca_file` when given (then only those).
pub(crate) fn tls_client_config(cfg: &ComponentConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(file) = cfg.options.get("tls_ca_file") {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("cannot read tls_ca_file {file}: {e}"))?;
        for c in certs {
            let c = c.map_err(|e| format!("bad certificate in {file}: {e}"))?;
            roots
                .add(c)
                .map_err(|e| format!("bad certificate in {file}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("tls_ca_file {file} holds no certificate"));
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = roots.add(c);
        }
    }
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

// ---------------------------------------------------------------- pubsub inbox

/// One received pub/sub message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) retain: bool,
    pub(crate) qos: u8,
}

impl Message {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "topic": self.topic,
            "payload": text(&self.payload),
            "payload_len": self.payload.len(),
            "retain": self.retain,
            "qos": self.qos,
        })
    }
}

/// Which wildcard dialect a topic filter uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wildcards {
    /// `a/+/c`, `a/#`
    Mqtt,
    /// `a.*.c`, `a.>`
    Nats,
}

/// Does the concrete `topic` match `filter` (exact, or through the dialect's wildcards)?
pub(crate) fn topic_matches(filter: &str, topic: &str, w: Wildcards) -> bool {
    let (sep, one, rest) = match w {
        Wildcards::Mqtt => ('/', "+", "#"),
        Wildcards::Nats => ('.', "*", ">"),
    };
    let mut f = filter.split(sep);
    let mut t = topic.split(sep);
    loop {
        match (f.next(), t.next()) {
            (Some(x), _) if x == rest => return true,
            (Some(x), Some(y)) if x == one || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Messages received for a session's subscriptions, kept until a step expects them. One
/// bounded queue between the client's delivery task and the steps (no unbounded channel in
/// front of it): at most [`INBOX_LIMIT`] messages wait, the oldest go first, and the delivering
/// side never blocks (an MQTT event loop must keep polling).
pub(crate) struct Inbox {
    shared: Arc<InboxShared>,
    wildcards: Wildcards,
}

/// The delivering side of an [`Inbox`]; clones share it. When every clone is gone, the inbox
/// knows the connection that delivered went away.
pub(crate) struct InboxSender(Arc<InboxShared>);

/// The inbox is gone (its session closed): the message was not kept.
#[derive(Debug)]
pub(crate) struct InboxClosed;

struct InboxShared {
    /// Waiting messages with their arrival number, oldest first.
    queue: std::sync::Mutex<InboxQueue>,
    arrived: tokio::sync::Notify,
}

#[derive(Default)]
struct InboxQueue {
    messages: VecDeque<(u64, Message)>,
    next_seq: u64,
    senders: usize,
    receiver_gone: bool,
}

impl InboxShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// At most this many unexpected messages are kept (the oldest go first).
const INBOX_LIMIT: usize = 100_000;

impl InboxSender {
    /// Keep `m` for the steps, dropping the oldest waiting message when the inbox is full.
    pub(crate) fn send(&self, m: Message) -> Result<(), InboxClosed> {
        {
            let mut q = self.0.lock();
            if q.receiver_gone {
                return Err(InboxClosed);
            }
            if q.messages.len() >= INBOX_LIMIT {
                q.messages.pop_front();
            }
            let seq = q.next_seq;
            q.next_seq += 1;
            q.messages.push_back((seq, m));
        }
        self.0.arrived.notify_one();
        Ok(())
    }
}

impl Clone for InboxSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        InboxSender(self.0.clone())
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        self.0.lock().senders -= 1;
        self.0.arrived.notify_one();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.receiver_gone = true;
        q.messages.clear();
    }
}

impl Inbox {
    pub(crate) fn new(wildcards: Wildcards) -> (InboxSender, Self) {
        let shared = Arc::new(InboxShared {
            queue: std::sync::Mutex::new(InboxQueue {
                senders: 1,
                ..InboxQueue::default()
            }),
            arrived: tokio::sync::Notify::new(),
        });
        (InboxSender(shared.clone()), Inbox { shared, wildcards })
    }

    /// Take the first waiting message that matches, looking only at those that arrived at or
    /// after `from` (earlier ones were looked at already); also returns where to look next.
    fn take(&self, from: u64, topic: &str, payload: Option<&[u8]>) -> (Option<Message>, u64) {
        let mut q = self.shared.lock();
        let next = q.next_seq;
        let i = q
            .messages
            .iter()
            .position(|(seq, m)| *seq >= from && self.accepts(m, topic, payload));
        (i.and_then(|i| q.messages.remove(i)).map(|(_, m)| m), next)
    }

    fn accepts(&self, m: &Message, topic: &str, payload: Option<&[u8]>) -> bool {
        topic_matches(topic, &m.topic, self.wildcards)
            && payload.is_none_or(|p| p == m.payload.as_slice())
    }

    /// The first message on `topic` (and with `payload`, if given) that arrived or arrives
    /// within `within`. `Err(true)` when the delivering connection has gone away.
    pub(crate) async fn expect(
        &mut self,
        topic: &str,
        payload: Option<&[u8]>,
        within: Duration,
    ) -> Result<Option<Message>, bool> {
        let deadline = Instant::now() + within;
        let mut from = 0;
        loop {
            // Registered before looking, so a message arriving in between is not missed.
            let arrived = self.shared.arrived.notified();
            let (found, next) = self.take(from, topic, payload);
            if let Some(m) = found {
                return Ok(Some(m));
            }
            from = next;
            if self.shared.lock().senders == 0 {
                return Err(true);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Forget buffered messages on topics matching `filter` (after an unsubscribe).
    pub(crate) fn forget(&mut self, filter: &str) {
        let w = self.wildcards;
        self.shared
            .lock()
            .messages
            .retain(|(_, m)| !topic_matches(filter, &m.topic, w));
    }

    /// How many messages wait (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.shared.lock().messages.len()
    }
}

/// The arguments of `pubsub.expect`: the `topic` (a filter), the payload to match when the step
/// gives a `payload`, and `within_ms`.
pub(crate) fn expect_args(
    op: &str,
    args: &Map<String, Value>,
) -> Result<(String, Option<Vec<u8>>, Duration), ComponentError> {
    let topic = super::arg_str(op, args, "topic")?.to_string();
    let payload = match args.get("payload") {
        Some(_) => Some(arg_payload(op, args)?),
        None => None,
    };
    Ok((topic, payload, arg_within(op, args)?))
}

/// `pubsub.expect`'s failure when nothing came.
pub(crate) fn no_message(topic: &str, within: Duration) -> ComponentError {
    ComponentError::Operation(format!(
        "no message on {topic} within {} ms",
        within.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_protocols() {
        assert!(topic_matches("a/+/c", "a/b/c", Wildcards::Mqtt));
        assert!(topic_matches("a/#", "a/b/c", Wildcards::Mqtt));
        assert!(topic_matches("a/#", "a", Wildcards::Mqtt));
        assert!(!topic_matches("a/+", "a/b/c", Wildcards::Mqtt));
        assert!(topic_matches("a.*.c", "a.b.c", Wildcards::Nats));
        assert!(topic_matches("a.>", "a.b.c", Wildcards::Nats));
        assert!(!topic_matches("a.b", "a.b.c", Wildcards::Nats));
        assert!(topic_matches("x/y", "x/y", Wildcards::Mqtt));
    }

    #[test]
    fn pattern_is_printable_and_sized() {
        let p = pattern_bytes(100);
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(u8::is_ascii_alphanumeric));
    }

    #[tokio::test]
    async fn inbox_keeps_unexpected_messages_for_later() {
        let (tx, mut inbox) = Inbox::new(Wildcards::Mqtt);
        let msg = |t: &str, p: &str| Message {
            topic: t.into(),
            payload: p.as_bytes().to_vec(),
            retain: false,
            qos: 0,
        };
        tx.send(msg("a", "1")).unwrap();
        tx.send(msg("b", "2")).unwrap();
        let got = inbox
            .expect("b", None, Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.payload, b"2");
        let got = inbox
            .expect("a", Some(b"1"), Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.topic, "a");
        assert!(
            inbox
                .expect("a", None, Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
        drop(tx);
        assert!(
            inbox
                .expect("a", None, Duration::from_millis(10))
                .await
                .is_err()
        );
    }

    /// Deliveries used to wait in an unbounded channel until a step drained them, so a busy
    /// topic with no `pubsub.expect` grew the harness's memory without limit before the inbox's
    /// cap applied. Now the one queue is capped where messages arrive.
    #[tokio::test]
    async fn inbox_is_bounded_where_messages_arrive() {
        let (tx, mut inbox) = Inbox::new(Wildcards::Mqtt);
        for i in 0..INBOX_LIMIT + 10 {
            tx.send(Message {
                topic: "busy".into(),
                payload: i.to_string().into_bytes(),
                retain: false,
                qos: 0,
            })
            .unwrap();
        }
        assert_eq!(inbox.waiting(), INBOX_LIMIT);
        // The oldest went first.
        let first = inbox
            .expect("busy", None, Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.payload, b"10");
    }
}
