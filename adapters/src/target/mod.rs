//! The [`Target`] trait and the target kinds built into this build.

mod config;
mod local;
#[cfg(target_os = "linux")]
mod process_linux;
#[cfg(target_os = "linux")]
mod qemu_system;
#[cfg(target_os = "linux")]
mod qemu_user;
mod ssh;

pub use config::{
    AccelChoice, ConfigProblem, Field, GuestSource, KindConfig, OwnGuest, QemuSystemConfig,
    QemuUserConfig, SshConfig, TargetConfig, TargetContext, TargetFields, create, parse, validate,
};
pub use local::LocalTarget;
#[cfg(target_os = "linux")]
pub use qemu_system::QemuSystemTarget;
#[cfg(target_os = "linux")]
pub use qemu_user::{QemuUserTarget, private_mount_namespace};
pub use ssh::SshTarget;

/// The one implementation of killing what we started on this host (case commands, plugin
/// programs): guarded, so pid 0, 1, our own pid and our own group are never signalled.
#[cfg(not(target_os = "linux"))]
pub(crate) use local::{kill_group, kill_tree};
#[cfg(target_os = "linux")]
pub(crate) use process_linux::{kill_group, kill_tree};

use adaptest_schema::Environment;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Target kinds this build knows, as written in a plan's `kind = "…"`.
pub const KNOWN_TARGET_KINDS: &[&str] = &["local", "ssh", "qemu-user", "qemu-system"];

/// One shell command to run on a target.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Passed to `/bin/sh -c` on the target.
    pub command: String,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    /// Variables of the harness's own environment the command must not inherit (secrets). Only
    /// targets that run on this host inherit it; `env` still sets a variable named here.
    pub env_remove: Vec<String>,
    pub cwd: Option<String>,
    pub timeout: Duration,
    /// At most this many bytes of stdout and of stderr are kept; the rest is counted and dropped.
    pub capture_limit: usize,
    /// Leave processes the command started in the background running after it exits (a
    /// lifecycle `start` that launches a daemon). Otherwise they are killed with the command.
    /// A timeout or cancel kills the whole tree either way.
    pub keep_background: bool,
    /// On a timeout or cancel, how long the tree gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How long a timed-out or cancelled command gets to exit after SIGTERM before SIGKILL, unless
/// the run says otherwise (`adaptest run --grace-period`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

impl ExecRequest {
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        ExecRequest {
            command: command.into(),
            stdin: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            cwd: None,
            timeout,
            capture_limit: 1 << 20,
            keep_background: false,
            grace: DEFAULT_GRACE,
        }
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Exit status, `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes produced beyond `capture_limit` (dropped).
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
    /// The timeout elapsed and the whole process tree was killed.
    pub timed_out: bool,
    /// The run was cancelled (Ctrl-C) and the process tree was killed.
    pub cancelled: bool,
    pub duration: Duration,
    /// Processes the command left running when it exited, which were then killed (targets
    /// that can tell: `local`, `qemu-user`). Empty with `keep_background`.
    pub leaked: Vec<adaptest_schema::LeakedProcess>,
}

/// The first line of a command, cut to 80 characters, for messages (scripts can be long).
pub fn short_command(command: &str) -> String {
    let first = command.trim_start().lines().next().unwrap_or("");
    let mut s: String = first.chars().take(80).collect();
    if s.len() < command.trim().len() {
        s.push('…');
    }
    s
}

/// A failure of the target itself (not of the command run on it).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("failed to spawn `{command}` on target `{target}`")]
    Spawn {
        target: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("target `{target}` is unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("failed to capture the environment of target `{target}`: {reason}")]
    Environment { target: String, reason: String },
    #[error("i/o with target `{target}` failed")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where work runs. Every target is driven with plain `/bin/sh`: nothing is installed on it.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// The id the plan gave this target.
    fn id(&self) -> &str;
    /// `local`, `ssh`, `qemu-system`, `qemu-user`.
    fn kind(&self) -> &'static str;
    /// Make the target ready (boot, connect). Idempotent.
    async fn start(&self) -> Result<(), TargetError>;
    /// Run one shell command; a timeout or `cancel` kills its whole process tree.
    async fn exec(
        &self,
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError>;
    /// Hardware, OS and runtime facts, captured the same way on every kind.
    async fn environment(&self) -> Result<Environment, TargetError>;
    /// Release the target (shut a VM down, close a connection). Idempotent.
    async fn stop(&self) -> Result<(), TargetError>;

    /// How much slower than a real machine of its kind this target runs commands: case
    /// timeouts are multiplied by it (as LTP's `LTP_TIMEOUT_MUL`). 1 for real machines; an
    /// emulated target answers more (qemu-user 3, qemu-system under TCG 4). Known once started.
    async fn timeout_factor(&self) -> f64 {
        1.0
    }

    /// An address on the harness's side that reaches TCP `port` on the target (the target
    /// forwards it when it is not the local host). Component adapters connect here.
    async fn connect_addr(&self, port: u16) -> Result<std::net::SocketAddr, TargetError> {
        Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Where a component adapter connects to reach a component the plan places at `host`
    /// (`None`: on the target) and TCP `port`. The default reaches `port` on the target through
    /// [`Target::connect_addr`], whatever `host` says; a target that runs here (`local`)
    /// resolves `host` itself, so the engine needs no special case per kind.
    async fn component_addr(
        &self,
        host: Option<&str>,
        port: u16,
    ) -> Result<std::net::SocketAddr, TargetError> {
        let _ = host;
        self.connect_addr(port).await
    }

    /// Copy `bytes` into `path` on the target (parents must exist). The default goes through
    /// `exec` with `cat`, so it works on any shell target.
    async fn put_file(
        &self,
        path: &str,
        bytes: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), TargetError> {
        let mut req = ExecRequest::new(
            format!("cat > {}", shell_quote(path)),
            Duration::from_secs(300),
        );
        req.stdin = Some(bytes.to_vec());
        let out = self.exec(req, cancel).await?;
        if out.exit_code == Some(0) {
            Ok(())
        } else {
            Err(TargetError::Io {
                target: self.id().to_string(),
                source: std::io::Error::other(format!(
                    "writing {path} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            })
        }
    }

    /// Read `path` from the target (up to 64 MiB).
    async fn get_file(
        &self,
        path: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TargetError> {
        let mut req = ExecRequest::new(
            format!("cat {}", shell_quote(path)),
            Duration::from_secs(300),
        );
        req.capture_limit = 64 << 20;
        let out = self.exec(req, cancel).await?;
        if out.exit_code == Some(0) && out.stdout_dropped == 0 {
            Ok(out.stdout)
        } else {
            Err(TargetError::Io {
                target: self.id().to_string(),
                source: std::io::Error::other(format!(
                    "reading {path} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            })
        }
    }
}

/// Architectures a target may declare (`arch = "…"`), by their `uname -m` names.
pub const KNOWN_ARCHES: &[&str] = &["x86_64", "aarch64", "loongarch64"];

/// The `uname -m` name of an architecture alias (`arm64` → `aarch64`, `loong64` →
/// `loongarch64`, `amd64` → `x86_64`); other names are returned unchanged.
pub fn canonical_arch(a: &str) -> &str {
    match a {
        "arm64" => "aarch64",
        "amd64" | "x64" => "x86_64",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// Quote a string for `/bin/sh`: `'it'\''s'`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
