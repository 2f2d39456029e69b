//! Integration tests of [`LocalTarget`]: real commands on this host, including process trees that
//! must not survive a timeout, a cancel or a normal exit.

use adaptest_adapters::target::LocalTarget;
use adaptest_adapters::{ExecOutput, ExecRequest, Target, TargetError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn target() -> LocalTarget {
    LocalTarget::new("host")
}

async fn run(req: ExecRequest) -> ExecOutput {
    target()
        .exec(req, &CancellationToken::new())
        .await
        .expect("exec")
}

/// Run `command` with `timeout`.
async fn run_cmd(command: &str, timeout: Duration) -> ExecOutput {
    run(ExecRequest::new(command, timeout)).await
}

fn stdout(out: &ExecOutput) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pids printed one per line by a command (`echo $!`).
fn pids(out: &ExecOutput) -> Vec<u32> {
    let pids: Vec<u32> = stdout(out)
        .lines()
        .map(|l| l.trim().parse().expect("a pid per line"))
        .collect();
    assert!(!pids.is_empty(), "the command printed no pid: {out:?}");
    pids
}

/// Whether `pid` is a running (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat[stat.rfind(')').expect("comm") + 1..]
                .split_ascii_whitespace()
                .next()
                .expect("state");
            state != "Z" && state != "X"
        }
    }
}

/// SIGKILL is delivered asynchronously: give killed processes a moment to actually die. Kills
/// the survivors (so a failing run leaves nothing behind) before failing.
fn assert_dead(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &survivors {
        // SAFETY: kill(2) on a pid that our own command printed; plain integers.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(survivors.is_empty(), "still alive: {survivors:?}");
}

const SECS_5: Duration = Duration::from_secs(5);

#[tokio::test]
async fn exit_code_stdout_and_stderr() {
    let out = run(ExecRequest::new("echo out; echo err >&2; exit 7", SECS_5)).await;
    assert_eq!(out.exit_code, Some(7));
    assert_eq!(out.signal, None);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!((out.stdout_dropped, out.stderr_dropped), (0, 0));
    assert!(!out.timed_out && !out.cancelled);

    // An unbounded timeout is fine.
    let out = run(ExecRequest::new("true", Duration::MAX)).await;
    assert_eq!(out.exit_code, Some(0));
}

#[tokio::test]
async fn killed_by_a_signal() {
    let out = run(ExecRequest::new("kill -TERM $$", SECS_5)).await;
    assert_eq!(out.exit_code, None);
    assert_eq!(out.signal, Some(libc::SIGTERM));
}

#[tokio::test]
async fn stdin_env_and_cwd_are_honoured() {
    let mut req = ExecRequest::new(
        "cat; printf '%s|%s|' \"$A\" \"$B\"; pwd; echo \"$HOME\"",
        SECS_5,
    );
    req.stdin = Some(b"from stdin|".to_vec());
    req.env = vec![("A".into(), "one".into()), ("B".into(), "two words".into())];
    req.cwd = Some("/tmp".into());
    let out = run(req).await;
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let home = std::env::var("HOME").unwrap_or_default();
    // The added variables come on top of the inherited environment ($HOME).
    assert_eq!(
        stdout(&out),
        format!("from stdin|one|two words|/tmp\n{home}\n")
    );
}

#[tokio::test]
async fn no_stdin_reads_eof() {
    let out = run(ExecRequest::new("wc -c", SECS_5)).await;
    assert_eq!(stdout(&out).trim(), "0");
}

#[tokio::test]
async fn large_stdin_not_read_by_the_command_does_not_hang() {
    let mut req = ExecRequest::new("exit 3", SECS_5);
    req.stdin = Some(vec![b'x'; 4 << 20]);
    let out = run(req).await;
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.timed_out);
}

#[tokio::test]
async fn capture_limit_truncates_and_counts() {
    let mut req = ExecRequest::new(
        "head -c 3000000 /dev/zero; head -c 1500000 /dev/zero >&2; echo done >&2",
        Duration::from_secs(20),
    );
    req.capture_limit = 1 << 20;
    let out = run(req).await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout.len(), 1 << 20);
    assert_eq!(out.stdout_dropped, 3_000_000 - (1 << 20));
    assert_eq!(out.stderr.len(), 1 << 20);
    assert_eq!(out.stderr_dropped, 1_500_005 - (1 << 20));
}

#[tokio::test]
async fn spawn_failure_is_a_target_error() {
    let mut req = ExecRequest::new("true", SECS_5);
    req.cwd = Some("/nonexistent/adaptest/dir".into());
    let err = target()
        .exec(req, &CancellationToken::new())
        .await
        .expect_err("bad cwd");
    assert!(matches!(err, TargetError::Spawn { .. }), "{err:?}");
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() {
    let out = run_cmd("sleep 300 & echo $!; sleep 300", Duration::from_secs(1)).await;
    assert!(out.timed_out, "{out:?}");
    assert!(!out.cancelled);
    assert_eq!(out.exit_code, None);
    // Asked to terminate first: the shell ends of SIGTERM, within the grace period.
    assert_eq!(out.signal, Some(libc::SIGTERM));
    assert!(out.duration >= Duration::from_secs(1));
    assert_dead(&pids(&out));
}

/// A timed-out command gets SIGTERM and a grace period to clean up (its trap runs and can
/// still write output), then SIGKILL if it does not end: nextest's way, not an instant kill.
#[tokio::test]
async fn timeout_terminates_then_kills_after_the_grace_period() {
    // Cleans up on SIGTERM: the trap's output is captured and it ends by itself.
    let mut req = ExecRequest::new(
        "trap 'echo cleaned up; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
        Duration::from_secs(1),
    );
    req.grace = Duration::from_secs(30);
    let out = run(req).await;
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, Some(3), "{out:?}");
    assert_eq!(stdout(&out), "ready\ncleaned up\n");

    // Ignores SIGTERM: SIGKILL once the grace period is over, the tree with it.
    let mut req = ExecRequest::new(
        "trap '' TERM; sleep 300 & echo $!; while :; do sleep 0.1; done",
        Duration::from_secs(1),
    );
    req.grace = Duration::from_millis(200);
    let out = run(req).await;
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out:?}");
    assert_dead(&pids(&out));
}

#[tokio::test]
async fn timeout_kills_a_setsid_grandchild() {
    let out = run_cmd(
        "setsid sleep 300 & echo $!; sh -c 'sleep 301 & echo $!; wait'",
        Duration::from_secs(1),
    )
    .await;
    assert!(out.timed_out, "{out:?}");
    let pids = pids(&out);
    assert_eq!(pids.len(), 2, "{out:?}");
    assert_dead(&pids);
}

#[tokio::test]
async fn normal_exit_kills_leftovers_and_records_them_as_leaked() {
    // The leftover holds our stdout pipe open: the command returns because its group was
    // killed (which closes the pipe), not because a drain grace period ran out.
    // The command waits (busy, no sleep) until its child has exec'd `sleep`, so the leftover's
    // name is `sleep`, not the forked `sh` it is for a moment.
    let out = run_cmd(
        "sleep 300 & p=$!; until [ \"$(cat /proc/$p/comm)\" = sleep ]; do :; done; echo $p",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    assert!(!out.timed_out);
    let pids = pids(&out);
    assert_eq!(
        out.leaked,
        [adaptest_schema::LeakedProcess {
            pid: pids[0],
            command: "sleep".into()
        }],
        "{out:?}"
    );
    assert_dead(&pids);
    // A clean command leaks nothing.
    assert!(run_cmd("true", SECS_5).await.leaked.is_empty());
}

/// A lifecycle `start` leaves its service running: `keep_background` spares the leftovers.
#[tokio::test]
async fn keep_background_leaves_the_service_running() {
    let mut req = ExecRequest::new(
        "sleep 300 >/dev/null 2>&1 & echo $!",
        Duration::from_secs(60),
    );
    req.keep_background = true;
    let out = run(req).await;
    assert_eq!(out.exit_code, Some(0));
    let pids = pids(&out);
    assert_eq!(pids.len(), 1);
    // Nothing was killed (a kill would be listed) and the service runs.
    assert!(out.leaked.is_empty(), "{out:?}");
    assert!(alive(pids[0]), "the background service was killed");
    // SAFETY: kill(2) on a PID this test started and read back from its output.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
}

/// A daemon that left the process group keeps our stdout pipe open: we stop draining after a
/// grace period instead of hanging. (It is not ours to kill any more: the test cleans it up.)
#[tokio::test]
async fn escaped_daemon_holding_the_pipe_does_not_hang() {
    // Print the daemon's pid only once it has left the group (the marker is created after
    // `setsid`), or our kill of the group could win the race.
    let marker = pid_file("escaped");
    let command = format!(
        "setsid sh -c ': > \"$0\"; exec sleep 300' {m} & \
         while [ ! -e {m} ]; do sleep 0.01; done; rm {m}; echo $!",
        m = marker.display()
    );
    let out = run_cmd(&command, Duration::from_secs(60)).await;
    let pids = pids(&out);
    // We returned while the daemon still runs and holds the pipe: we stopped waiting for it.
    let still_running = pids.iter().all(|&p| alive(p));
    for &pid in &pids {
        // SAFETY: kill(2) on the pid our own command printed; plain integers.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert_eq!(out.exit_code, Some(0));
    assert!(!out.timed_out, "{out:?}");
    assert!(
        still_running,
        "the daemon was gone before exec returned: {pids:?}"
    );
}

/// A fresh path for a command to write pids into.
fn pid_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("adaptest-{name}-{}", std::process::id()))
}

/// Wait until `file` holds `n` complete lines of pids (written by the running command).
async fn wait_for_pids(file: &std::path::Path, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.ends_with('\n') && text.lines().count() == n {
            std::fs::remove_file(file).expect("rm pid file");
            return text.lines().map(|l| l.parse().expect("pid")).collect();
        }
        assert!(
            Instant::now() < deadline,
            "the command never wrote its pids"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancel_kills_the_tree() {
    let file = pid_file("cancel");
    let command = format!(
        "sleep 300 & a=$!; setsid sleep 300 & printf '%s\\n%s\\n' $a $! > {}; sleep 300",
        file.display()
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let watcher = {
        let file = file.clone();
        tokio::spawn(async move {
            let pids = wait_for_pids(&file, 2).await;
            trigger.cancel();
            pids
        })
    };
    let out = target()
        .exec(ExecRequest::new(command, Duration::from_secs(120)), &cancel)
        .await
        .expect("exec");
    let pids = watcher.await.expect("watcher");
    assert!(out.cancelled, "{out:?}");
    assert!(!out.timed_out);
    assert_eq!(out.signal, Some(libc::SIGTERM));
    assert_dead(&pids);

    // Already cancelled: nothing runs.
    let out = target()
        .exec(ExecRequest::new("echo never", SECS_5), &cancel)
        .await
        .expect("exec");
    assert!(out.cancelled && out.stdout.is_empty());
}

/// Dropping the exec future (the caller gave up) kills the tree too.
#[tokio::test]
async fn dropping_the_future_kills_the_tree() {
    let file = pid_file("drop");
    let command = format!("sleep 300 & echo $! > {}; sleep 300", file.display());
    let t = target();
    let cancel = CancellationToken::new();
    let mut fut = t.exec(ExecRequest::new(command, Duration::from_secs(120)), &cancel);
    let pids = tokio::select! {
        out = &mut fut => panic!("the command ended early: {out:?}"),
        pids = wait_for_pids(&file, 1) => pids,
    };
    drop(fut);
    assert_dead(&pids);
}

#[tokio::test]
async fn environment_of_this_host() {
    let t = target();
    assert_eq!(t.kind(), "local");
    assert_eq!(t.id(), "host");
    t.start().await.expect("start");
    let env = t.environment().await.expect("environment");
    t.stop().await.expect("stop");

    let uname = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .expect("uname");
    assert_eq!(env.arch, String::from_utf8_lossy(&uname.stdout).trim());
    assert_eq!(env.target, "host");
    assert_eq!(env.target_kind, "local");
    assert!(!env.kernel.is_empty());
    // This host's own facts, whatever distribution it runs.
    assert_eq!(env.os_id, host_os_release("ID"), "{env:?}");
    assert!(
        !env.os_version.is_empty() && !env.os_name.is_empty(),
        "{env:?}"
    );
    assert!(env.cores >= 1);
    assert!(env.memory_bytes > 0);
    assert!(env.page_size >= 4096);
    let glibc = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .is_ok_and(|o| o.status.success());
    if glibc {
        assert!(env.libc.starts_with("glibc"), "{env:?}");
    } else {
        assert!(!env.libc.is_empty(), "{env:?}");
    }
    assert!(
        !env.cpu_model.is_empty() && !env.cpu_vendor.is_empty(),
        "{env:?}"
    );
    assert!(!env.hostname.is_empty());
    assert!(
        ["v1", "v2", "none"].contains(&env.extra["cgroup"].as_str()),
        "{env:?}"
    );
}

/// A field of this host's `/etc/os-release` (unquoted; `linux` for a missing `ID`).
fn host_os_release(key: &str) -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .unwrap_or_else(|| {
            if key == "ID" {
                "linux".into()
            } else {
                String::new()
            }
        })
}

/// The per-call overhead of `exec`, against a shell loop of `sh -c true`.
/// Run with `cargo test --release -p adaptest-adapters --test local -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_exec_overhead() {
    const N: u32 = 1000;
    let t = target();
    let cancel = CancellationToken::new();
    // Warm up.
    for _ in 0..20 {
        t.exec(ExecRequest::new("true", SECS_5), &cancel)
            .await
            .expect("exec");
    }
    let started = Instant::now();
    for _ in 0..N {
        let out = t
            .exec(ExecRequest::new("true", SECS_5), &cancel)
            .await
            .expect("exec");
        assert_eq!(out.exit_code, Some(0));
    }
    let ours = started.elapsed() / N;

    let started = Instant::now();
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {N} ]; do sh -c true; i=$((i+1)); done"
        ))
        .status()
        .expect("shell loop");
    assert!(status.success());
    let shell = started.elapsed() / N;
    let ratio = ours.as_secs_f64() / shell.as_secs_f64();
    eprintln!("exec: {ours:?} per call; shell loop: {shell:?} per call; ratio {ratio:.2}");
    assert!(ratio < 1.5, "exec overhead {ratio:.2}x the shell loop");
}

/// A component on the local target is reached where the plan's `host` resolves to (the
/// engine asks the target, it does not look at its kind); without a `host`, at the loopback.
#[tokio::test]
async fn component_addr_resolves_the_plan_host_on_the_local_target() {
    let t = target();
    let at = t.component_addr(Some("localhost"), 6379).await.unwrap();
    assert!(at.ip().is_loopback(), "{at}");
    assert_eq!(at.port(), 6379);
    let at = t.component_addr(Some("127.0.0.2"), 5432).await.unwrap();
    assert_eq!(at.to_string(), "127.0.0.2:5432");
    let at = t.component_addr(None, 1883).await.unwrap();
    assert_eq!(at.to_string(), "127.0.0.1:1883");
}
