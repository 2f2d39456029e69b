//! The exec hosting: a plugin program (any language) speaking protocol v1 as JSON lines on its
//! stdin/stdout, in a process group of its own on the harness's host.
//!
//! One process serves every session of a component; requests carry an `id` and may be answered
//! in any order. Containment: a process that exits, is killed by a signal or writes a line that
//! is not a response fails its pending and open sessions as *lost* (the cases error, naming the
//! exit status and the end of its stderr); a call not answered within the timeout kills the
//! whole process group. The next `open` starts a fresh process, so one crash costs the cases
//! that were using it, not the run.

use super::{Channel, Host, blocking, excerpt, unwrap_response};
// The guarded group kill (never pid 0 or 1, never our own group): the plugin leads its group.
use crate::target::kill_group;
use adaptest_plugin_sdk::{ErrorKind, PROTOCOL_VERSION};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot, watch};

/// How long a plugin gets to exit after its stdin closes before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Bytes of a plugin's stderr kept for messages.
const STDERR_TAIL: usize = 2048;
/// The longest line a plugin may write (one response); a longer one is a protocol violation,
/// never a buffer that grows without bound.
const MAX_LINE_BYTES: usize = 16 << 20;

/// One line of a plugin's stdout, read with at most [`MAX_LINE_BYTES`] buffered.
enum Line {
    Text(String),
    TooLong,
    End,
}

/// Read the next line (without its `\n`), refusing one longer than `max` bytes.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() {
                Line::End
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.map_or(chunk.len(), |i| i + 1);
        if buf.len() + take > max + 1 {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if newline.is_some() {
            buf.pop();
            return Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()));
        }
    }
}

type Reply = Result<Value, (ErrorKind, String)>;

/// `exited with status 3`, `killed by SIGABRT`: the project's one exit-status describer.
fn exit_text(status: &ExitStatus) -> String {
    crate::exit_status::describe_status(status)
}

/// Keep the last [`STDERR_TAIL`] bytes of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_TAIL {
            let cut = self.0.len() - STDERR_TAIL;
            self.0.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.0);
        let t = t.trim();
        if t.is_empty() {
            String::new()
        } else {
            format!(
                "; its last stderr: {}",
                excerpt(
                    t.rsplit('\n')
                        .take(5)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join(" | ")
                        .as_str()
                )
            )
        }
    }
}

fn command(program: &str, args: &[String]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(program);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    c
}

/// Start the program, ask `describe`, and let it go: how a component learns what an exec
/// plugin offers when it is created. Blocks for at most `timeout` plus the exit grace.
pub(crate) fn describe_blocking(program: &str, args: &[String], timeout: Duration) -> Reply {
    blocking(|| {
        let who = format!("exec:{program}");
        let mut child = command(program, args).spawn().map_err(|e| {
            (
                ErrorKind::Connect,
                format!("cannot start plugin program `{program}`: {e}"),
            )
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let tail = Arc::new(Mutex::new(Tail::default()));
        let t2 = tail.clone();
        let (err_done, err_done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t2.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]);
            }
            let _ = err_done.send(());
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Bounded: a plugin writing an endless line cannot grow this buffer without limit.
            let mut line = String::new();
            let r = std::io::BufReader::new(stdout.take(MAX_LINE_BYTES as u64 + 1))
                .read_line(&mut line)
                .and_then(|_| {
                    if line.len() > MAX_LINE_BYTES {
                        Err(std::io::Error::other("line too long"))
                    } else {
                        Ok(line)
                    }
                });
            let _ = tx.send(r);
        });
        let req = json!({ "protocol": PROTOCOL_VERSION, "id": 0, "op": "describe" });
        let _ = stdin
            .write_all(format!("{req}\n").as_bytes())
            .and_then(|()| stdin.flush());
        let answer = rx.recv_timeout(timeout);
        drop(stdin); // end of input: a well-behaved plugin exits now
        let status = reap(
            &mut child,
            pid,
            if answer.is_ok() {
                EXIT_GRACE
            } else {
                Duration::ZERO
            },
        );
        // Its last words, once the stream closes (not forever: a grandchild may hold it open).
        let _ = err_done_rx.recv_timeout(Duration::from_millis(500));
        let stderr_text = || tail.lock().unwrap_or_else(|p| p.into_inner()).text();
        match answer {
            Ok(Ok(line)) if !line.trim().is_empty() => unwrap_response(&line).map_err(|(k, m)| {
                (
                    k,
                    format!("plugin {who} answered describe with an error: {m}"),
                )
            }),
            Ok(_) => Err((
                ErrorKind::Connect,
                format!(
                    "plugin {who} {} before answering describe{}",
                    status
                        .as_ref()
                        .map_or_else(|| "stopped".to_string(), exit_text),
                    stderr_text()
                ),
            )),
            Err(_) => Err((
                ErrorKind::Connect,
                format!(
                    "plugin {who} did not answer describe within {timeout:?}; it was killed{}",
                    stderr_text()
                ),
            )),
        }
    })
}

/// Wait up to `grace` for the child to exit, then kill its group and reap it.
fn reap(child: &mut std::process::Child, pid: u32, grace: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                kill_group(pid);
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

/// Starts plugin processes for a component: one at a time, a fresh one when the last died.
pub(crate) struct ExecHost {
    program: String,
    args: Vec<String>,
    current: tokio::sync::Mutex<Option<Arc<Proc>>>,
}

impl ExecHost {
    pub(crate) fn new(program: String, args: Vec<String>) -> ExecHost {
        ExecHost {
            program,
            args,
            current: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Host for ExecHost {
    async fn channel(&self, timeout: Duration) -> Result<Arc<dyn Channel>, String> {
        let mut cur = self.current.lock().await;
        if let Some(p) = cur.as_ref()
            && !p.shared.is_dead()
        {
            return Ok(p.clone());
        }
        let proc = Arc::new(Proc::spawn(&self.program, &self.args)?);
        // Every process starts with the handshake, so a replaced binary is noticed too.
        let d = proc
            .call(json!({ "op": "describe" }), timeout)
            .await
            .map_err(|(_, m)| {
                format!(
                    "plugin exec:{} failed its describe handshake: {m}",
                    self.program
                )
            })?;
        if d.get("protocol").and_then(Value::as_u64) != Some(u64::from(PROTOCOL_VERSION)) {
            return Err(format!(
                "plugin exec:{} now speaks adapter protocol {}; this adaptest speaks {PROTOCOL_VERSION}",
                self.program,
                d.get("protocol")
                    .map_or_else(|| "(none)".into(), Value::to_string)
            ));
        }
        *cur = Some(proc.clone());
        Ok(proc)
    }
}

/// What the reader, the owner of the child and the callers share about one process.
struct Shared {
    label: String,
    state: Mutex<State>,
    kill: Notify,
    shutdown: Notify,
    exit: watch::Sender<Option<String>>,
    stderr: Mutex<Tail>,
    /// Set once stderr reached its end.
    stderr_closed: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Why the process can no longer be used.
    dead: Option<String>,
}

impl Shared {
    fn is_dead(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dead
            .is_some()
    }

    /// Mark the process unusable and fail everything waiting on it with `why` (first wins).
    fn die(&self, why: String) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let why = st.dead.get_or_insert(why).clone();
        for (_, tx) in st.pending.drain() {
            let _ = tx.send(Err((ErrorKind::Lost, why.clone())));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).text()
    }
}

/// One running plugin process.
struct Proc {
    shared: Arc<Shared>,
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    next_id: AtomicU64,
}

impl Proc {
    fn spawn(program: &str, args: &[String]) -> Result<Proc, String> {
        let mut cmd = tokio::process::Command::from(command(program, args));
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start plugin program `{program}`: {e}"))?;
        // A child that has no pid was already reaped: there is no group of it to kill.
        let pid = child
            .id()
            .ok_or_else(|| format!("plugin program `{program}` ended before it could be used"))?;
        let (exit, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            label: format!("plugin process exec:{program} (pid {pid})"),
            state: Mutex::new(State::default()),
            kill: Notify::new(),
            shutdown: Notify::new(),
            exit,
            stderr: Mutex::new(Tail::default()),
            stderr_closed: watch::channel(false).0,
        });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // The owner: reaps the child, kills its group when asked, lets it exit gracefully on
        // shutdown (stdin closed) before killing it.
        let s = shared.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                st = child.wait() => st,
                () = s.kill.notified() => {
                    kill_group(pid);
                    child.wait().await
                }
                () = s.shutdown.notified() => {
                    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                        Ok(st) => st,
                        Err(_) => {
                            kill_group(pid);
                            child.wait().await
                        }
                    }
                }
            };
            let text = status.map_or_else(
                |e| format!("could not be waited for: {e}"),
                |st| exit_text(&st),
            );
            s.exit.send_replace(Some(text));
        });
        let s = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tracing::debug!(
                    "{}: {}",
                    s.label,
                    String::from_utf8_lossy(&buf[..n]).trim_end()
                );
                s.stderr
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(&buf[..n]);
            }
            s.stderr_closed.send_replace(true);
        });
        let s = shared.clone();
        tokio::spawn(async move {
            let mut stdout = tokio::io::BufReader::new(stdout);
            let why = loop {
                match next_line(&mut stdout, MAX_LINE_BYTES).await {
                    Ok(Line::Text(line)) if line.trim().is_empty() => {}
                    Ok(Line::TooLong) => {
                        s.kill.notify_one();
                        break format!(
                            "{} wrote a line longer than {} MiB, which is not a protocol response",
                            s.label,
                            MAX_LINE_BYTES >> 20
                        );
                    }
                    Ok(Line::Text(line)) => {
                        let id = serde_json::from_str::<Value>(&line)
                            .ok()
                            .and_then(|v| v.get("id").and_then(Value::as_u64));
                        let Some(id) = id else {
                            s.kill.notify_one();
                            break format!(
                                "{} wrote a line that is not a protocol response: {}",
                                s.label,
                                excerpt(&line)
                            );
                        };
                        let tx = s
                            .state
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .pending
                            .remove(&id);
                        match tx {
                            Some(tx) => {
                                let _ = tx.send(unwrap_response(&line));
                            }
                            None => tracing::debug!(
                                "{}: answer to unknown or abandoned request {id}",
                                s.label
                            ),
                        }
                    }
                    Ok(Line::End) | Err(_) => {
                        // stdout closed: the process is ending. Learn how.
                        let mut rx = s.exit.subscribe();
                        let done = tokio::time::timeout(EXIT_GRACE, rx.wait_for(Option::is_some))
                            .await
                            .is_ok();
                        if !done {
                            s.kill.notify_one();
                            let _ = rx.wait_for(Option::is_some).await;
                        }
                        let how = s.exit.borrow().clone().unwrap_or_else(|| "ended".into());
                        // Its last words, once stderr closes (a grandchild may hold it open).
                        let mut closed = s.stderr_closed.subscribe();
                        let _ = tokio::time::timeout(
                            Duration::from_millis(500),
                            closed.wait_for(|c| *c),
                        )
                        .await;
                        break format!("{} {how}{}", s.label, s.stderr_text());
                    }
                }
            };
            s.die(why);
        });
        Ok(Proc {
            shared,
            stdin: tokio::sync::Mutex::new(stdin),
            next_id: AtomicU64::new(1),
        })
    }
}

#[async_trait::async_trait]
impl Channel for Proc {
    async fn call(&self, mut request: Value, timeout: Duration) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["protocol"] = json!(PROTOCOL_VERSION);
        request["id"] = json!(id);
        let op = request["op"].as_str().unwrap_or_default().to_string();
        let rx = {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(why) = &st.dead {
                return Err((ErrorKind::Lost, why.clone()));
            }
            let (tx, rx) = oneshot::channel();
            st.pending.insert(id, tx);
            rx
        };
        let line = format!("{request}\n");
        {
            let mut stdin = self.stdin.lock().await;
            if let Some(w) = stdin.as_mut()
                && let Err(e) = async {
                    w.write_all(line.as_bytes()).await?;
                    w.flush().await
                }
                .await
            {
                // A broken pipe means the process is going; the reader reports how.
                tracing::debug!("{}: writing a request failed: {e}", self.shared.label);
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err((
                ErrorKind::Lost,
                self.shared
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .dead
                    .clone()
                    .unwrap_or_else(|| format!("{} went away", self.shared.label)),
            )),
            Err(_) => {
                let why = format!(
                    "{} did not answer `{op}` within {timeout:?}; its process group was killed{}",
                    self.shared.label,
                    self.shared.stderr_text()
                );
                self.shared.die(why.clone());
                self.shared.kill.notify_one();
                Err((ErrorKind::Lost, why))
            }
        }
    }
}

impl Drop for Proc {
    /// The last user is gone: stdin closes (with this struct) and the owner gives the plugin a
    /// moment to exit before killing its group.
    fn drop(&mut self) {
        self.shared.shutdown.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plugin host once killed `-pid` with a pid of 0 when the child had none: `kill(0)`
    /// signals the caller's own process group, so this test (and cargo with it) would die of
    /// SIGKILL. The guarded kill refuses every dangerous id.
    #[test]
    fn group_kill_never_signals_pid_0_or_1_or_our_own_group() {
        // SAFETY: getpgrp(2) takes no arguments and cannot fail.
        let own_group = unsafe { libc::getpgrp() } as u32;
        for pid in [0, 1, std::process::id(), own_group] {
            kill_group(pid);
        }
        // Still here: nothing of ours was signalled.
    }

    fn script(body: &str) -> (tempfile_dir::Dir, String) {
        let d = tempfile_dir::Dir::new();
        let p = d.0.join("plugin.sh");
        std::fs::write(&p, body).unwrap();
        (d, p.display().to_string())
    }

    /// A scratch directory removed on drop (this crate has no tempfile dependency).
    mod tempfile_dir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir()
                    .join(format!("adaptest-exec-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    // A shell plugin: answers describe, echoes `execute` ids, dies on request.
    const SH_PLUGIN: &str = r#"
while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"op":"describe"'*) printf '{"id":%s,"ok":true,"result":{"protocol":1,"name":"sh","version":"0","capabilities":["kv"]}}\n' "$id" ;;
    *'"op":"open"'*) printf '{"id":%s,"ok":true,"result":{"session":7}}\n' "$id" ;;
    *'"name":"die"'*) echo "dying as asked" >&2; exit 9 ;;
    *'"name":"hang"'*) sleep 600 ;;
    *'"name":"garbage"'*) echo "hello there" ;;
    *'"name":"endless"'*) head -c 17000000 /dev/zero | tr '\0' x ;;
    *) printf '{"id":%s,"ok":true,"result":"pong"}\n' "$id" ;;
  esac
done
"#;

    #[test]
    fn describe_over_a_pipe() {
        let (_d, p) = script(SH_PLUGIN);
        let v = describe_blocking("sh", &[p], Duration::from_secs(5)).unwrap();
        assert_eq!(v["name"], "sh");
        let e = describe_blocking("/nonexistent/plugin", &[], Duration::from_secs(1)).unwrap_err();
        assert!(e.1.contains("cannot start plugin program"), "{e:?}");
        let (_d2, silent) = script("sleep 600\n");
        let t = Instant::now();
        let e = describe_blocking("sh", &[silent], Duration::from_millis(300)).unwrap_err();
        assert!(e.1.contains("did not answer describe"), "{e:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the silent plugin was killed, not waited for"
        );
        let (_d3, quits) = script("echo 'no protocol here' >&2; exit 4\n");
        let e = describe_blocking("sh", &[quits], Duration::from_secs(5)).unwrap_err();
        assert!(
            e.1.contains("exited with status 4") && e.1.contains("no protocol here"),
            "{e:?}"
        );
    }

    /// Plugin stdout was read with `lines()`, which buffers a line of any length: a plugin
    /// writing without newlines grew the harness's memory until it ran out. Now a line beyond
    /// the limit loses the process (its sessions fail as lost) and the buffer stays bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_line_loses_the_process_instead_of_growing_a_buffer() {
        let (_d, p) = script(SH_PLUGIN);
        let host = ExecHost::new("sh".into(), vec![p]);
        let t = Duration::from_secs(30);
        let ch = host.channel(t).await.unwrap();
        let e = ch
            .call(json!({"op": "execute", "name": "endless"}), t)
            .await
            .unwrap_err();
        assert_eq!(e.0, ErrorKind::Lost, "{e:?}");
        assert!(e.1.contains("longer than 16 MiB"), "{e:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crashes_hangs_and_garbage_are_contained() {
        let (_d, p) = script(SH_PLUGIN);
        let host = ExecHost::new("sh".into(), vec![p]);
        let t = Duration::from_secs(5);
        let ch = host.channel(t).await.unwrap();
        assert_eq!(
            ch.call(json!({"op": "execute", "name": "ping"}), t)
                .await
                .unwrap(),
            "pong"
        );
        let e = ch
            .call(json!({"op": "execute", "name": "die"}), t)
            .await
            .unwrap_err();
        assert_eq!(e.0, ErrorKind::Lost);
        assert!(
            e.1.contains("exited with status 9") && e.1.contains("dying as asked"),
            "{e:?}"
        );
        // The dead process stays dead for its sessions; a new channel is a new process.
        assert!(
            ch.call(json!({"op": "execute", "name": "ping"}), t)
                .await
                .is_err()
        );
        let ch2 = host.channel(t).await.unwrap();
        assert_eq!(
            ch2.call(json!({"op": "execute", "name": "ping"}), t)
                .await
                .unwrap(),
            "pong"
        );
        let started = Instant::now();
        let e = ch2
            .call(
                json!({"op": "execute", "name": "hang"}),
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            e.1.contains("did not answer `execute`") && e.1.contains("killed"),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let ch3 = host.channel(t).await.unwrap();
        let e = ch3
            .call(json!({"op": "execute", "name": "garbage"}), t)
            .await
            .unwrap_err();
        assert!(
            e.1.contains("not a protocol response") && e.1.contains("hello there"),
            "{e:?}"
        );
    }
}
