//! Component plugins: adapters a vendor ships, spoken to through adapter protocol v1
//! (`docs/adapter-protocol-v1.md`) and hosted in-process (`dylib:`, a C ABI table loaded with
//! libloading) or out-of-process (`exec:`, JSON lines over a child's stdin/stdout).
//!
//! A plan configures one as `kind = "plugin"` with `options = { plugin = "dylib:…" }` or
//! `{ plugin = "exec:…" }`; the plugin describes itself when the component is created (name,
//! version, capabilities) and from then on is a [`Component`] like any built-in one.
//!
//! API boundary: the harness sees only [`create`] and the [`Component`]/[`Session`] traits.

pub mod dylib;
pub mod exec;

use crate::component::{Component, ComponentConfig, ComponentError, Endpoint, Session};
use adaptest_plugin_sdk::{ErrorKind, PROTOCOL_VERSION};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The option naming the plugin: `dylib:PATH` or `exec:PROGRAM ARGS…`.
pub const PLUGIN_OPTION: &str = "plugin";
/// The option bounding every call to the plugin (`500ms`, `30s`, `2m`; default 30 s).
pub const TIMEOUT_OPTION: &str = "timeout";
/// The default of [`TIMEOUT_OPTION`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a plugin is hosted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSpec {
    /// A shared library exporting `adaptest_adapter`.
    Dylib(PathBuf),
    /// A program (and its arguments) speaking JSON lines on stdin/stdout.
    Exec { program: String, args: Vec<String> },
}

impl PluginSpec {
    /// Parse `dylib:PATH` or `exec:PROGRAM ARG…` (words split on blanks; `'…'` and `"…"` quote).
    pub fn parse(text: &str) -> Result<PluginSpec, String> {
        if let Some(path) = text.strip_prefix("dylib:") {
            let path = path.trim();
            if path.is_empty() {
                return Err("`dylib:` needs the path of the plugin library".into());
            }
            return Ok(PluginSpec::Dylib(PathBuf::from(path)));
        }
        if let Some(cmd) = text.strip_prefix("exec:") {
            let mut words = split_words(cmd)?;
            if words.is_empty() {
                return Err("`exec:` needs the plugin program".into());
            }
            let program = words.remove(0);
            return Ok(PluginSpec::Exec {
                program,
                args: words,
            });
        }
        Err(format!(
            "`{text}` does not say how the plugin is hosted: write `dylib:PATH/libplugin.so` or `exec:PROGRAM ARGS`"
        ))
    }

    /// Relative paths made relative to `base` (the plan's directory). An exec program without
    /// a `/` is looked up on `PATH` and stays as it is.
    pub fn resolved(self, base: &Path) -> PluginSpec {
        match self {
            PluginSpec::Dylib(p) if p.is_relative() => PluginSpec::Dylib(base.join(p)),
            PluginSpec::Exec { program, args }
                if program.contains('/') && Path::new(&program).is_relative() =>
            {
                PluginSpec::Exec {
                    program: base.join(&program).display().to_string(),
                    args,
                }
            }
            other => other,
        }
    }

    /// The option text that parses back into this spec.
    pub fn to_option(&self) -> String {
        match self {
            PluginSpec::Dylib(p) => format!("dylib:{}", p.display()),
            PluginSpec::Exec { program, args } => {
                let mut s = String::from("exec:");
                for (i, w) in std::iter::once(program).chain(args).enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    s.push_str(&quote_word(w));
                }
                s
            }
        }
    }
}

fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(x) => w.push(x),
                        None => return Err(format!("unterminated {c} quote in `{s}`")),
                    }
                }
            }
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Ok(words)
}

fn quote_word(w: &str) -> String {
    if !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        w.to_string()
    } else if !w.contains('\'') {
        format!("'{w}'")
    } else {
        format!("\"{w}\"")
    }
}

/// A plugin's `timeout` option, in the project's one duration grammar.
fn parse_timeout(s: &str) -> Result<Duration, crate::duration::DurationError> {
    crate::duration::parse_duration(s)
}

/// Check a plugin component's options and make its paths relative to `base` (the plan's
/// directory); pure, for plan validation. `Err` is (option name, problem).
pub fn resolve_options(
    options: &mut std::collections::BTreeMap<String, String>,
    base: &Path,
) -> Result<(), (&'static str, String)> {
    let Some(text) = options.get(PLUGIN_OPTION) else {
        return Err((
            PLUGIN_OPTION,
            "a `plugin` component needs `options = { plugin = \"dylib:PATH\" }` or `{ plugin = \"exec:PROGRAM\" }`".into(),
        ));
    };
    let spec = PluginSpec::parse(text)
        .map_err(|e| (PLUGIN_OPTION, e))?
        .resolved(base);
    if let Some(t) = options.get(TIMEOUT_OPTION) {
        parse_timeout(t).map_err(|e| (TIMEOUT_OPTION, e.to_string()))?;
    }
    options.insert(PLUGIN_OPTION.into(), spec.to_option());
    Ok(())
}

/// What a plugin said in answer to `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub operations: Vec<String>,
}

impl Described {
    /// Read a `describe` result, refusing a protocol version this host does not speak.
    fn from_result(who: &str, v: &Value) -> Result<Described, String> {
        let protocol = v.get("protocol").and_then(Value::as_u64);
        if protocol != Some(u64::from(PROTOCOL_VERSION)) {
            let theirs = protocol.map_or_else(
                || "no protocol version".to_string(),
                |p| format!("adapter protocol {p}"),
            );
            return Err(format!(
                "plugin {who} speaks {theirs}; this adaptest speaks adapter protocol {PROTOCOL_VERSION}"
            ));
        }
        let strings = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(format!("plugin {who} describes itself without a `name`"));
        }
        Ok(Described {
            name,
            version: v
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            capabilities: strings("capabilities"),
            operations: strings("operations"),
        })
    }
}

/// One way of reaching a plugin's sessions: the library itself (dylib), or one running
/// process (exec; a new one after a crash).
#[async_trait::async_trait]
pub(crate) trait Channel: Send + Sync {
    /// Send `request` (the transport adds `protocol` and `id`) and return the response
    /// envelope's `result`, or its `error` as (kind, message). Transport failures (a crash, a
    /// timeout, garbage) are `Err` with kind `lost`.
    async fn call(&self, request: Value, timeout: Duration) -> Result<Value, (ErrorKind, String)>;
}

/// The hosting of a plugin: hands out the channel sessions are opened on.
#[async_trait::async_trait]
pub(crate) trait Host: Send + Sync {
    async fn channel(&self, timeout: Duration) -> Result<Arc<dyn Channel>, String>;
}

/// A plugin component: the described plugin behind its hosting.
pub struct PluginComponent {
    cfg: ComponentConfig,
    me: Arc<PluginRef>,
    host: Arc<dyn Host>,
    timeout: Duration,
}

impl PluginComponent {
    /// Load (dylib) or start (exec) the plugin named by `cfg.options.plugin` and ask it to
    /// describe itself. Blocks for at most the call timeout.
    pub fn new(cfg: &ComponentConfig) -> Result<PluginComponent, ComponentError> {
        let connect = |reason: String| ComponentError::Connect {
            component: cfg.id.clone(),
            reason,
        };
        let text = cfg.options.get(PLUGIN_OPTION).ok_or_else(|| {
            connect("the component has no `plugin` option (`dylib:PATH` or `exec:PROGRAM`)".into())
        })?;
        let spec = PluginSpec::parse(text).map_err(connect)?;
        let timeout = match cfg.options.get(TIMEOUT_OPTION) {
            Some(t) => parse_timeout(t).map_err(|e| connect(e.to_string()))?,
            None => DEFAULT_TIMEOUT,
        };
        let who = spec.to_option();
        let (host, described): (Arc<dyn Host>, Value) = match &spec {
            PluginSpec::Dylib(path) => {
                let lib = dylib::Library::load(path).map_err(connect)?;
                let d = lib
                    .describe_blocking()
                    .map_err(|(_, m)| connect(format!("describe failed: {m}")))?;
                (Arc::new(lib), d)
            }
            PluginSpec::Exec { program, args } => {
                let d =
                    exec::describe_blocking(program, args, timeout).map_err(|(_, m)| connect(m))?;
                (
                    Arc::new(exec::ExecHost::new(program.clone(), args.clone())),
                    d,
                )
            }
        };
        let described = Described::from_result(&who, &described).map_err(connect)?;
        tracing::debug!(
            "plugin {who}: {} {} offers {:?}",
            described.name,
            described.version,
            described.capabilities
        );
        Ok(PluginComponent {
            cfg: cfg.clone(),
            me: Arc::new(PluginRef {
                id: cfg.id.clone(),
                described,
                spec: who,
            }),
            host,
            timeout,
        })
    }

    pub fn described(&self) -> &Described {
        &self.me.described
    }

    /// The `open` request's `config`.
    fn open_config(&self, endpoint: &Endpoint) -> Value {
        json!({
            "id": self.cfg.id,
            "addr": endpoint.addr.map(|a| a.to_string()),
            "host": self.cfg.host,
            "port": self.cfg.port,
            "user": self.cfg.user,
            "password": self.cfg.password.as_ref().map(|p| p.expose()),
            "database": self.cfg.database,
            "options": self.cfg.options,
            "target": endpoint.target.id(),
            "workdir": endpoint.workdir,
        })
    }
}

#[async_trait::async_trait]
impl Component for PluginComponent {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn kind(&self) -> &str {
        &self.cfg.kind
    }

    /// What the plugin described, plus `lifecycle` when the plan gives stop and start commands.
    fn capabilities(&self) -> Vec<String> {
        let mut caps = self.me.described.capabilities.clone();
        if self.cfg.lifecycle.stop.is_some() && self.cfg.lifecycle.start.is_some() {
            caps.push("lifecycle".into());
        }
        caps
    }

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let channel =
            self.host
                .channel(self.timeout)
                .await
                .map_err(|reason| ComponentError::Connect {
                    component: self.cfg.id.clone(),
                    reason,
                })?;
        let req = json!({ "op": "open", "config": self.open_config(endpoint) });
        let res = channel
            .call(req, self.timeout)
            .await
            .map_err(|e| self.me.error("open", e))?;
        let session = res.get("session").and_then(Value::as_u64).ok_or_else(|| {
            self.me.error(
                "open",
                (
                    ErrorKind::Protocol,
                    format!("the `open` result has no session id: {res}"),
                ),
            )
        })?;
        let server = res
            .get("server_version")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Box::new(PluginSession {
            component: self.me.clone(),
            channel,
            session,
            server_version: server,
            timeout: self.timeout,
            closed: false,
        }))
    }
}

/// What a session needs of its component for messages.
struct PluginRef {
    id: String,
    described: Described,
    spec: String,
}

impl PluginRef {
    /// A protocol error as the component error the harness judges by: `connect`, `lost`,
    /// `internal` (a panic) and `protocol` are infrastructure (the case errors), the rest are
    /// the product's or the suite's (the case fails).
    fn error(&self, op: &str, (kind, message): (ErrorKind, String)) -> ComponentError {
        let component = self.id.clone();
        match kind {
            ErrorKind::Connect => ComponentError::Connect {
                component,
                reason: message,
            },
            ErrorKind::Operation => ComponentError::Operation(message),
            ErrorKind::Arguments => ComponentError::Arguments {
                op: op.to_string(),
                reason: message,
            },
            ErrorKind::Unsupported => ComponentError::Unsupported {
                kind: format!("plugin {}", self.described.name),
                op: op.to_string(),
            },
            ErrorKind::Lost => ComponentError::Lost {
                component,
                reason: message,
            },
            ErrorKind::Internal | ErrorKind::Protocol => ComponentError::Lost {
                component,
                reason: format!(
                    "plugin {} ({}) failed: {message}",
                    self.described.name, self.spec
                ),
            },
        }
    }
}

struct PluginSession {
    component: Arc<PluginRef>,
    channel: Arc<dyn Channel>,
    session: u64,
    server_version: Option<String>,
    timeout: Duration,
    closed: bool,
}

#[async_trait::async_trait]
impl Session for PluginSession {
    /// The server's version as the plugin reported it on `open`, with the plugin's own.
    async fn version(&mut self) -> Result<String, ComponentError> {
        let d = &self.component.described;
        match &self.server_version {
            Some(v) => Ok(format!("{v} (plugin {} {})", d.name, d.version)),
            None => Err(ComponentError::Unsupported {
                kind: format!("plugin {}", d.name),
                op: "version".into(),
            }),
        }
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        let req = json!({ "op": "execute", "session": self.session, "name": op, "args": args });
        self.channel
            .call(req, self.timeout)
            .await
            .map_err(|e| self.component.error(op, e))
    }

    async fn close(mut self: Box<Self>) -> Result<(), ComponentError> {
        self.closed = true;
        let req = json!({ "op": "close", "session": self.session });
        self.channel
            .call(req, self.timeout)
            .await
            .map(|_| ())
            .map_err(|e| self.component.error("close", e))
    }
}

impl Drop for PluginSession {
    /// A session dropped without `close` is closed in the background (best effort).
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let channel = self.channel.clone();
            let req = json!({ "op": "close", "session": self.session });
            let timeout = self.timeout;
            rt.spawn(async move {
                let _ = channel.call(req, timeout).await;
            });
        }
    }
}

/// Run blocking work (loading a library, a describe handshake) without stalling a tokio worker
/// when called from inside the multi-threaded runtime.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The envelope of a response: its `result`, or its `error` as (kind, message).
pub(crate) fn unwrap_response(text: &str) -> Result<Value, (ErrorKind, String)> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        (
            ErrorKind::Protocol,
            format!("the response is not JSON ({e}): {}", excerpt(text)),
        )
    })?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => {
            let e = v.get("error").cloned().unwrap_or(Value::Null);
            let kind = e
                .get("kind")
                .and_then(Value::as_str)
                .and_then(ErrorKind::parse)
                .unwrap_or(ErrorKind::Internal);
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string();
            Err((kind, message))
        }
        None => Err((
            ErrorKind::Protocol,
            format!("the response has no `ok`: {}", excerpt(text)),
        )),
    }
}

/// At most 200 characters of a text, for messages.
pub(crate) fn excerpt(s: &str) -> String {
    crate::text::clip(s.trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_resolve_and_print_back() {
        assert_eq!(
            PluginSpec::parse("dylib:target/debug/libx.so").unwrap(),
            PluginSpec::Dylib("target/debug/libx.so".into())
        );
        let e = PluginSpec::parse("exec:python3 'my plugin.py' --port \"1 2\"").unwrap();
        assert_eq!(
            e,
            PluginSpec::Exec {
                program: "python3".into(),
                args: vec!["my plugin.py".into(), "--port".into(), "1 2".into()]
            }
        );
        assert_eq!(PluginSpec::parse(&e.to_option()).unwrap(), e);
        let rel = PluginSpec::parse("exec:bin/plug -v")
            .unwrap()
            .resolved(Path::new("/plans"));
        assert_eq!(rel.to_option(), "exec:/plans/bin/plug -v");
        let on_path = PluginSpec::parse("exec:plug")
            .unwrap()
            .resolved(Path::new("/plans"));
        assert_eq!(on_path.to_option(), "exec:plug");
        assert_eq!(
            PluginSpec::parse("dylib:libx.so")
                .unwrap()
                .resolved(Path::new("/p")),
            PluginSpec::Dylib("/p/libx.so".into())
        );
        assert!(PluginSpec::parse("libx.so").unwrap_err().contains("dylib:"));
        assert!(PluginSpec::parse("exec:  ").is_err());
        assert!(
            PluginSpec::parse("exec:'open")
                .unwrap_err()
                .contains("unterminated")
        );
    }

    #[test]
    fn options_are_validated() {
        let mut o = std::collections::BTreeMap::new();
        assert_eq!(
            resolve_options(&mut o, Path::new("/")).unwrap_err().0,
            "plugin"
        );
        o.insert("plugin".into(), "dylib:x.so".into());
        o.insert("timeout".into(), "3 parsecs".into());
        assert_eq!(
            resolve_options(&mut o, Path::new("/p")).unwrap_err().0,
            "timeout"
        );
        o.insert("timeout".into(), "250ms".into());
        resolve_options(&mut o, Path::new("/p")).unwrap();
        assert_eq!(o["plugin"], "dylib:/p/x.so");
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_timeout("0s").is_err());
    }

    #[test]
    fn describe_results_are_checked() {
        let ok = json!({"protocol": 1, "name": "m", "version": "1", "capabilities": ["kv"]});
        let d = Described::from_result("exec:m", &ok).unwrap();
        assert_eq!(d.capabilities, vec!["kv"]);
        let v2 = json!({"protocol": 2, "name": "m"});
        let e = Described::from_result("exec:m", &v2).unwrap_err();
        assert!(
            e.contains("adapter protocol 2") && e.contains("adapter protocol 1"),
            "{e}"
        );
        assert!(
            Described::from_result("exec:m", &json!({"protocol": 1}))
                .unwrap_err()
                .contains("name")
        );
    }

    #[test]
    fn response_envelopes() {
        assert_eq!(
            unwrap_response(r#"{"id":1,"ok":true,"result":[1]}"#).unwrap(),
            json!([1])
        );
        let e = unwrap_response(
            r#"{"id":1,"ok":false,"error":{"kind":"operation","message":"NOT_STORED"}}"#,
        )
        .unwrap_err();
        assert_eq!(e, (ErrorKind::Operation, "NOT_STORED".to_string()));
        assert_eq!(unwrap_response("hello").unwrap_err().0, ErrorKind::Protocol);
        let unknown =
            unwrap_response(r#"{"ok":false,"error":{"kind":"weird","message":"m"}}"#).unwrap_err();
        assert_eq!(unknown.0, ErrorKind::Internal);
    }
}
