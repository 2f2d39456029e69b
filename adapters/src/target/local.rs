//! [`LocalTarget`]: the host itself. Each command runs under `/bin/sh -c` in a process group of
//! its own, so that a timeout, a cancel or a normal exit can take down everything it started.

use super::{ExecOutput, ExecRequest, Target, TargetError};
use crate::env_probe::{environment_from, probe_request};
use adaptest_schema::Environment;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

#[cfg(target_os = "linux")]
use super::process_linux::{group_alive, kill_leftovers, kill_seen, terminate_tree};
use super::{kill_group, kill_tree};

/// How long the pipes of a finished command are still read after its process group was killed.
/// A process that left the group (`setsid`) may hold them open for ever; we stop waiting then.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Read size for stdout and stderr.
const READ_CHUNK: usize = 32 * 1024;

/// The host the harness runs on.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    id: String,
}

impl LocalTarget {
    /// The host, known in the plan as `id`.
    pub fn new(id: impl Into<String>) -> Self {
        LocalTarget { id: id.into() }
    }
}

/// Why we stopped waiting for a command.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

#[async_trait::async_trait]
impl Target for LocalTarget {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    async fn start(&self) -> Result<(), TargetError> {
        Ok(())
    }

    async fn exec(
        &self,
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError> {
        if cancel.is_cancelled() {
            // Nothing started, nothing to kill.
            return Ok(ExecOutput {
                cancelled: true,
                ..ExecOutput::default()
            });
        }
        let ExecRequest {
            command,
            stdin,
            env,
            env_remove,
            cwd,
            timeout,
            capture_limit,
            keep_background,
            grace,
        } = req;

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&command);
        for var in &env_remove {
            cmd.env_remove(var);
        }
        cmd.envs(env);
        if let Some(dir) = &cwd {
            cmd.current_dir(dir);
        }
        run_command(
            &self.id,
            cmd,
            &command,
            stdin,
            timeout,
            Policy {
                capture_limit,
                keep_background,
                grace,
            },
            cancel,
        )
        .await
    }

    async fn environment(&self) -> Result<Environment, TargetError> {
        let out = self
            .exec(probe_request(), &CancellationToken::new())
            .await?;
        let env = environment_from(&self.id, self.kind(), &out)?;
        // sysinfo reads /proc synchronously: keep it off the async workers.
        tokio::task::spawn_blocking(move || refine_with_sysinfo(env))
            .await
            .map_err(|e| TargetError::Environment {
                target: self.id.clone(),
                reason: format!("sysinfo task failed: {e}"),
            })
    }

    async fn component_addr(
        &self,
        host: Option<&str>,
        port: u16,
    ) -> Result<std::net::SocketAddr, TargetError> {
        let Some(host) = host else {
            return self.connect_addr(port).await;
        };
        let resolve = |source| TargetError::Resolve {
            host: host.to_string(),
            source,
        };
        tokio::net::lookup_host((host, port))
            .await
            .map_err(resolve)?
            .next()
            .ok_or_else(|| {
                resolve(std::io::Error::new(
                    ErrorKind::NotFound,
                    "it has no address",
                ))
            })
    }

    async fn stop(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

/// How [`run_command`] treats a command's output and processes (from its [`ExecRequest`]).
pub(super) struct Policy {
    /// Bytes of stdout and of stderr kept.
    pub(super) capture_limit: usize,
    /// Leave what the command started in the background running after it exits.
    pub(super) keep_background: bool,
    /// Between SIGTERM and SIGKILL on a timeout or cancel.
    pub(super) grace: Duration,
}

/// Spawn `cmd` (a host program, typically `/bin/sh -c …`; the caller set its program, arguments,
/// environment and working directory) in a process group of its own, feed it `stdin`, capture
/// its output up to `capture_limit`, and end its whole tree on timeout or cancel (SIGTERM, the
/// grace period, SIGKILL) or drop (SIGKILL), as well as whatever it leaves in its group when it
/// exits (listed as leaked). Shared by every target whose commands are
/// processes on this host (`local`, `qemu-user`). `command` names it in errors.
pub(super) async fn run_command(
    target: &str,
    mut cmd: Command,
    command: &str,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    policy: Policy,
    cancel: &CancellationToken,
) -> Result<ExecOutput, TargetError> {
    let Policy {
        capture_limit,
        keep_background,
        grace,
    } = policy;
    let spawn_error = |source: std::io::Error| TargetError::Spawn {
        target: target.to_owned(),
        command: super::short_command(command),
        source,
    };
    cmd.process_group(0)
        .kill_on_drop(true)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let Some(pid) = child.id() else {
        return Err(spawn_error(std::io::Error::other(
            "spawned child has no pid",
        )));
    };
    // Until the child is reaped, dropping this future (the caller gave up on us) kills the
    // tree; `kill_on_drop` then lets tokio reap the child.
    let mut guard = TreeGuard { pid, armed: true };

    let mut out = Capture::new(capture_limit);
    let mut err = Capture::new(capture_limit);
    let stdin_pipe = child.stdin.take();
    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();
    let (status, timed_out, cancelled, duration, leaked) = {
        let io = async {
            tokio::join!(
                feed_stdin(stdin_pipe, stdin),
                drain(stdout_pipe, &mut out),
                drain(stderr_pipe, &mut err),
            )
        };
        tokio::pin!(io);
        let mut io_done = false;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);

        let ending = loop {
            tokio::select! {
                biased;
                status = child.wait() => break Ending::Exited(status),
                () = cancel.cancelled() => break Ending::Cancelled,
                () = &mut deadline => break Ending::TimedOut,
                _ = &mut io, if !io_done => io_done = true,
            }
        };
        let mut leaked = Vec::new();
        let (status, timed_out, cancelled) = match ending {
            Ending::Exited(status) => {
                // Reaped: its pid may be reused from now on, so the guard must not fire.
                if status.is_ok() {
                    guard.armed = false;
                }
                // The leader is gone; whatever it left in its group goes too (this also
                // closes the pipes those leftovers hold, so draining below ends at once) —
                // unless the command's purpose is to leave a service running. Leftovers are
                // listed (a `/proc` scan, off the workers) only when there are any.
                if !keep_background && group_alive(pid) {
                    leaked = tokio::task::spawn_blocking(move || kill_leftovers(pid))
                        .await
                        .unwrap_or_default();
                }
                (status, false, false)
            }
            Ending::TimedOut | Ending::Cancelled => {
                let status =
                    terminate(&mut child, &mut guard, pid, grace, &mut io, &mut io_done).await;
                let timed_out = matches!(ending, Ending::TimedOut);
                (status, timed_out, !timed_out)
            }
        };
        let duration = started.elapsed();
        if status.is_ok() {
            guard.armed = false;
            if !io_done {
                // Ignored timeout: a process outside the group still holds a pipe.
                let _ = tokio::time::timeout(DRAIN_GRACE, &mut io).await;
            }
        }
        (status, timed_out, cancelled, duration, leaked)
    };
    let status = status.map_err(|source| TargetError::Io {
        target: target.to_owned(),
        source,
    })?;

    Ok(ExecOutput {
        exit_code: status.code(),
        signal: status.signal(),
        stdout: out.buf,
        stderr: err.buf,
        stdout_dropped: out.dropped,
        stderr_dropped: err.dropped,
        timed_out,
        cancelled,
        duration,
        leaked,
    })
}

/// End a timed-out or cancelled command as nextest does: SIGTERM to its whole tree, up to
/// `grace` for the leader to exit (its output still drained meanwhile), then SIGKILL to the
/// tree and to every process seen at SIGTERM time that is still there. Returns the reaped
/// status; the guard is disarmed as soon as the leader is reaped.
async fn terminate(
    child: &mut tokio::process::Child,
    guard: &mut TreeGuard,
    pid: u32,
    grace: Duration,
    io: &mut (impl std::future::Future<Output = ((), (), ())> + Unpin),
    io_done: &mut bool,
) -> std::io::Result<ExitStatus> {
    let seen = tokio::task::spawn_blocking(move || terminate_tree(pid))
        .await
        .unwrap_or_default();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let exited = loop {
        tokio::select! {
            biased;
            status = child.wait() => break Some(status),
            () = &mut deadline => break None,
            _ = &mut *io, if !*io_done => *io_done = true,
        }
    };
    match exited {
        Some(status) => {
            // Reaped: only the group (whose id stays unused while it has members) and the
            // processes seen, checked by start time, may be signalled now.
            if status.is_ok() {
                guard.armed = false;
            }
            let _ = tokio::task::spawn_blocking(move || {
                kill_group(pid);
                kill_seen(&seen);
            })
            .await;
            status
        }
        None => {
            let _ = tokio::task::spawn_blocking(move || {
                kill_tree(pid);
                kill_seen(&seen);
            })
            .await;
            child.wait().await
        }
    }
}

/// Fill what the probe left empty from sysinfo (this is the same machine).
fn refine_with_sysinfo(mut env: Environment) -> Environment {
    use sysinfo::{CpuRefreshKind, System};

    fill(&mut env.arch, || Some(System::cpu_arch()));
    fill(&mut env.kernel, || System::kernel_version().ok());
    fill(&mut env.hostname, || System::host_name().ok());
    fill(&mut env.os_id, || Some(System::distribution_id()));
    fill(&mut env.os_version, || System::os_version().ok());
    fill(&mut env.os_name, || System::long_os_version().ok());

    let needs_cpu = env.cores == 0 || env.cpu_model.is_empty() || env.cpu_vendor.is_empty();
    if env.memory_bytes == 0 || needs_cpu {
        let Ok(mut sys) = System::new() else {
            return env;
        };
        if env.memory_bytes == 0 {
            sys.refresh_memory();
            env.memory_bytes = sys.total_memory();
        }
        if needs_cpu {
            sys.refresh_cpu_list(CpuRefreshKind::nothing());
            let cpus = sys.cpus();
            if env.cores == 0 {
                env.cores = u32::try_from(cpus.len()).unwrap_or(u32::MAX);
            }
            if let Some(cpu) = cpus.first() {
                fill(&mut env.cpu_model, || Some(cpu.brand().to_owned()));
                fill(&mut env.cpu_vendor, || Some(cpu.vendor_id().to_owned()));
            }
        }
    }
    env
}

fn fill(field: &mut String, value: impl FnOnce() -> Option<String>) {
    if field.is_empty()
        && let Some(v) = value()
    {
        *field = v.trim().to_owned();
    }
}

/// Kills the tree of an unreaped child when dropped armed.
struct TreeGuard {
    pid: u32,
    armed: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_tree(self.pid);
        }
    }
}

/// At most `limit` bytes of a stream, and how many more were dropped.
pub(super) struct Capture {
    pub(super) buf: Vec<u8>,
    pub(super) dropped: u64,
    limit: usize,
}

impl Capture {
    pub(super) fn new(limit: usize) -> Self {
        Capture {
            buf: Vec::new(),
            dropped: 0,
            limit,
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        let keep = self.limit.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }
}

/// Read `pipe` to its end (or until it fails), keeping what `cap` allows. Never stops reading
/// early: a child writing to a full pipe would block.
async fn drain(pipe: Option<impl AsyncRead + Unpin>, cap: &mut Capture) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => cap.push(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Write `data` to the child's stdin, then close it (the pipe is dropped) so the child sees EOF.
pub(super) async fn feed_stdin(pipe: Option<impl AsyncWrite + Unpin>, data: Option<Vec<u8>>) {
    if let (Some(mut pipe), Some(data)) = (pipe, data) {
        // A command that exits without reading all of its input makes this fail with EPIPE;
        // that is the command's business, not an error of the target.
        let _ = pipe.write_all(&data).await;
    }
}

/// Outside Linux there is no `/proc` to find descendants: the process group is all we can reach.
#[cfg(not(target_os = "linux"))]
pub(crate) fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: killpg(2) takes plain integers; pgid is the group we created for the child.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kill_tree(pid: u32) {
    kill_group(pid);
}

#[cfg(not(target_os = "linux"))]
fn terminate_tree(pid: u32) -> Vec<()> {
    if let Ok(pgid) = i32::try_from(pid)
        && pgid > 1
    {
        // SAFETY: killpg(2) takes plain integers; pgid is the group we created for the child.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
    }
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn kill_seen(_: &[()]) {}

#[cfg(not(target_os = "linux"))]
fn group_alive(_: u32) -> bool {
    true
}

#[cfg(not(target_os = "linux"))]
fn kill_leftovers(pgid: u32) -> Vec<adaptest_schema::LeakedProcess> {
    kill_group(pgid);
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_limit_and_counts_the_rest() {
        let mut cap = Capture::new(5);
        cap.push(b"abc");
        cap.push(b"defg");
        cap.push(b"hij");
        assert_eq!(cap.buf, b"abcde");
        assert_eq!(cap.dropped, 5);

        let mut none = Capture::new(0);
        none.push(b"xyz");
        assert!(none.buf.is_empty());
        assert_eq!(none.dropped, 3);
    }
}
