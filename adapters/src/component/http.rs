//! The `http` component kind (capability `http`): web servers and application servers (nginx,
//! Apache httpd, Tomcat-like containers, …) through `reqwest` over rustls with ring.
//!
//! A session is one HTTP client with a pool of one idle connection per host, so consecutive
//! `http.request`s on a session reuse the connection when the server keeps it alive; every
//! result says whether it did (`connection_reused`, from the local address of the TCP
//! connection that carried the response). Redirects are not followed: the status is the
//! server's own.
//!
//! Options: `base_path` (prefixed to every `path`), `tls = "true"` (https), `tls_ca_file`,
//! `server_name` (the host name put in the URL — `Host` header, SNI and certificate check — while
//! still connecting to the component's address), `connect_timeout_ms`, `timeout_ms`.

use super::net::{self, NetSettings};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
    value_text,
};
use hyper_util::client::legacy::connect::HttpInfo;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

    fn tls_config(&self) -> Result<rustls::ClientConfig, ComponentError> {
        let built = self.tls.get_or_init(|| {
            net::tls_client_config(&self.cfg).map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            })
        });
        match built {
            Ok(c) => Ok((**c).clone()),
            Err(e) => Err(self.net.connect_err(e.clone())),
        }
    }
}

#[async_trait::async_trait]
impl Component for HttpComponent {
    configured_identity!(net::capabilities_of);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let (host, port) = net::server_addr(&self.cfg, endpoint);
        // The client connects lazily: find out now whether anything listens there.
        let addr = net::probe_tcp(&self.net, &host, port).await?;
        let tls = net::option_flag(&self.cfg, "tls");
        let scheme = if tls { "https" } else { "http" };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.net.connect_timeout)
            .timeout(self.net.op_timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(90))
            .http1_only()
            .tcp_nodelay(true)
            // Always preconfigured: the crate is built without a default crypto provider.
            .tls_backend_preconfigured(self.tls_config()?);
        let authority = match self.cfg.options.get("server_name") {
            Some(name) => {
                builder = builder.resolve(name, addr);
                if port == if tls { 443 } else { 80 } {
                    name.clone()
                } else {
                    format!("{name}:{port}")
                }
            }
            None => net::host_port(&addr.ip().to_string(), addr.port()),
        };
        let client = builder.build().map_err(|e| {
            self.net
                .connect_err(format!("cannot set up the HTTP client: {e}"))
        })?;
        let base_path = self
            .cfg
            .options
            .get("base_path")
            .map(|p| p.trim_end_matches('/').to_string())
            .unwrap_or_default();
        Ok(Box::new(HttpSession {
            net: self.net.clone(),
            client,
            base: format!("{scheme}://{authority}{base_path}"),
            last_local: None,
        }))
    }
}

struct HttpSession {
    net: NetSettings,
    client: reqwest::Client,
    /// `scheme://authority/base_path`, without a trailing slash.
    base: String,
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

impl HttpSession {
    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    fn request_error(&self, what: &str, e: &reqwest::Error) -> ComponentError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_builder() {
            ComponentError::Operation(format!("{what}: {reason}"))
        } else if e.is_timeout() {
            self.net.lost(format!(
                "{what}: no complete response within {} ms",
                self.net.op_timeout.as_millis()
            ))
        } else {
            self.net.lost(format!("{what}: {reason}"))
        }
    }

    async fn request(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        let method = net::arg_opt_str(op, args, "method")?
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
            ComponentError::Arguments {
                op: op.into(),
                reason: format!("`{method}` is not an HTTP method"),
            }
        })?;
        let path = arg_str(op, args, "path")?;
        let url = self.url(path);
        let what = format!("{method} {path}");
        let mut req = self.client.request(method.clone(), &url);
        match args.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    req = req.header(k.as_str(), value_text(v));
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
        if let Some(body) = body {
            req = req.body(body);
        }
        let mut resp = self
            .net
            .op(&what, req.send())
            .await?
            .map_err(|e| self.request_error(&what, &e))?;
        let status = resp.status().as_u16();
        let version = format!("{:?}", resp.version());
        let local = resp
            .extensions()
            .get::<HttpInfo>()
            .map(HttpInfo::local_addr);
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
        let mut kept = Vec::new();
        let mut total = 0usize;
        let mut hash = Sha256::new();
        loop {
            let chunk = self
                .net
                .op(&what, resp.chunk())
                .await?
                .map_err(|e| self.request_error(&format!("{what} (reading the body)"), &e))?;
            let Some(chunk) = chunk else { break };
            total += chunk.len();
            hash.update(&chunk);
            if kept.len() < BODY_LIMIT {
                let room = BODY_LIMIT - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        let reused = match (self.last_local, local) {
            (Some(prev), Some(now)) => Some(prev == now),
            (None, Some(_)) => Some(false),
            _ => None,
        };
        self.last_local = local;
        let mut out = json!({
            "status": status,
            "headers": headers,
            "body": net::text(&kept),
            "body_len": total,
            "body_truncated": total > kept.len(),
            "body_sha256": hex(&hash.finalize()),
            "http_version": version,
        });
        if let Some(r) = reused {
            out["connection_reused"] = Value::Bool(r);
        }
        if let Some(n) = sent_len {
            out["sent_len"] = json!(n);
        }
        Ok(out)
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
