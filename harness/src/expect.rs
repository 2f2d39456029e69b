//! Judging a finished command against a case's expectations.

use crate::spec::suite::{Expectations, Stream};

/// The first unmet expectation, as a one-line reason; `None` when all are met.
pub fn check(
    expect: &Expectations,
    exit_code: Option<i32>,
    signal: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Option<String> {
    if exit_code != Some(expect.exit) {
        return Some(format!(
            "{}, expected status {}",
            adaptest_adapters::exit_status::describe(exit_code, signal),
            expect.exit
        ));
    }
    check_stream("stdout", &expect.stdout, stdout)
        .or_else(|| check_stream("stderr", &expect.stderr, stderr))
}

fn check_stream(name: &str, s: &Stream, text: &str) -> Option<String> {
    if let Some(want) = &s.equals {
        let got = text.trim_end();
        if got != want.trim_end() {
            return Some(format!(
                "{name} is {}, expected {}",
                quote(got),
                quote(want.trim_end())
            ));
        }
    }
    for needle in &s.contains {
        if !text.contains(needle.as_str()) {
            return Some(format!("{name} does not contain {}", quote(needle)));
        }
    }
    for needle in &s.not_contains {
        if text.contains(needle.as_str()) {
            return Some(format!("{name} contains {}", quote(needle)));
        }
    }
    if let Some(re) = &s.regex
        && !re.is_match(text)
    {
        return Some(format!("{name} does not match /{}/", re.as_str()));
    }
    None
}

/// A short, single-line rendering of a value for a reason.
fn quote(s: &str) -> String {
    format!("{:?}", adaptest_adapters::text::clip(s, 120))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp() -> Expectations {
        Expectations {
            exit: 0,
            stdout: Stream::default(),
            stderr: Stream::default(),
        }
    }

    #[test]
    fn exit_code_mismatch_is_named() {
        assert_eq!(
            check(&exp(), Some(1), None, "", "").as_deref(),
            Some("exited with status 1, expected status 0")
        );
        assert_eq!(
            check(&exp(), None, Some(9), "", "").as_deref(),
            Some("killed by SIGKILL, expected status 0")
        );
        assert_eq!(check(&exp(), Some(0), None, "", ""), None);
    }

    #[test]
    fn stream_rules() {
        let mut e = exp();
        e.stdout.equals = Some("中文".into());
        assert_eq!(check(&e, Some(0), None, "中文\n", ""), None);
        assert!(check(&e, Some(0), None, "中", "").is_some());
        e.stdout.equals = None;
        e.stdout.regex = Some(
            regex::RegexBuilder::new("^x86_64$")
                .multi_line(true)
                .build()
                .unwrap(),
        );
        assert_eq!(check(&e, Some(0), None, "x86_64\n", ""), None);
        assert!(
            check(&e, Some(0), None, "aarch64\n", "")
                .unwrap()
                .contains("does not match")
        );
        e.stdout.regex = None;
        e.stderr.not_contains = vec!["error".into()];
        assert_eq!(
            check(&e, Some(0), None, "", "error: x").as_deref(),
            Some("stderr contains \"error\"")
        );
    }
}
