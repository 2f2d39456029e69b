//! [`SshTarget`]: a lab machine reached with the system `ssh` through one multiplexed master
//! connection (the `openssh` crate), so `~/.ssh/config`, the agent, `known_hosts` and
//! `ProxyJump` work as they do for the user. Nothing is installed on the machine: every command
//! is wrapped in a small POSIX `/bin/sh` script that reports its process group first and its exit
//! status last, so that a timeout or a cancel can kill the remote process tree.
//!
//! How a command runs remotely:
//!
//! 1. The login shell `exec`s `/bin/sh -c WRAPPER`. sshd made the channel's process a session
//!    and process-group leader (`setsid`), so the wrapper's pid is its process group id; the
//!    wrapper checks that in `/proc` and prints `pid=…,<pgid>` on stderr, behind a marker that
//!    carries a per-command nonce (so no output can forge it). The marker lines are taken out of
//!    the captured stderr.
//! 2. It `cd`s, then runs `env K=V… /bin/sh -c COMMAND` in the foreground (same group), feeding
//!    it the channel's stdin.
//! 3. When the command exits it kills what the command left in the group (found through
//!    `/proc/*/stat`, like the local target does; not for a request with `keep_background`),
//!    prints `rc=N` and exits 0. Once `rc=N` arrived, a channel that stays open (a background
//!    process holds its output) is read for two more seconds, then closed. Exit statuses
//!    therefore cross the channel intact (the mux protocol cannot tell 127 from "command not
//!    found", and reports a signal only as "terminated"). A command killed by a signal reports
//!    `128+N`, as `sh` sees it; [`ExecOutput::signal`] stays empty on this target.
//! 4. On timeout or cancel, a second channel runs a kill script with that pid and group: it
//!    freezes the group and every descendant of the wrapper (parent links in `/proc`, so
//!    `setsid` escapees are found too), then SIGKILLs them all; then the first channel is closed.
//!
//! (long because one `Target` over one multiplexed connection; its exit-status marker filter and remote cleanup guard are part of that protocol; ~120 lines are tests)

use super::local::{Capture, feed_stdin};
use super::{
    ConfigProblem, ExecOutput, ExecRequest, Field, SshConfig, Target, TargetConfig, TargetError,
    TargetFields, canonical_arch, shell_quote,
};
use crate::env_probe::{environment_from, probe_request};
use crate::image::Arch;
use crate::text::error_chain;
use adaptest_schema::Environment;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket, Stdio};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long establishing the master connection may take (ssh `ConnectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keep-alive probes on the master connection, so a dead network is noticed (3 misses: gone).
const ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long the kill script may take, and then how long we wait for the killed channel to close.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the output of a finished command is still read (a `setsid` escapee may hold it).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Commands at once over the master. sshd's `MaxSessions` defaults to 10 per connection; two
/// are kept free for kill scripts.
const MAX_CHANNELS: usize = 8;
const READ_CHUNK: usize = 32 * 1024;

/// The wrapper every command runs in. `$1`: marker nonce, `$2`: command, `$3`: working directory
/// (empty: the login directory), `$4`: `1` to leave background processes running, then `K=V`
/// environment entries.
const WRAPPER: &str = r#"m=$1; c=$2; d=$3; k=$4; shift 4
g=$$
if { read -r s < /proc/$$/stat; } 2>/dev/null; then s=${s##*) }; s=${s#* }; s=${s#* }; g=${s%% *}; fi
[ "$g" = "$$" ] || g=0
printf '\036adaptest-%s:pid=%s,%s\n' "$m" "$$" "$g" >&2
if [ -n "$d" ]; then cd -- "$d" 2>/dev/null || { printf '\036adaptest-%s:cwd\n' "$m" >&2; exit 0; }; fi
e=
for a; do case ${a%%=*} in ''|[0-9]*|*[!A-Za-z0-9_]*) e=1; break ;; esac; done
if [ -n "$e" ]; then env "$@" /bin/sh -c "$c"; else (for a; do export "$a"; done; exec /bin/sh -c "$c"); fi
r=$?
if [ "$g" = "$$" ] && [ "$k" != 1 ]; then
  for f in /proc/[0-9]*/stat; do
    { read -r s < "$f"; } 2>/dev/null || continue
    p=${s%% *}
    [ "$p" = "$$" ] && continue
    s=${s##*) }; s=${s#* }; s=${s#* }
    [ "${s%% *}" = "$g" ] && kill -s KILL "$p" 2>/dev/null
  done
fi
printf '\036adaptest-%s:rc=%s\n' "$m" "$r" >&2
exit 0"#;

/// Kills a wrapper's tree: `$1` its pid, `$2` its process group (0: none of its own).
const KILL_SCRIPT: &str = r#"p=$1; g=$2
[ "$p" -gt 1 ] 2>/dev/null || exit 0
sig() { kill -s "$1" -- "$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null; }
[ "$g" -gt 1 ] && sig STOP "-$g"
sig STOP "$p"
l=" $p "
i=0
while [ $i -lt 8 ]; do
  n=0
  for f in /proc/[0-9]*/stat; do
    { read -r s < "$f"; } 2>/dev/null || continue
    q=${s%% *}
    case $l in *" $q "*) continue ;; esac
    s=${s##*) }; s=${s#* }; pp=${s%% *}; s=${s#* }
    if [ "${s%% *}" = "$g" ] || case $l in *" $pp "*) true ;; *) false ;; esac; then
      l="$l$q "; sig STOP "$q"; n=1
    fi
  done
  [ $n = 0 ] && break
  i=$((i + 1))
done
[ "$g" -gt 1 ] && sig KILL "-$g"
for q in $l; do sig KILL "$q"; done
exit 0"#;

/// A machine reached over ssh.
pub struct SshTarget {
    id: String,
    host: String,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<PathBuf>,
    options: SshOptions,
    /// Environment for every command (the plan's `env`).
    env: Vec<(String, String)>,
    /// The architecture the plan declares, checked against the probe.
    expected_arch: Option<String>,
    session: Mutex<Option<Arc<Session>>>,
    /// Local forwards by target port, for the current master.
    forwards: Mutex<HashMap<u16, SocketAddr>>,
    channels: Semaphore,
    nonce: AtomicU64,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("id", &self.id)
            .field("destination", &self.destination())
            .finish_non_exhaustive()
    }
}

/// The `ssh_options` of a plan, sorted into what the builder takes and the rest.
#[derive(Debug, Default, Clone)]
struct SshOptions {
    known_hosts: Option<KnownHosts>,
    user_known_hosts_file: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    jump_hosts: Vec<String>,
    /// Everything else, as `Key Value` lines of a config file that then includes the user's and
    /// the system's configuration (options given first win in ssh_config).
    other: Vec<(String, String)>,
}

/// Split one `ssh_options` entry: `Key=Value`, `Key Value` or `-o Key=Value`.
pub(super) fn parse_ssh_option(entry: &str) -> Result<(String, String), String> {
    let s = entry.trim();
    let s = s.strip_prefix("-o").map_or(s, str::trim_start);
    let split = s.find(|c: char| c == '=' || c.is_whitespace());
    let Some(i) = split else {
        return Err(format!("`{entry}` is not `Key=Value`"));
    };
    let (key, value) = (
        s[..i].trim(),
        s[i + 1..].trim().trim_start_matches('=').trim(),
    );
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) || value.is_empty() {
        return Err(format!("`{entry}` is not `Key=Value`"));
    }
    if value.contains('\n') {
        return Err(format!("`{entry}` spans lines"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

impl SshOptions {
    fn parse(entries: &[String]) -> Result<SshOptions, String> {
        let mut o = SshOptions::default();
        for entry in entries {
            let (key, value) = parse_ssh_option(entry)?;
            match key.to_ascii_lowercase().as_str() {
                "stricthostkeychecking" => {
                    o.known_hosts = Some(match value.to_ascii_lowercase().as_str() {
                        "yes" => KnownHosts::Strict,
                        "accept-new" => KnownHosts::Add,
                        "no" | "off" => KnownHosts::Accept,
                        _ => {
                            return Err(format!(
                                "`{entry}`: StrictHostKeyChecking is yes, accept-new or no"
                            ));
                        }
                    });
                }
                "userknownhostsfile" => o.user_known_hosts_file = Some(PathBuf::from(value)),
                "connecttimeout" => {
                    let secs: u64 = value
                        .parse()
                        .map_err(|_| format!("`{entry}`: ConnectTimeout is a number of seconds"))?;
                    o.connect_timeout = Some(Duration::from_secs(secs));
                }
                "proxyjump" => {
                    o.jump_hosts = value.split(',').map(|h| h.trim().to_owned()).collect()
                }
                _ => o.other.push((key, value)),
            }
        }
        Ok(o)
    }
}

/// Check and parse the fields of an `ssh` target.
pub(super) fn parse(cfg: &TargetFields) -> Result<SshConfig, Vec<ConfigProblem>> {
    let mut out = Vec::new();
    let host = cfg.host.as_deref().filter(|h| !h.trim().is_empty());
    if host.is_none() {
        out.push((Field::Host, "an ssh target needs `host`".to_owned()));
    }
    if cfg.port == Some(0) {
        out.push((Field::Port, "port 0 is not a port".to_owned()));
    }
    if let Some(k) = &cfg.identity_file
        && !k.exists()
    {
        out.push((
            Field::IdentityFile,
            format!("{} does not exist", k.display()),
        ));
    }
    if let Err(e) = SshOptions::parse(&cfg.ssh_options) {
        out.push((Field::SshOptions, e));
    }
    let arch = cfg.arch.as_deref().and_then(|a| {
        let parsed = Arch::parse(canonical_arch(a));
        if parsed.is_none() {
            out.push((
                Field::Arch,
                format!(
                    "unknown arch `{a}` (known: {})",
                    super::KNOWN_ARCHES.join(", ")
                ),
            ));
        }
        parsed
    });
    out.extend(cfg.foreign_fields(
        "an",
        &[
            Field::Rootfs,
            Field::Image,
            Field::Kernel,
            Field::Initrd,
            Field::Disk,
        ],
    ));
    match host {
        Some(host) if out.is_empty() => Ok(SshConfig {
            host: host.to_owned(),
            port: cfg.port,
            user: cfg.user.clone(),
            identity_file: cfg.identity_file.clone(),
            ssh_options: cfg.ssh_options.clone(),
            arch,
        }),
        _ => Err(out),
    }
}

/// The adapter for an `ssh` target.
pub(super) fn create(cfg: &TargetConfig, ssh: &SshConfig) -> Result<SshTarget, TargetError> {
    let t = SshTarget::new(
        cfg.id.clone(),
        ssh.host.clone(),
        ssh.port,
        ssh.user.clone(),
        ssh.identity_file.clone(),
        &ssh.ssh_options,
    )
    .map_err(|reason| TargetError::Unreachable {
        target: cfg.id.clone(),
        reason,
    })?;
    Ok(t.with_env(cfg.env.clone())
        .with_expected_arch(ssh.arch.map(|a| a.name().to_owned())))
}

impl SshTarget {
    /// An ssh target from a plan's fields (checked by `config::parse`).
    pub fn new(
        id: impl Into<String>,
        host: impl Into<String>,
        port: Option<u16>,
        user: Option<String>,
        identity_file: Option<PathBuf>,
        ssh_options: &[String],
    ) -> Result<SshTarget, String> {
        Ok(SshTarget {
            id: id.into(),
            host: host.into(),
            port,
            user,
            identity_file,
            options: SshOptions::parse(ssh_options)?,
            env: Vec::new(),
            expected_arch: None,
            session: Mutex::new(None),
            forwards: Mutex::new(HashMap::new()),
            channels: Semaphore::new(MAX_CHANNELS),
            nonce: AtomicU64::new(0),
        })
    }

    /// Environment variables set for every command.
    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = env.into_iter().collect();
        self
    }

    /// The architecture the machine must report (else capturing its environment fails).
    pub fn with_expected_arch(mut self, arch: Option<String>) -> Self {
        self.expected_arch = arch;
        self
    }

    /// `user@host:port` as far as the plan says (ssh's config may fill in the rest).
    fn destination(&self) -> String {
        let mut d = String::new();
        if let Some(u) = &self.user {
            d.push_str(u);
            d.push('@');
        }
        d.push_str(&self.host);
        if let Some(p) = self.port {
            d.push_str(&format!(":{p}"));
        }
        d
    }

    fn unreachable(&self, reason: String) -> TargetError {
        TargetError::Unreachable {
            target: self.id.clone(),
            reason,
        }
    }

    /// Open the master connection.
    async fn connect(&self) -> Result<Session, TargetError> {
        let o = &self.options;
        let mut b = SessionBuilder::default();
        b.connect_timeout(o.connect_timeout.unwrap_or(CONNECT_TIMEOUT))
            .server_alive_interval(ALIVE_INTERVAL)
            .known_hosts_check(o.known_hosts.clone().unwrap_or(KnownHosts::Add))
            .control_directory(std::env::temp_dir());
        if let Some(p) = self.port {
            b.port(p);
        }
        if let Some(u) = &self.user {
            b.user(u.clone());
        }
        if let Some(k) = &self.identity_file {
            b.keyfile(k);
        }
        if let Some(f) = &o.user_known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if !o.jump_hosts.is_empty() {
            b.jump_hosts(&o.jump_hosts);
        }
        // Other options go into a config file given with -F, which then includes the user's and
        // the system's files so that they still apply (the first value of an option wins).
        let config = if o.other.is_empty() {
            None
        } else {
            let mut text = format!("# written by adaptest for target {}\n", self.id);
            for (k, v) in &o.other {
                text.push_str(&format!("{k} {v}\n"));
            }
            text.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n");
            static CONFIGS: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "adaptest-ssh-{}-{}-{}.conf",
                std::process::id(),
                CONFIGS.fetch_add(1, Ordering::Relaxed),
                self.id
            ));
            std::fs::write(&path, text).map_err(|e| {
                self.unreachable(format!("cannot write ssh config {}: {e}", path.display()))
            })?;
            b.config_file(&path);
            Some(path)
        };
        let res = b.connect_mux(&self.host).await;
        if let Some(path) = config {
            let _ = std::fs::remove_file(path);
        }
        res.map_err(|e| {
            self.unreachable(format!(
                "cannot connect over ssh to {}: {}",
                self.destination(),
                error_chain(&e)
            ))
        })
    }

    /// The live master connection, connecting (again) when there is none.
    async fn session(&self) -> Result<Arc<Session>, TargetError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(self.connect().await?);
        self.forwards.lock().await.clear();
        *slot = Some(s.clone());
        Ok(s)
    }

    /// After a failed channel: if the master is gone, forget it (the next command reconnects)
    /// and say so; else the failure was the command's channel only.
    async fn channel_failed(
        &self,
        session: &Arc<Session>,
        command: &str,
        e: openssh::Error,
    ) -> TargetError {
        if let Err(check) = session.check().await {
            let mut slot = self.session.lock().await;
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                *slot = None;
            }
            return self.unreachable(format!(
                "the ssh connection to {} was lost while running `{}`: {}; {}",
                self.destination(),
                super::short_command(command),
                error_chain(&e),
                error_chain(&check)
            ));
        }
        TargetError::Spawn {
            target: self.id.clone(),
            command: super::short_command(command),
            source: std::io::Error::other(error_chain(&e)),
        }
    }

    fn next_nonce(&self) -> String {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!("{:x}{:x}{n:x}", std::process::id(), t & 0xffff_ffff)
    }

    /// Run `command` through the login shell alone: no wrapper, no output capture, no
    /// process-group bookkeeping. For short fixed commands on the path of a guest's start, where
    /// every process start counts (each costs 0.1–0.5 s on an emulated guest just restored).
    /// Returns the exit status (`None`: killed by a signal).
    pub async fn run_plain(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<Option<i32>, TargetError> {
        let session = self.session().await?;
        match quiet_status(&session, command, timeout).await {
            Some(Ok(st)) => Ok(st.code()),
            Some(Err(e)) => Err(self.channel_failed(&session, command, e).await),
            None => Err(self.unreachable(format!(
                "`{}` did not finish within {timeout:?}",
                super::short_command(command)
            ))),
        }
    }

    /// Run the kill script for a wrapper over a fresh channel.
    async fn kill_remote(&self, session: &Arc<Session>, pids: (u32, u32)) -> Result<(), String> {
        let cmd = format!(
            "exec /bin/sh -c {} adaptest-kill {} {}",
            shell_quote(KILL_SCRIPT),
            pids.0,
            pids.1
        );
        match quiet_status(session, &cmd, KILL_TIMEOUT).await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(error_chain(&e)),
            None => Err(format!(
                "the kill script did not finish within {KILL_TIMEOUT:?}"
            )),
        }
    }
}

/// Run `command` on `session` through the login shell with no input or output; `None` when it
/// did not finish within `timeout`.
async fn quiet_status(
    session: &Arc<Session>,
    command: &str,
    timeout: Duration,
) -> Option<Result<std::process::ExitStatus, openssh::Error>> {
    let run = async {
        Session::to_raw_command(session.clone(), command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
    };
    tokio::time::timeout(timeout, run).await.ok()
}

/// The command line sent to the login shell for one request.
fn remote_command(req: &ExecRequest, env: &[(String, String)], nonce: &str) -> String {
    let mut s = format!(
        "exec /bin/sh -c {} adaptest {} {} {} {}",
        shell_quote(WRAPPER),
        shell_quote(nonce),
        shell_quote(&req.command),
        shell_quote(req.cwd.as_deref().unwrap_or("")),
        if req.keep_background { "1" } else { "0" }
    );
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            continue;
        }
        s.push(' ');
        s.push_str(&shell_quote(&format!("{k}={v}")));
    }
    s
}

/// What the wrapper reported through its markers.
#[derive(Debug, Default)]
struct Report {
    rc: Option<i32>,
    cwd_failed: bool,
}

/// Stderr of a wrapped command: marker lines (`\x1eadaptest-NONCE:…\n`, anywhere in the stream)
/// are taken out and interpreted, the rest goes to the capture.
struct MarkerFilter<'a> {
    prefix: Vec<u8>,
    hold: Vec<u8>,
    cap: Capture,
    pids: &'a OnceLock<(u32, u32)>,
    /// Told when the exit status arrives (the command is over even if its channel stays open).
    finished: &'a tokio::sync::Notify,
    report: Report,
}

/// Longest marker payload (`pid=4294967295,4294967295`).
const MAX_PAYLOAD: usize = 48;

impl<'a> MarkerFilter<'a> {
    fn new(
        nonce: &str,
        limit: usize,
        pids: &'a OnceLock<(u32, u32)>,
        finished: &'a tokio::sync::Notify,
    ) -> Self {
        MarkerFilter {
            prefix: format!("\x1eadaptest-{nonce}:").into_bytes(),
            hold: Vec::new(),
            cap: Capture::new(limit),
            pids,
            finished,
            report: Report::default(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.hold.extend_from_slice(bytes);
        loop {
            if let Some(i) = find(&self.hold, &self.prefix) {
                let rest = &self.hold[i + self.prefix.len()..];
                if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    let payload = String::from_utf8_lossy(&rest[..nl]).into_owned();
                    self.cap.push(&self.hold[..i]);
                    self.hold.drain(..i + self.prefix.len() + nl + 1);
                    self.interpret(&payload);
                    continue;
                }
                if rest.len() > MAX_PAYLOAD {
                    // Not one of ours after all: pass its first byte on and look again.
                    self.cap.push(&self.hold[..=i]);
                    self.hold.drain(..=i);
                    continue;
                }
                // A marker has begun: keep it until its line is complete.
                self.cap.push(&self.hold[..i]);
                self.hold.drain(..i);
                return;
            }
            let keep = partial_suffix(&self.hold, &self.prefix);
            let n = self.hold.len() - keep;
            self.cap.push(&self.hold[..n]);
            self.hold.drain(..n);
            return;
        }
    }

    fn interpret(&mut self, payload: &str) {
        if let Some(p) = payload.strip_prefix("pid=") {
            if let Some((pid, group)) = p.split_once(',')
                && let (Ok(pid), Ok(group)) = (pid.parse(), group.parse())
            {
                let _ = self.pids.set((pid, group));
            }
        } else if let Some(rc) = payload.strip_prefix("rc=") {
            self.report.rc = rc.trim().parse().ok();
            self.finished.notify_one();
        } else if payload == "cwd" {
            self.report.cwd_failed = true;
        }
    }

    fn finish(mut self) -> (Capture, Report) {
        let hold = std::mem::take(&mut self.hold);
        self.cap.push(&hold);
        (self.cap, self.report)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Length of the longest suffix of `hay` that is a proper prefix of `needle`.
fn partial_suffix(hay: &[u8], needle: &[u8]) -> usize {
    (1..needle.len().min(hay.len() + 1))
        .rev()
        .find(|&k| hay.ends_with(&needle[..k]))
        .unwrap_or(0)
}

async fn drain_into(pipe: Option<impl AsyncRead + Unpin>, mut push: impl FnMut(&[u8])) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => push(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Kills the remote tree when an exec is dropped before it finished (its caller gave up).
struct RemoteGuard<'a> {
    session: Arc<Session>,
    pids: &'a OnceLock<(u32, u32)>,
    armed: bool,
}

impl Drop for RemoteGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (Some(&(pid, group)), Ok(rt)) =
            (self.pids.get(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let session = self.session.clone();
        rt.spawn(async move {
            let cmd = format!(
                "exec /bin/sh -c {} adaptest-kill {pid} {group}",
                shell_quote(KILL_SCRIPT)
            );
            let _ = quiet_status(&session, &cmd, KILL_TIMEOUT).await;
        });
    }
}

enum Ending {
    Exited(Result<std::process::ExitStatus, openssh::Error>),
    /// The wrapper reported the exit status, but the channel stayed open (a background
    /// process still holds its output) past the drain grace.
    Reported,
    TimedOut,
    Cancelled,
}

#[async_trait::async_trait]
impl Target for SshTarget {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ssh"
    }

    async fn start(&self) -> Result<(), TargetError> {
        self.session().await.map(drop)
    }

    async fn exec(
        &self,
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError> {
        if cancel.is_cancelled() {
            return Ok(ExecOutput {
                cancelled: true,
                ..ExecOutput::default()
            });
        }
        let session = self.session().await?;
        let _channel = self
            .channels
            .acquire()
            .await
            .expect("semaphore never closed");
        let nonce = self.next_nonce();
        let mut env = self.env.clone();
        env.extend(req.env.iter().cloned());
        let remote = remote_command(&req, &env, &nonce);

        let started = Instant::now();
        let spawned = Session::to_raw_command(session.clone(), &remote)
            .stdin(if req.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await;
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Err(self.channel_failed(&session, &req.command, e).await),
        };
        let pids = OnceLock::new();
        let mut guard = RemoteGuard {
            session: session.clone(),
            pids: &pids,
            armed: true,
        };
        let stdin_pipe = child.stdin().take();
        let stdout_pipe = child.stdout().take();
        let stderr_pipe = child.stderr().take();
        let mut out = Capture::new(req.capture_limit);
        let finished = tokio::sync::Notify::new();
        let mut err = MarkerFilter::new(&nonce, req.capture_limit, &pids, &finished);

        let (ending, timed_out, cancelled, kill_error, duration) = {
            let io = async {
                tokio::join!(
                    feed_stdin(stdin_pipe, req.stdin.clone()),
                    drain_into(stdout_pipe, |b| out.push(b)),
                    drain_into(stderr_pipe, |b| err.push(b)),
                )
            };
            tokio::pin!(io);
            let mut io_done = false;
            let wait = child.wait();
            tokio::pin!(wait);
            let deadline = tokio::time::sleep(req.timeout);
            tokio::pin!(deadline);
            let mut reported = false;
            let grace = tokio::time::sleep(Duration::from_secs(u32::MAX.into()));
            tokio::pin!(grace);
            let ending = loop {
                tokio::select! {
                    biased;
                    status = &mut wait => break Ending::Exited(status),
                    () = cancel.cancelled() => break Ending::Cancelled,
                    () = &mut deadline => break Ending::TimedOut,
                    () = finished.notified(), if !reported => {
                        reported = true;
                        grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                    () = &mut grace, if reported => break Ending::Reported,
                    _ = &mut io, if !io_done => io_done = true,
                }
            };
            let (timed_out, cancelled) = (
                matches!(ending, Ending::TimedOut),
                matches!(ending, Ending::Cancelled),
            );
            let mut kill_error = None;
            let ending = if matches!(ending, Ending::Exited(_) | Ending::Reported) {
                ending
            } else {
                match pids.get() {
                    Some(&p) => {
                        if let Err(e) = self.kill_remote(&session, p).await {
                            kill_error = Some(e);
                        }
                    }
                    None => kill_error = Some("the remote shell never reported its pid".into()),
                }
                // The wrapper is dead now (or unreachable): its channel closes, or we drop it.
                match tokio::time::timeout(CLOSE_GRACE, &mut wait).await {
                    Ok(status) => Ending::Exited(status),
                    Err(_) => ending,
                }
            };
            let duration = started.elapsed();
            if !io_done && !matches!(ending, Ending::Reported) {
                let _ = tokio::time::timeout(DRAIN_GRACE, &mut io).await;
            }
            (ending, timed_out, cancelled, kill_error, duration)
        };
        guard.armed = false;
        let (err, report) = err.finish();

        if report.cwd_failed {
            return Err(TargetError::Spawn {
                target: self.id.clone(),
                command: super::short_command(&req.command),
                source: std::io::Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "cannot change to directory {}",
                        req.cwd.as_deref().unwrap_or("")
                    ),
                ),
            });
        }
        let mut output = ExecOutput {
            exit_code: None,
            signal: None,
            stdout: out.buf,
            stderr: err.buf,
            stdout_dropped: out.dropped,
            stderr_dropped: err.dropped,
            timed_out,
            cancelled,
            duration,
            leaked: Vec::new(),
        };
        if timed_out || cancelled {
            if let Some(e) = kill_error
                && timed_out
            {
                // The remote tree may still be running; that is the target's failure.
                return Err(self.unreachable(format!(
                    "`{}` timed out and its remote process tree could not be killed: {e}",
                    super::short_command(&req.command)
                )));
            }
            return Ok(output);
        }
        match ending {
            Ending::Exited(Ok(status)) => {
                output.exit_code = report.rc.or(status.code());
                Ok(output)
            }
            Ending::Exited(Err(e)) => match report.rc {
                // The command finished and reported; only the channel's ending went wrong.
                Some(rc) => {
                    output.exit_code = Some(rc);
                    Ok(output)
                }
                None => {
                    let failure = self.channel_failed(&session, &req.command, e).await;
                    if matches!(failure, TargetError::Unreachable { .. }) {
                        return Err(failure);
                    }
                    // The connection is fine: the remote shell itself was killed (OOM, a
                    // signal from outside).
                    output
                        .stderr
                        .extend_from_slice(b"\nadaptest: the remote shell was terminated before it reported an exit status\n");
                    Ok(output)
                }
            },
            Ending::Reported => {
                output.exit_code = report.rc;
                Ok(output)
            }
            Ending::TimedOut | Ending::Cancelled => unreachable!("handled above"),
        }
    }

    async fn environment(&self) -> Result<Environment, TargetError> {
        let out = self
            .exec(probe_request(), &CancellationToken::new())
            .await?;
        let mut env = environment_from(&self.id, self.kind(), &out)?;
        env.extra.insert("ssh".into(), self.destination());
        if let Some(want) = &self.expected_arch
            && canonical_arch(want) != canonical_arch(&env.arch)
        {
            return Err(TargetError::Environment {
                target: self.id.clone(),
                reason: format!(
                    "the plan declares arch `{want}` but {} reports `{}`",
                    self.destination(),
                    env.arch
                ),
            });
        }
        Ok(env)
    }

    async fn stop(&self) -> Result<(), TargetError> {
        self.forwards.lock().await.clear();
        let Some(session) = self.session.lock().await.take() else {
            return Ok(());
        };
        // The last reference closes the master; with commands still in flight, their drop does.
        match Arc::try_unwrap(session) {
            Ok(s) => s.close().await.map_err(|e| {
                self.unreachable(format!(
                    "closing the ssh connection to {} failed: {}",
                    self.destination(),
                    error_chain(&e)
                ))
            }),
            Err(_) => Ok(()),
        }
    }

    /// A local forward (`ssh -L 127.0.0.1:FREE:127.0.0.1:PORT`) over the master, one per port.
    async fn connect_addr(&self, port: u16) -> Result<SocketAddr, TargetError> {
        let session = self.session().await?;
        let mut forwards = self.forwards.lock().await;
        if let Some(addr) = forwards.get(&port) {
            return Ok(*addr);
        }
        let free = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|source| TargetError::Io {
                target: self.id.clone(),
                source,
            })?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free.port()));
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        session
            .request_port_forward(
                ForwardType::Local,
                Socket::from(listen),
                Socket::from(remote),
            )
            .await
            .map_err(|e| {
                self.unreachable(format!(
                    "forwarding 127.0.0.1:{} to port {port} on {} failed: {}",
                    listen.port(),
                    self.destination(),
                    error_chain(&e)
                ))
            })?;
        forwards.insert(port, listen);
        Ok(listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_options_parse_and_sort() {
        assert_eq!(parse_ssh_option("A=b").unwrap(), ("A".into(), "b".into()));
        assert_eq!(
            parse_ssh_option("-o A=b c").unwrap(),
            ("A".into(), "b c".into())
        );
        assert_eq!(
            parse_ssh_option("Ciphers aes128-ctr").unwrap(),
            ("Ciphers".into(), "aes128-ctr".into())
        );
        assert!(parse_ssh_option("novalue").is_err());
        assert!(parse_ssh_option("=x").is_err());
        let o = SshOptions::parse(&[
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/tmp/kh".into(),
            "ProxyJump=a,b".into(),
            "ConnectTimeout=3".into(),
            "Compression=yes".into(),
        ])
        .unwrap();
        assert!(matches!(o.known_hosts, Some(KnownHosts::Accept)));
        assert_eq!(o.user_known_hosts_file, Some(PathBuf::from("/tmp/kh")));
        assert_eq!(o.jump_hosts, vec!["a", "b"]);
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(o.other, vec![("Compression".into(), "yes".into())]);
        assert!(SshOptions::parse(&["StrictHostKeyChecking=maybe".into()]).is_err());
    }

    #[test]
    fn marker_filter_takes_markers_out_anywhere_and_across_chunks() {
        let pids = OnceLock::new();
        let done = tokio::sync::Notify::new();
        let mut f = MarkerFilter::new("n1", 1 << 20, &pids, &done);
        let text = b"\x1eadaptest-n1:pid=42,42\nhello\nno newline\x1eadaptest-n1:rc=3\n\x1eadaptest-n2:rc=9\nafter";
        // Feed byte by byte: markers split across reads must still be found.
        for b in text.iter() {
            f.push(std::slice::from_ref(b));
        }
        let (cap, report) = f.finish();
        assert_eq!(pids.get(), Some(&(42, 42)));
        assert_eq!(report.rc, Some(3));
        // Another nonce is just output.
        assert_eq!(
            String::from_utf8_lossy(&cap.buf),
            "hello\nno newline\x1eadaptest-n2:rc=9\nafter"
        );
    }

    #[test]
    fn marker_filter_passes_lookalikes_through() {
        let pids = OnceLock::new();
        let done = tokio::sync::Notify::new();
        let mut f = MarkerFilter::new("n", 1 << 20, &pids, &done);
        let long = format!("\x1eadaptest-n:{}", "x".repeat(100));
        f.push(long.as_bytes());
        f.push(b"\x1eadapt");
        let (cap, report) = f.finish();
        assert_eq!(report.rc, None);
        assert_eq!(
            String::from_utf8_lossy(&cap.buf),
            format!("{long}\x1eadapt")
        );
    }

    #[test]
    fn remote_command_quotes_everything() {
        let mut req = ExecRequest::new("echo 'hi'", Duration::from_secs(1));
        req.cwd = Some("/tmp/x y".into());
        let s = remote_command(
            &req,
            &[("A".into(), "1 2".into()), ("B=C".into(), "x".into())],
            "abc",
        );
        assert!(s.starts_with("exec /bin/sh -c '"));
        assert!(
            s.ends_with(" adaptest 'abc' 'echo '\\''hi'\\''' '/tmp/x y' 0 'A=1 2'"),
            "{s}"
        );
    }

    /// The wrapper and kill script are plain POSIX sh: run them here with dash and busybox.
    #[test]
    fn wrapper_reports_and_kills_leftovers_under_posix_shells() {
        for sh in ["/bin/sh", "/bin/busybox"] {
            if !std::path::Path::new(sh).exists() {
                continue;
            }
            let mut cmd = std::process::Command::new(sh);
            if sh.ends_with("busybox") {
                cmd.arg("sh");
            }
            // A new session, as sshd gives each channel.
            let out = cmd
                .args(["-c", &format!("exec setsid -w /bin/sh -c {} adaptest N 'sleep 60 & echo out; echo err >&2; exit 7' /tmp 0 V=1", shell_quote(WRAPPER))])
                .output()
                .expect("run wrapper");
            let pids = OnceLock::new();
            let done = tokio::sync::Notify::new();
            let mut f = MarkerFilter::new("N", 1 << 20, &pids, &done);
            f.push(&out.stderr);
            let (cap, report) = f.finish();
            assert_eq!(
                report.rc,
                Some(7),
                "{sh}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&cap.buf), "err\n");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
            let (pid, group) = *pids.get().expect("pid marker");
            assert_eq!(pid, group, "the wrapper leads its group");
        }
    }
}
