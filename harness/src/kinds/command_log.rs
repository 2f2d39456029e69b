//! How a command that a case ran goes into the case's log: the command line, how it ended (in
//! the words of `adaptest_adapters::exit_status`, shared with every reason), its duration, and
//! its stdout and stderr, each bounded.

use adaptest_adapters::ExecOutput;
use std::fmt::Write as _;

/// Append `command` and what it left behind to `log`, keeping at most the last `limit` bytes
/// of each stream (the kept and dropped counts are written too).
pub fn append(log: &mut String, command: &str, o: &ExecOutput, limit: usize) {
    let _ = writeln!(log, "$ {command}");
    let _ = writeln!(
        log,
        "--- {}, {} ms{} ---",
        adaptest_adapters::exit_status::describe(o.exit_code, o.signal),
        o.duration.as_millis(),
        if o.timed_out { ", timed out" } else { "" }
    );
    for (name, bytes, dropped) in [
        ("stdout", &o.stdout, o.stdout_dropped),
        ("stderr", &o.stderr, o.stderr_dropped),
    ] {
        let kept = bytes.len().min(limit);
        let dropped = dropped + (bytes.len() - kept) as u64;
        let _ = writeln!(log, "--- {name} ({kept} bytes kept, {dropped} dropped) ---");
        log.push_str(&String::from_utf8_lossy(&bytes[bytes.len() - kept..]));
        if !log.ends_with('\n') {
            log.push('\n');
        }
    }
    for p in &o.leaked {
        let _ = writeln!(log, "--- leaked: {p}, killed by the harness ---");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_stream_and_names_the_status() {
        let o = ExecOutput {
            exit_code: None,
            signal: Some(9),
            stdout: b"0123456789".to_vec(),
            stderr: b"err".to_vec(),
            ..ExecOutput::default()
        };
        let mut log = String::new();
        append(&mut log, "false", &o, 4);
        assert!(log.contains("--- killed by SIGKILL, "), "{log}");
        assert!(
            log.contains("--- stdout (4 bytes kept, 6 dropped) ---\n6789\n"),
            "{log}"
        );
        assert!(
            log.contains("--- stderr (3 bytes kept, 0 dropped) ---\nerr\n"),
            "{log}"
        );
    }
}
