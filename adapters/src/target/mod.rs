//! The [`Target`] trait and the target kinds built into this build.

mod local;
#[cfg(target_os = "linux")]
mod process_linux;

pub use local::LocalTarget;

use adaptest_reports::Environment;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Target kinds this build knows, as written in a plan's `kind = "…"`.
pub const KNOWN_TARGET_KINDS: &[&str] = &["local"];

/// One shell command to run on a target.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Passed to `/bin/sh -c` on the target.
    pub command: String,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout: Duration,
    /// At most this many bytes of stdout and of stderr are kept; the rest is counted and dropped.
    pub capture_limit: usize,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        ExecRequest {
            command: command.into(),
            stdin: None,
            env: Vec::new(),
            cwd: None,
            timeout,
            capture_limit: 1 << 20,
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
}
