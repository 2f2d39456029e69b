//! A minimal QMP (QEMU Machine Protocol) client over the guest's unix socket: capabilities
//! negotiation, commands with JSON arguments, HMP pass-through, and skipping async events.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long one command may take to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure talking QMP.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QmpError {
    #[error("failed to connect to the QMP socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP i/o failed during `{command}`")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP `{command}` got no answer within {secs}s")]
    Timeout { command: String, secs: u64 },
    #[error("QMP `{command}` failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP protocol error during `{command}`: {reason}")]
    Protocol { command: String, reason: String },
}

/// One negotiated QMP connection.
pub(crate) struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connect to `path` (retrying until `wait` has passed: QEMU creates the socket while it
    /// starts) and leave capabilities negotiation mode.
    pub(crate) async fn connect(path: &Path, wait: Duration) -> Result<Qmp, QmpError> {
        let deadline = tokio::time::Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = qmp.read_message("greeting").await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol {
                command: "greeting".into(),
                reason: format!("unexpected greeting {greeting}"),
            });
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Run `command` and return its `return` value.
    pub(crate) async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| QmpError::Io {
                command: command.into(),
                source,
            })?;
        loop {
            let reply = self.read_message(command).await?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(QmpError::Command {
                    command: command.into(),
                    class: err["class"].as_str().unwrap_or("?").into(),
                    desc: err["desc"].as_str().unwrap_or("?").into(),
                });
            }
            return Err(QmpError::Protocol {
                command: command.into(),
                reason: format!("unexpected reply {reply}"),
            });
        }
    }

    /// A human monitor (HMP) command through QMP; returns its text output.
    pub(crate) async fn hmp(&mut self, line: &str) -> Result<String, QmpError> {
        let out = self
            .execute(
                "human-monitor-command",
                Some(json!({ "command-line": line })),
            )
            .await?;
        Ok(out.as_str().unwrap_or_default().to_string())
    }

    /// `quit`: QEMU exits at once (the socket closes, which may cut the reply short).
    pub(crate) async fn quit(mut self) {
        let _ = self.execute("quit", None).await;
    }

    async fn read_message(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout {
                command: command.into(),
                secs: REPLY_TIMEOUT.as_secs(),
            })?
            .map_err(|source| QmpError::Io {
                command: command.into(),
                source,
            })?;
        if n == 0 {
            return Err(QmpError::Io {
                command: command.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QEMU closed the QMP socket",
                ),
            });
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol {
            command: command.into(),
            reason: format!("invalid JSON ({e}): {}", line.trim()),
        })
    }
}

/// Host-side ports of the `hostfwd` rules in `info usernet` output: (guest port, host port).
///
/// The table looks like:
/// `  TCP[HOST_FORWARD]  13       127.0.0.1 34567       10.0.2.15    22     0     0`
pub(crate) fn parse_hostfwd(info_usernet: &str) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for line in info_usernet.lines() {
        if !line.contains("HOST_FORWARD") {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        // proto fd src-addr src-port dst-addr dst-port recvq sendq
        if f.len() >= 6
            && let (Ok(host), Ok(guest)) = (f[3].parse::<u16>(), f[5].parse::<u16>())
        {
            out.push((guest, host));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_usernet() {
        let text = "Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  13       127.0.0.1 34567       10.0.2.15    22     0     0\r\n  TCP[HOST_FORWARD]  14       127.0.0.1 40001       10.0.2.15  6379     0     0\r\n  TCP[ESTABLISHED]   15       127.0.0.1 34567       10.0.2.15    22     0     0\r\n";
        assert_eq!(parse_hostfwd(text), vec![(22, 34567), (6379, 40001)]);
        assert!(parse_hostfwd("garbage HOST_FORWARD x").is_empty());
    }
}
