//! One describer of how a process ended, used by every message that mentions an exit status
//! (case reasons, logs, plugin failures): `exited with status 1`, `killed by SIGKILL`, never
//! Rust's `Debug` text (`Some(1)`).

/// `exited with status 1`, `killed by SIGKILL`, `killed by signal 77`, or — when neither is
/// known (a transport that lost the status) — `ended without an exit status`.
pub fn describe(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => match signal_name(s) {
            Some(name) => format!("killed by {name}"),
            None => format!("killed by signal {s}"),
        },
        (None, None) => "ended without an exit status".into(),
    }
}

/// The conventional name of a signal number (`9` → `SIGKILL`), for the signals a test
/// process ends by in practice.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// [`describe`] for a finished local process.
pub fn describe_status(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    describe(status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_status_and_signal_names_in_words() {
        assert_eq!(describe(Some(1), None), "exited with status 1");
        assert_eq!(describe(Some(0), None), "exited with status 0");
        assert_eq!(describe(None, Some(9)), "killed by SIGKILL");
        assert_eq!(describe(None, Some(15)), "killed by SIGTERM");
        assert_eq!(describe(None, Some(77)), "killed by signal 77");
        assert_eq!(describe(None, None), "ended without an exit status");
    }
}
