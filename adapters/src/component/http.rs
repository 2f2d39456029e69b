//! The `http` component kind (capability `http`): web servers and application servers (nginx,
//! Apache httpd, Tomcat-like containers, …) over HTTP/1.1, in the clear or over rustls with ring.
//!
//! A session owns one connection at a time (hyper's HTTP/1 connection API, no pool): a request
//! goes over the session's connection when the server kept it open, else over a new one, and its
//! result says which (`connection_reused`). Waiting for the previous exchange to finish before
//! choosing makes the keep-alive check exact; a pooled client races a fresh connect against the
//! idle connection coming back to its pool and, on a loaded machine, sometimes opens a new
//! connection although the server kept the old one open. Redirects are not followed: the status
//! is the server's own.
//!
//! Options: `base_path` (prefixed to every `path`), `tls = "true"` (https), `tls_ca_file`,
//! `server_name` (the host name put in the `Host` header, SNI and certificate check, while
//! still connecting to the component's address), `connect_timeout_ms`, `timeout_ms`.

use super::net::{self, NetSettings};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
    value_text,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Response bodies are returned up to this size (`body_len` gives the full size).
pub const BODY_LIMIT: usize = 1 << 20;

/// The HTTP adapter of one configured component.
pub struct HttpComponent {
    cfg: ComponentConfig,
    net: NetSettings,
    /// Built once per component: reading the system's roots is not free.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl HttpComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        Ok(HttpComponent {
            net: NetSettings::from_config(cfg)?,
            cfg: cfg.clone(),
            tls: OnceLock::new(),
        })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ComponentError> {
        let built = self.tls.get_or_init(|| {
            net::tls_client_config(&self.cfg).map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            })
        });
        match built {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(self.net.connect_err(e.clone())),
        }
    }
}

#[async_trait::async_trait]
impl Component for HttpComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        let tls = net::option_flag(&self.cfg, "tls");
        let server_name = self.cfg.options.get("server_name");
        let tls = if tls {
            let name = server_name.cloned().unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name.clone()).map_err(|e| {
                self.net
                    .connect_err(format!("`{name}` is not a TLS server name: {e}"))
            })?;
            Some((TlsConnector::from(self.tls_config()?), name))
        } else {
            None
        };
        let base_path = self
            .cfg
            .options
            .get("base_path")
            .map(|p| p.trim_end_matches('/').to_string())
            .unwrap_or_default();
        // The first connection is made now: a refused port, a timeout or an untrusted
        // certificate is a connect error of the session, not of its first request.
        let target = net::host_port(&host, port);
        let mut dialer = Dialer {
            net: self.net.clone(),
            target: target.clone(),
            tls,
        };
        let conn = dialer.dial().await.map_err(|e| self.net.connect_err(e))?;
        let default_port = if dialer.tls.is_some() { 443 } else { 80 };
        let authority = match server_name {
            Some(name) if port == default_port => name.clone(),
            Some(name) => format!("{name}:{port}"),
            None => target,
        };
        Ok(Box::new(HttpSession {
            net: self.net.clone(),
            dialer,
            host: HeaderValue::from_str(&authority).map_err(|_| {
                self.net
                    .connect_err(format!("`{authority}` cannot be a Host header"))
            })?,
            base_path,
            conn: Some(conn),
            last_local: None,
        }))
    }
}

/// How a session makes a connection: TCP (the address resolved by the first connect is kept, so
/// every connection of a session goes to the same server), then TLS when configured.
struct Dialer {
    net: NetSettings,
    /// `host:port` until the first connect, then the address it reached.
    target: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// One HTTP/1.1 connection of a session; its driver runs on its own task and ends with it.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
    /// Local address of the TCP connection: what tells one connection from the next.
    local: SocketAddr,
}

impl Dialer {
    async fn dial(&mut self) -> Result<Conn, String> {
        let target = self.target.clone();
        let tcp = self
            .net
            .connecting(
                &format!("connecting to {target}"),
                TcpStream::connect(&target),
            )
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let (local, peer) = match (tcp.local_addr(), tcp.peer_addr()) {
            (Ok(l), Ok(p)) => (l, p),
            (Err(e), _) | (_, Err(e)) => return Err(format!("cannot connect to {target}: {e}")),
        };
        self.target = peer.to_string();
        let _ = tcp.set_nodelay(true);
        let tx = match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let stream = self
                    .net
                    .connecting(
                        &format!("the TLS handshake with {target}"),
                        connector.connect(name.clone(), tcp),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| {
                        format!(
                            "TLS handshake with {target}: {}",
                            crate::text::error_chain(&e)
                        )
                    })?;
                handshake(stream).await
            }
        }
        .map_err(|e| {
            format!(
                "HTTP/1.1 handshake with {target}: {}",
                crate::text::error_chain(&e)
            )
        })?;
        Ok(Conn { tx, local })
    }
}

async fn handshake<T>(io: T) -> hyper::Result<SendRequest<Full<Bytes>>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("http connection ended: {e}");
        }
    });
    Ok(tx)
}

struct HttpSession {
    net: NetSettings,
    dialer: Dialer,
    /// The `Host` header: the server name (or address) and the port unless it is the default.
    host: HeaderValue,
    /// `options.base_path` without a trailing slash.
    base_path: String,
    /// The session's connection; `None` after an error left it in an unknown state.
    conn: Option<Conn>,
    /// Local address of the connection that carried the previous response.
    last_local: Option<SocketAddr>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `path` (after `base_path`) as a request target: a `#fragment` is dropped (clients never send
/// it), characters a URI may not hold (spaces, non-ASCII, quotes, …) are percent-encoded, and
/// everything else — `%` escapes, the `?query`, reserved characters — is kept as given.
fn request_target(base_path: &str, path: &str) -> String {
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let joined = if path.starts_with('/') {
        format!("{base_path}{path}")
    } else {
        format!("{base_path}/{path}")
    };
    let mut out = String::with_capacity(joined.len());
    for b in joined.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Methods a client may send again when a kept-alive connection turned out closed (RFC 9110
/// §9.2.2): the server cannot have acted on them twice in a way that matters.
fn idempotent(m: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(m)
}

impl HttpSession {
    /// Make the session's connection ready for a request: the open one once the previous
    /// exchange has finished on it, or a new one when the server closed it.
    /// Whether the connection is one that served an earlier exchange.
    async fn ready(&mut self, what: &str) -> Result<bool, ComponentError> {
        if let Some(conn) = self.conn.as_mut()
            && self.net.op(what, conn.tx.ready()).await?.is_ok()
        {
            return Ok(true);
        }
        self.conn = None;
        let conn = self
            .dialer
            .dial()
            .await
            .map_err(|e| self.net.lost(format!("{what}: {e}")))?;
        self.conn = Some(conn);
        Ok(false)
    }

    /// Send `req` over the session's (ready) connection: what the server answered, the local
    /// address of the connection, and whether that connection had been kept alive.
    async fn send(
        &mut self,
        what: &str,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<
        (
            hyper::Result<hyper::Response<hyper::body::Incoming>>,
            SocketAddr,
            bool,
        ),
        ComponentError,
    > {
        let kept_alive = self.ready(what).await?;
        let conn = self.conn.as_mut().expect("ready leaves a connection");
        let local = conn.local;
        let sent = self.net.op(what, conn.tx.send_request(req)).await?;
        Ok((sent, local, kept_alive))
    }

    fn build(
        &self,
        op: &str,
        method: &hyper::Method,
        target: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
    ) -> Result<hyper::Request<Full<Bytes>>, ComponentError> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(target)
            .header(HOST, self.host.clone())
            .header(ACCEPT, "*/*")
            .header(USER_AGENT, concat!("adaptest/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| ComponentError::Arguments {
                op: op.into(),
                reason: format!("`{target}` cannot be a request target: {e}"),
            })?;
        for (name, value) in headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(req)
    }

    async fn request(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        let method = net::arg_opt_str(op, args, "method")?
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|_| {
            ComponentError::Arguments {
                op: op.into(),
                reason: format!("`{method}` is not an HTTP method"),
            }
        })?;
        let path = arg_str(op, args, "path")?;
        let target = request_target(&self.base_path, path);
        let what = format!("{method} {path}");
        let mut headers = Vec::new();
        match args.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    let bad = |reason: String| ComponentError::Arguments {
                        op: op.into(),
                        reason,
                    };
                    let name = HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| bad(format!("`{k}` is not a header name")))?;
                    let value = HeaderValue::from_str(&value_text(v))
                        .map_err(|_| bad(format!("the value of header `{k}` is not valid")))?;
                    headers.push((name, value));
                }
            }
            Some(other) => {
                return Err(ComponentError::Arguments {
                    op: op.into(),
                    reason: format!("`headers` must be a table of name = value, not {other}"),
                });
            }
        }
        let body = if let Some(n) = net::arg_opt_u64(op, args, "body_size")? {
            if args.contains_key("body") {
                return Err(ComponentError::Arguments {
                    op: op.into(),
                    reason: "give `body` or `body_size`, not both".into(),
                });
            }
            Some(net::pattern_bytes(n as usize))
        } else {
            args.get("body").map(|b| match b {
                Value::Object(_) | Value::Array(_) => b.to_string().into_bytes(),
                other => value_text(other).into_bytes(),
            })
        };
        let sent_len = body.as_ref().map(Vec::len);
        let body = Bytes::from(body.unwrap_or_default());
        let result = self
            .exchange(op, &what, &method, &target, &headers, &body)
            .await;
        if result.is_err() {
            // A timed-out or failed exchange leaves the connection in an unknown state.
            self.conn = None;
        }
        let mut out = result?;
        if let Some(n) = sent_len {
            out["sent_len"] = json!(n);
        }
        Ok(out)
    }

    async fn exchange(
        &mut self,
        op: &str,
        what: &str,
        method: &hyper::Method,
        target: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
    ) -> Result<Value, ComponentError> {
        let lost = |e: &hyper::Error| format!("{what}: {}", crate::text::error_chain(e));
        let with_body = !body.is_empty();
        let req = self.build(op, method, target, headers, body)?;
        let (sent, local, kept_alive) = self.send(what, req).await?;
        let (resp, local) = match sent {
            Ok(resp) => (resp, local),
            // The server closed a kept-alive connection just as the request went out: once
            // more over a new connection if the request never left or may be repeated.
            Err(e)
                if kept_alive
                    && (e.is_canceled() || (e.is_incomplete_message() && idempotent(method))) =>
            {
                tracing::debug!("{}; sending it again over a new connection", lost(&e));
                self.conn = None;
                let req = self.build(op, method, target, headers, body)?;
                let (sent, local, _) = self.send(what, req).await?;
                (sent.map_err(|e| self.net.lost(lost(&e)))?, local)
            }
            Err(e) => return Err(self.net.lost(lost(&e))),
        };
        let status = resp.status().as_u16();
        let version = format!("{:?}", resp.version());
        let mut headers = Map::new();
        for (name, value) in resp.headers() {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&v);
                }
                _ => {
                    headers.insert(name.as_str().to_string(), Value::String(v));
                }
            }
        }
        let mut body = resp.into_body();
        let mut kept = Vec::new();
        let mut total = 0usize;
        let mut hash = Sha256::new();
        while let Some(frame) = self.net.op(what, body.frame()).await? {
            let frame = frame.map_err(|e| {
                self.net.lost(format!(
                    "{what} (reading the body): {}",
                    crate::text::error_chain(&e)
                ))
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            total += chunk.len();
            hash.update(&chunk);
            if kept.len() < BODY_LIMIT {
                let room = BODY_LIMIT - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        let reused = self.last_local == Some(local);
        self.last_local = Some(local);
        if with_body && self.conn.as_ref().is_some_and(|c| !c.tx.is_ready()) {
            // A server may answer before it has read the request body (nginx's `return` and
            // 413 do). hyper's HTTP/1 connection whose response completed while the body was
            // still being written then neither closes nor becomes ready for another request
            // (hyperium/hyper#4176): waiting for it would hang the next request until its
            // timeout. That case and a connection about to become ready cannot be told apart
            // here, so after a request with a body the connection is kept only when it is
            // ready at once; otherwise the next request goes over a new connection (and says
            // so in `connection_reused`).
            tracing::debug!("{what}: connection not ready after a request with a body; not reused");
            self.conn = None;
        }
        Ok(json!({
            "status": status,
            "headers": headers,
            "body": net::text(&kept),
            "body_len": total,
            "body_truncated": total > kept.len(),
            "body_sha256": hex(&hash.finalize()),
            "http_version": version,
            "connection_reused": reused,
        }))
    }
}

#[async_trait::async_trait]
impl Session for HttpSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let mut args = Map::new();
        args.insert("method".into(), Value::String("HEAD".into()));
        args.insert("path".into(), Value::String("/".into()));
        let res = self.request("http.request", &args).await?;
        Ok(res["headers"]["server"].as_str().map_or_else(
            || "HTTP server (no Server header)".to_string(),
            str::to_string,
        ))
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "http.request" => self.request(op, args).await,
            _ => Err(self.net.unsupported(op)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets_are_valid_uris() {
        assert_eq!(request_target("", "/a/b?x=1&y=%20"), "/a/b?x=1&y=%20");
        assert_eq!(request_target("/app", "index.html"), "/app/index.html");
        assert_eq!(request_target("/app", "/页 1#top"), "/app/%E9%A1%B5%201");
        assert_eq!(request_target("", "/q?a=\"b\"|c"), "/q?a=%22b%22%7Cc");
        for t in ["/a/b?x=1", "/app/%E9%A1%B5%201", "/q?a=%22b%22%7Cc"] {
            assert!(t.parse::<hyper::Uri>().is_ok(), "{t}");
        }
    }
}
