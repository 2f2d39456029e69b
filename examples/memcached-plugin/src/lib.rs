//! An adaptest component plugin for Memcached, over its text protocol, built only on
//! `adaptest-plugin-sdk`: the worked example of a vendor bringing a product adaptest does not
//! know. Capability `kv`; operations `kv.set`, `kv.get`, `kv.exists`, `kv.del`, `kv.incr`,
//! `kv.expire`, `kv.ttl`, `kv.ping`.
//!
//! Semantics follow the `kv` capability as the built-in Redis adapter defines it, within what
//! Memcached can do: expiry has a resolution of one second (`ttl_ms` is rounded up), `kv.incr`
//! on a missing key creates it, a negative `by` decrements and stops at 0 (Memcached's rule).
//!
//! Options: `timeout_ms` (connect and each reply, default 5000).

use adaptest_plugin_sdk::serde_json::{Map, Value, json};
use adaptest_plugin_sdk::{Adapter, Description, Error, OpenConfig, Session, arg_str, value_text};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The adapter: stateless; every session is one TCP connection.
pub struct Memcached;

const OPERATIONS: &[&str] = &[
    "kv.set",
    "kv.get",
    "kv.exists",
    "kv.del",
    "kv.incr",
    "kv.expire",
    "kv.ttl",
    "kv.ping",
];

impl Adapter for Memcached {
    fn describe(&self) -> Description {
        Description {
            name: "memcached".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["kv".into()],
            operations: OPERATIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn open(&self, config: &OpenConfig) -> Result<Box<dyn Session>, Error> {
        let addr = match (&config.addr, &config.host, config.port) {
            (Some(a), _, _) => a.clone(),
            (None, Some(h), p) => format!("{h}:{}", p.unwrap_or(11211)),
            (None, None, p) => format!("127.0.0.1:{}", p.unwrap_or(11211)),
        };
        let timeout = match config.option("timeout_ms") {
            None => Duration::from_secs(5),
            Some(t) => Duration::from_millis(t.parse().map_err(|_| {
                Error::connect(format!(
                    "option timeout_ms must be a number of milliseconds, not `{t}`"
                ))
            })?),
        };
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| Error::connect(format!("cannot resolve {addr}: {e}")))?
            .next()
            .ok_or_else(|| Error::connect(format!("{addr} has no address")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)
            .map_err(|e| Error::connect(format!("cannot connect to {addr}: {e}")))?;
        let setup = |s: &TcpStream| {
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.set_nodelay(true)?;
            s.try_clone()
        };
        let writer = setup(&stream).map_err(|e| Error::connect(format!("{addr}: {e}")))?;
        let mut conn = Conn {
            addr,
            reader: BufReader::new(stream),
            writer,
            version: None,
        };
        // Memcached answers `version` without authentication: proof that it is Memcached.
        let line = conn
            .command("version")
            .map_err(|e| Error::connect(e.message))?;
        match line.strip_prefix("VERSION ") {
            Some(v) => conn.version = Some(v.trim().to_string()),
            None => {
                return Err(Error::connect(format!(
                    "{} does not speak the Memcached text protocol: {line:?}",
                    conn.addr
                )));
            }
        }
        Ok(Box::new(conn))
    }
}

struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    version: Option<String>,
}

impl Conn {
    fn lost(&self, e: &std::io::Error) -> Error {
        Error::lost(format!(
            "connection to memcached at {} lost: {e}",
            self.addr
        ))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer.write_all(bytes).map_err(|e| self.lost(&e))
    }

    /// One reply line without its `\r\n`; `ERROR`/`CLIENT_ERROR`/`SERVER_ERROR` become errors.
    fn line(&mut self) -> Result<String, Error> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.lost(&e))?;
        if n == 0 {
            return Err(Error::lost(format!(
                "memcached at {} closed the connection",
                self.addr
            )));
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR") {
            return Err(Error::operation(line));
        }
        Ok(line)
    }

    /// Send a one-line command and read its one-line reply.
    fn command(&mut self, cmd: &str) -> Result<String, Error> {
        self.send(format!("{cmd}\r\n").as_bytes())?;
        self.line()
    }

    /// `get`: the value, or `None` when the key is absent.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let head = self.command(&format!("get {key}"))?;
        if head == "END" {
            return Ok(None);
        }
        let len: usize = head
            .strip_prefix("VALUE ")
            .and_then(|rest| rest.split(' ').nth(2))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::operation(format!("unexpected reply to get: {head:?}")))?;
        let mut data = vec![0; len + 2];
        self.reader
            .read_exact(&mut data)
            .map_err(|e| self.lost(&e))?;
        data.truncate(len);
        let end = self.line()?;
        if end != "END" {
            return Err(Error::operation(format!(
                "unexpected end of get reply: {end:?}"
            )));
        }
        Ok(Some(data))
    }

    /// `set`/`add` with a value; the reply line (`STORED`, `NOT_STORED`).
    fn store(&mut self, verb: &str, key: &str, value: &str, exptime: u64) -> Result<String, Error> {
        let mut msg = format!("{verb} {key} 0 {exptime} {}\r\n", value.len()).into_bytes();
        msg.extend_from_slice(value.as_bytes());
        msg.extend_from_slice(b"\r\n");
        self.send(&msg)?;
        self.line()
    }
}

/// Memcached keys: 1–250 bytes, no spaces or control characters.
fn key<'a>(op: &str, args: &'a Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    let k = arg_str(op, args, name)?;
    if k.is_empty() || k.len() > 250 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::arguments(format!(
            "{op}: `{k}` is not a Memcached key (1–250 bytes, no spaces or control characters)"
        )));
    }
    Ok(k)
}

fn opt_int(op: &str, args: &Map<String, Value>, name: &str) -> Result<Option<i64>, Error> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| Error::arguments(format!("{op}: `{name}` must be an integer"))),
    }
}

/// Memcached's expiry in whole seconds from milliseconds, rounded up (0 would mean "never").
fn exptime(ttl_ms: i64) -> u64 {
    (ttl_ms.max(1) as u64).div_ceil(1000)
}

impl Session for Conn {
    fn server_version(&mut self) -> Option<String> {
        self.version.clone()
    }

    fn execute(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, Error> {
        match op {
            "kv.set" => {
                let k = key(op, args, "key")?;
                let value = args
                    .get("value")
                    .map(value_text)
                    .ok_or_else(|| Error::arguments("kv.set: `value` is required"))?;
                let exp = opt_int(op, args, "ttl_ms")?.map_or(0, exptime);
                match self.store("set", k, &value, exp)?.as_str() {
                    "STORED" => Ok(json!(true)),
                    other => Err(Error::operation(format!("set {k}: {other}"))),
                }
            }
            "kv.get" => {
                let k = key(op, args, "key")?;
                Ok(self.get(k)?.map_or(Value::Null, |b| {
                    Value::String(String::from_utf8_lossy(&b).into_owned())
                }))
            }
            "kv.exists" => {
                let k = key(op, args, "key")?;
                Ok(json!(self.get(k)?.is_some()))
            }
            "kv.del" => {
                let keys: Vec<String> = match args.get("keys") {
                    Some(Value::Array(ks)) if !ks.is_empty() => ks.iter().map(value_text).collect(),
                    _ => vec![key(op, args, "key")?.to_string()],
                };
                let mut deleted = 0;
                for k in &keys {
                    match self.command(&format!("delete {k}"))?.as_str() {
                        "DELETED" => deleted += 1,
                        "NOT_FOUND" => {}
                        other => return Err(Error::operation(format!("delete {k}: {other}"))),
                    }
                }
                Ok(json!(deleted))
            }
            "kv.incr" => {
                let k = key(op, args, "key")?;
                let by = opt_int(op, args, "by")?.unwrap_or(1);
                let verb = if by < 0 { "decr" } else { "incr" };
                for _ in 0..3 {
                    let reply = self.command(&format!("{verb} {k} {}", by.unsigned_abs()))?;
                    if reply != "NOT_FOUND" {
                        let n: i64 = reply.trim().parse().map_err(|_| {
                            Error::operation(format!("{verb} {k}: unexpected reply {reply:?}"))
                        })?;
                        return Ok(json!(n));
                    }
                    // A missing key counts from 0, as in Redis; `add` loses a race gracefully.
                    let start = by.max(0);
                    if self.store("add", k, &start.to_string(), 0)? == "STORED" {
                        return Ok(json!(start));
                    }
                }
                Err(Error::operation(format!(
                    "{verb} {k}: the key kept disappearing"
                )))
            }
            "kv.expire" => {
                let k = key(op, args, "key")?;
                let ttl = opt_int(op, args, "ttl_ms")?
                    .ok_or_else(|| Error::arguments("kv.expire: `ttl_ms` is required"))?;
                match self
                    .command(&format!("touch {k} {}", exptime(ttl)))?
                    .as_str()
                {
                    "TOUCHED" => Ok(json!(true)),
                    "NOT_FOUND" => Ok(json!(false)),
                    other => Err(Error::operation(format!("touch {k}: {other}"))),
                }
            }
            "kv.ttl" => {
                // Meta get with the `t` flag: remaining seconds, -1 for no expiry.
                let k = key(op, args, "key")?;
                let reply = self.command(&format!("mg {k} t"))?;
                if reply == "EN" {
                    return Ok(Value::Null);
                }
                let secs: i64 = reply
                    .split(' ')
                    .find_map(|f| f.strip_prefix('t'))
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        Error::operation(format!("mg {k} t: unexpected reply {reply:?}"))
                    })?;
                Ok(json!(if secs < 0 { -1 } else { secs * 1000 }))
            }
            "kv.ping" => {
                let v = self.command("version")?;
                if v.starts_with("VERSION ") {
                    Ok(json!("PONG"))
                } else {
                    Err(Error::operation(format!("version: {v}")))
                }
            }
            other => Err(Error::unsupported(other)),
        }
    }

    fn close(&mut self) -> Result<(), Error> {
        let _ = self.writer.write_all(b"quit\r\n");
        Ok(())
    }
}

adaptest_plugin_sdk::export_adapter!(Memcached);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        assert_eq!(exptime(1), 1);
        assert_eq!(exptime(1000), 1);
        assert_eq!(exptime(1001), 2);
        assert_eq!(exptime(0), 1, "0 would mean `never expires`");
    }

    #[test]
    fn keys_are_checked_before_they_reach_the_wire() {
        let mut a = Map::new();
        a.insert("key".into(), json!("has space"));
        let e = key("kv.get", &a, "key").unwrap_err();
        assert_eq!(e.kind, adaptest_plugin_sdk::ErrorKind::Arguments);
        a.insert("key".into(), json!("ok:键"));
        assert_eq!(key("kv.get", &a, "key").unwrap(), "ok:键");
    }

    #[test]
    fn describes_capability_kv() {
        let d = Memcached.describe();
        assert_eq!(d.name, "memcached");
        assert_eq!(d.capabilities, vec!["kv".to_string()]);
        assert!(d.operations.iter().any(|o| o == "kv.incr"));
    }
}
