//! `import` cases: run an external suite on the target and turn each test it reports (TAP on
//! stdout, or a JUnit XML file) into a case of its own, `<import-case-id>/<test name>`.
//!
//! Mapping (documented in README): TAP `ok` → passed, `not ok` → failed, `# SKIP` → skipped,
//! `# TODO` not ok → skipped (a known gap: neither a pass nor a failure), `# TODO` ok → passed
//! with a note, `Bail out!` → an `error` case; a plan that does not match the tests seen adds a
//! failed `(plan)` case. JUnit success → passed (flaky when it records failed reruns), failure
//! and error → failed, skipped → skipped. Subtests (indented TAP) are counted and kept in their
//! parent test's output, not made cases.

use super::CaseOutcome;
use crate::spec::duration::format_duration;
use crate::spec::import::{ImportAction, ImportFormat};
use crate::spec::suite::Case;
use adaptest_adapters::{ExecRequest, Target};
use adaptest_reports::Status;
use std::collections::HashSet;
use std::fmt::Write as _;
use tokio_util::sync::CancellationToken;

mod junit;
mod runner;
mod tap;

pub use junit::*;
pub use runner::*;
pub use tap::*;

/// Bytes of a producer's stdout kept for parsing (TAP streams of big suites are long).
const CAPTURE_LIMIT: usize = 32 << 20;

/// One test an external suite reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTest {
    /// The producer's name for it (file-qualified for `prove` output), unique in the import.
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
    pub duration_ms: Option<u64>,
    /// Diagnostics: TAP YAML and comments that followed it, JUnit failure text and system-out.
    pub output: String,
    /// JUnit system-err.
    pub stderr: String,
}

/// Everything parsed from one producer's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub tests: Vec<ImportedTest>,
    /// Indented (subtest) test points seen, counted into their parents' output.
    pub subtests: usize,
}

impl ImportReport {
    fn push(&mut self, mut t: ImportedTest, seen: &mut HashSet<String>, number: Option<u64>) {
        t.name = unique_name(&t.name, number, seen);
        self.tests.push(t);
    }
}

/// A case-id-safe, unique version of a producer's test name: control characters become
/// spaces, `.`/`..` path components and empty ones are avoided (the name is part of a log
/// path), long components are cut; a repeated name gets ` #<number>` (or ` #<n>`).
fn unique_name(raw: &str, number: Option<u64>, seen: &mut HashSet<String>) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let parts: Vec<String> = cleaned
        .split('/')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "." | ".." => p.replace('.', "_"),
            p if p.len() > 120 => {
                let mut end = 120;
                while !p.is_char_boundary(end) {
                    end -= 1;
                }
                p[..end].to_string()
            }
            p => p.to_string(),
        })
        .collect();
    let base = if parts.is_empty() {
        "(unnamed)".to_string()
    } else {
        parts.join("/")
    };
    if seen.insert(base.clone()) {
        return base;
    }
    let mut n = number.unwrap_or(2);
    loop {
        let candidate = format!("{base} #{n}");
        if seen.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------- results

/// The journal records of the tests an import recorded in the attempt that finished it
/// (`parent`), in the order they were reported. Records of an earlier, interrupted attempt are
/// left out: the import re-ran as a whole.
pub fn children_of<'a>(
    records: &'a std::collections::HashMap<(String, String), crate::journal::CaseRecord>,
    combination: &str,
    parent: &crate::journal::CaseRecord,
) -> Vec<&'a crate::journal::CaseRecord> {
    parent
        .imported
        .iter()
        .filter_map(|id| records.get(&(combination.to_string(), id.clone())))
        .collect()
}

/// The result of one imported test: the import case's title, level and tags, the test's
/// name as its title.
pub fn child_result(import: &Case, r: &crate::journal::CaseRecord) -> adaptest_reports::CaseResult {
    let name = r
        .case
        .strip_prefix(&format!("{}/", import.id))
        .unwrap_or(&r.case)
        .to_string();
    adaptest_reports::CaseResult {
        id: r.case.clone(),
        title: name.clone(),
        title_zh: name,
        level: r.level,
        status: r.status,
        reason: r.reason.clone(),
        attempts: r.attempts,
        duration_ms: r.duration_ms,
        exit_code: r.exit_code,
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
        log: r.log.clone(),
        tags: import.tags.clone(),
        metrics: r.metrics.clone(),
        waiver: None,
        sql_records: None,
        leaked: r.leaked.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(r: &ImportReport) -> Vec<(&str, Status)> {
        r.tests
            .iter()
            .map(|t| (t.name.as_str(), t.status))
            .collect()
    }

    #[test]
    fn plain_tap_13_with_directives_yaml_and_subtests() {
        let tap = "TAP version 13\n1..6\nok 1 - first\n# diag for second (KTAP prints it first)\nnot ok 2 - second \\# escaped # not a directive\n  ---\n  message: 'boom'\n  duration_ms: 12.6\n  ...\nok 3 # SKIP no network\nnot ok 4 - later # TODO not yet\n# Subtest: nested\n    1..2\n    ok 1 - a\n    not ok 2 - b\nnot ok 5 - nested\nok 6 - last # todo flaky upstream\n";
        let r = parse_tap(tap);
        assert_eq!(
            statuses(&r),
            vec![
                ("first", Status::Passed),
                ("second # escaped # not a directive", Status::Failed),
                ("3", Status::Skipped),
                ("later", Status::Skipped),
                ("nested", Status::Failed),
                ("last", Status::Passed),
            ]
        );
        let second = &r.tests[1];
        assert_eq!(second.duration_ms, Some(13));
        assert!(
            second.output.contains("message: 'boom'") && second.output.contains("diag for second"),
            "{}",
            second.output
        );
        assert!(
            second
                .reason
                .as_deref()
                .unwrap()
                .starts_with("not ok 2 - second # escaped"),
            "{:?}",
            second.reason
        );
        assert_eq!(r.tests[2].reason.as_deref(), Some("skipped: no network"));
        assert!(r.tests[3].reason.as_deref().unwrap().contains("TODO"));
        assert!(
            r.tests[4].output.contains("(subtests: 1 ok, 1 not ok)"),
            "{}",
            r.tests[4].output
        );
        assert!(r.tests[4].output.contains("    ok 1 - a"));
        assert_eq!(r.subtests, 2);
        assert!(
            r.tests[5]
                .reason
                .as_deref()
                .unwrap()
                .contains("passed unexpectedly")
        );
    }

    #[test]
    fn plan_problems_and_bail_out() {
        let short = parse_tap("1..3\nok 1 - a\nok 2 - b\n");
        assert_eq!(short.tests.last().unwrap().name, "(plan)");
        assert_eq!(short.tests.last().unwrap().status, Status::Failed);
        assert!(
            short
                .tests
                .last()
                .unwrap()
                .reason
                .as_deref()
                .unwrap()
                .contains("planned 3 test(s) but 2 ran")
        );
        let none = parse_tap("ok 1\nok 2\n");
        assert!(
            none.tests
                .last()
                .unwrap()
                .reason
                .as_deref()
                .unwrap()
                .contains("no plan")
        );
        let late_plan = parse_tap("ok 1\nok 2\n1..2\n");
        assert_eq!(late_plan.tests.len(), 2, "a plan at the end is fine");
        let bail = parse_tap("1..5\nok 1 - a\nBail out! database is down\nok 2 - never\n");
        assert_eq!(
            statuses(&bail),
            vec![("a", Status::Passed), ("(bail out)", Status::Error)]
        );
        assert_eq!(
            bail.tests[1].reason.as_deref(),
            Some("Bail out! database is down")
        );
        // `prove` swallows the bail-out line and reports it first, in its own words.
        let pb = parse_tap(
            "Bailout called.  Further testing stopped:  db gone\nbail/stop.t .. \n1..3\nok 1 - connected\nDubious, test returned 255\n",
        );
        assert_eq!(
            statuses(&pb),
            vec![
                ("bail/stop.t/connected", Status::Passed),
                ("bail/stop.t/(bail out)", Status::Error)
            ]
        );
        assert_eq!(pb.tests[1].reason.as_deref(), Some("Bail out! db gone"));
        let skipped_all = parse_tap("1..0 # SKIP no GPU\n");
        assert_eq!(statuses(&skipped_all), vec![("(all)", Status::Skipped)]);
        let seq = parse_tap("1..2\nok 1\nok 3\n");
        assert!(seq.tests.iter().any(|t| {
            t.reason
                .as_deref()
                .unwrap_or("")
                .contains("out of sequence")
        }));
        assert!(parse_tap("hello\nworld\n").tests.is_empty());
    }

    #[test]
    fn prove_verbose_output_is_split_per_file() {
        let out = "t/basic.t .. \n1..3\nok 1 - addition\nok 2 - lowercase\nok 3 # skip no network here\nok\nt/fail.t ... \nok 1 - first\nnot ok 2 - arithmetic is wrong\n\n#   Failed test 'arithmetic is wrong'\n#   at t/fail.t line 4.\nnot ok 3 - future feature # TODO not implemented\n# Subtest: nested\n    1..2\n    ok 1 - inner one\n    ok 2 - inner two\nok 4 - nested\n1..4\n# Looks like you failed 1 test of 4.\nDubious, test returned 1 (wstat 256, 0x100)\nFailed 1/4 subtests \n\nTest Summary Report\n-------------------\nt/fail.t (Wstat: 256 (exited 1) Tests: 4 Failed: 1)\nResult: FAIL\n";
        let r = parse_tap(out);
        assert_eq!(
            statuses(&r),
            vec![
                ("t/basic.t/addition", Status::Passed),
                ("t/basic.t/lowercase", Status::Passed),
                ("t/basic.t/3", Status::Skipped),
                ("t/fail.t/first", Status::Passed),
                ("t/fail.t/arithmetic is wrong", Status::Failed),
                ("t/fail.t/future feature", Status::Skipped),
                ("t/fail.t/nested", Status::Passed),
            ]
        );
        assert!(
            r.tests[4]
                .reason
                .as_deref()
                .unwrap()
                .contains("Failed test 'arithmetic is wrong'"),
            "{:?}",
            r.tests[4].reason
        );
        assert!(
            !r.tests[6].output.contains("Result: FAIL"),
            "prove's summary is not a test's output"
        );
    }

    #[test]
    fn names_are_unique_and_path_safe() {
        let r =
            parse_tap("1..4\nok 1 - same\nok 2 - same\nok 3 - ../../etc/passwd\nok 4 - a\u{7}b\n");
        let names: Vec<&str> = r.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["same", "same #2", "__/__/etc/passwd", "a b"]);
    }

    #[test]
    fn junit_reports_from_other_tools() {
        // pytest's shape (a <testsuites> root), trimmed.
        let py = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.08"><testcase classname="test_sample" name="test_ok" time="0.250"><system-out>hello</system-out></testcase><testcase classname="test_sample" name="test_fail" time="0.001"><failure message="AssertionError: upper is wrong&#10;assert 'ABC' == 'ABD'">trace here</failure></testcase><testcase classname="test_sample" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not on this platform">x</skipped></testcase><testcase classname="test_sample" name="test_error" time="0.004"><error message="failed on setup">boom</error></testcase></testsuite></testsuites>"#;
        let r = parse_junit(py).unwrap();
        assert_eq!(
            statuses(&r),
            vec![
                ("test_sample.test_ok", Status::Passed),
                ("test_sample.test_fail", Status::Failed),
                ("test_sample.test_skip", Status::Skipped),
                ("test_sample.test_error", Status::Failed),
            ]
        );
        assert_eq!(r.tests[0].duration_ms, Some(250));
        assert_eq!(r.tests[0].output, "hello");
        assert_eq!(
            r.tests[1].reason.as_deref(),
            Some("failure: AssertionError: upper is wrong")
        );
        assert!(r.tests[3].reason.as_deref().unwrap().starts_with("error: "));
        // A lone <testsuite> root (Maven Surefire, many others).
        let lone = r#"<?xml version="1.0"?><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="only"/></testsuite>"#;
        assert_eq!(
            statuses(&parse_junit(lone).unwrap()),
            vec![("only", Status::Passed)]
        );
        assert!(parse_junit("<html/>").is_err());
    }

    #[test]
    fn judging_an_import() {
        let r = parse_tap("1..2\nok 1 - a\nnot ok 2 - b\n");
        let o = judge("perl", r, None);
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.children.len(), 2);
        assert_eq!(o.children[1].id, "perl/b");
        assert!(o.reason.as_deref().unwrap().contains("1 passed, 1 failed"));
        let bail = judge("x", parse_tap("1..2\nok 1\nBail out! no db\n"), None);
        assert_eq!(bail.status, Status::Error);
        let ok = judge("x", parse_tap("1..1\nok 1\n"), Some("5s".into()));
        assert_eq!(
            ok.status,
            Status::Failed,
            "a timeout fails the import even when the tests seen passed"
        );
    }
}
