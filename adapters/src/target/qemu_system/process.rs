//! The QEMU process of a guest: spawning it (dies with the harness), a task that reaps it and
//! publishes how it ended, and the tail of its console and stderr files for error messages.

use super::machine::{Launch, Machine};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The QEMU process of a guest, watched by a task that reaps it.
pub(super) struct Qemu {
    pub(super) pid: u32,
    pub(super) qmp: PathBuf,
    pub(super) console: PathBuf,
    exit: watch::Receiver<Option<String>>,
    kill: mpsc::UnboundedSender<()>,
}

impl Qemu {
    /// How the process ended, if it has.
    pub(super) fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Wait up to `grace` for the process to end; `None` if it is still running.
    pub(super) async fn exited_within(&self, grace: Duration) -> Option<String> {
        let mut rx = self.exit.clone();
        let ended = tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .map(|r| r.map(|v| v.clone()));
        match ended {
            Ok(Ok(v)) => v,
            _ => self.exited(),
        }
    }

    /// Resolves when the process has ended (never, if its watcher is gone).
    pub(super) async fn ended(&self) -> String {
        let mut rx = self.exit.clone();
        let ended = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match ended {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    pub(super) async fn wait_exit(&self, grace: Duration) -> bool {
        self.exited_within(grace).await.is_some()
    }

    pub(super) async fn kill_and_wait(&self) {
        let _ = self.kill.send(());
        let _ = self.wait_exit(Duration::from_secs(10)).await;
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // A guest nobody holds any more must not outlive us.
        let _ = self.kill.send(());
    }
}

/// Start QEMU; a task reaps it and publishes how it ended.
pub(super) async fn spawn_qemu(
    machine: &Machine,
    launch: &Launch,
    dir: &Path,
) -> Result<Qemu, String> {
    let bin = machine.arch.qemu_system();
    let args = machine.args(launch);
    let shown: Vec<String> = std::iter::once(bin.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let _ = std::fs::write(dir.join("qemu.cmdline"), shown.join(" ") + "\n");
    let _ = std::fs::remove_file(&launch.console);
    let _ = std::fs::remove_file(&launch.qmp);
    let stderr = std::fs::File::create(dir.join("qemu.stderr"))
        .map_err(|e| format!("cannot create {}: {e}", dir.join("qemu.stderr").display()))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours; it makes the kernel
    // kill QEMU if the harness dies without stopping it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{bin} is not installed (scripts/install-deps.sh installs the QEMU system emulators)"
            )
        } else {
            format!("cannot start {bin}: {e}")
        }
    })?;
    let pid = child.id().unwrap_or(0);
    let (tx, rx) = watch::channel(None);
    let (ktx, mut krx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                status = child.wait() => {
                    let _ = tx.send(Some(describe_exit(status)));
                    break;
                }
                Some(()) = krx.recv() => {
                    let _ = child.start_kill();
                }
            }
        }
    });
    Ok(Qemu {
        pid,
        qmp: launch.qmp.clone(),
        console: launch.console.clone(),
        exit: rx,
        kill: ktx,
    })
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
            _ => "ended".into(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// How much of the end of a console or stderr file [`tail_lines`] reads.
const TAIL_WINDOW: u64 = 16 * 1024;

/// The last `n` lines of a text file (lossy, control characters other than tabs dropped).
///
/// Reads at most [`TAIL_WINDOW`] bytes from the end, with async I/O: a console log grows for
/// as long as the guest runs, and this is called on the runtime's workers. When the window
/// starts inside the file, its first (cut) line is left out.
pub(super) async fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(bytes) = read_tail(path, TAIL_WINDOW).await else {
        return String::new();
    };
    let (bytes, cut) = bytes;
    let bytes = if cut {
        bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(&[][..], |i| &bytes[i + 1..])
    } else {
        &bytes[..]
    };
    let text = String::from_utf8_lossy(bytes);
    let clean: String = text
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    let lines: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `window` bytes of a file, and whether anything came before them.
async fn read_tail(path: &Path, window: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    let start = len.saturating_sub(window);
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buf = Vec::with_capacity(window.min(len) as usize);
    f.take(window).read_to_end(&mut buf).await?;
    Ok((buf, start > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_keeps_the_last_lines_without_control_characters() {
        let p = std::env::temp_dir().join(format!("adaptest-tail-{}", std::process::id()));
        std::fs::write(&p, "one\n\x1b[0mtwo\n\nthree\nfour\n").unwrap();
        assert_eq!(tail_lines(&p, 2).await, "three\nfour");
        assert_eq!(tail_lines(&p, 10).await, "one\n[0mtwo\nthree\nfour");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(tail_lines(&p, 3).await, "");
    }

    /// A console that grew past the window: only whole lines from its end are quoted, never
    /// the fragment of the line the window starts in.
    #[tokio::test]
    async fn tail_of_a_long_console_reads_only_its_end_and_drops_the_cut_line() {
        let p = std::env::temp_dir().join(format!("adaptest-tail-long-{}", std::process::id()));
        let mut text = "early boot line\n".repeat(10_000);
        text.push_str(&"x".repeat(TAIL_WINDOW as usize));
        text.push_str("\nlogin: \nlast words\n");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(tail_lines(&p, 30).await, "login: \nlast words");
        std::fs::remove_file(&p).unwrap();
    }
}
