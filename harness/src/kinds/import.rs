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

// ---------------------------------------------------------------- TAP

/// A TAP stream being read: one for plain TAP, one per file in `prove -v` output.
#[derive(Default)]
struct Stream {
    /// `prove`'s file name, prefixed to the names of its tests.
    file: Option<String>,
    plan: Option<u64>,
    plan_skip: Option<String>,
    /// A `TAP version` line opened the stream. Such producers (kselftest's KTAP, node-tap)
    /// print a test's diagnostics before its test point; Perl's Test::More prints them after.
    versioned: bool,
    /// Comments since the last test point, not yet given to a test.
    between: String,
    count: u64,
    /// Index in the report of this stream's first test.
    first: usize,
    /// Index of the last test point of this stream.
    last: Option<usize>,
    /// `# Subtest:` and indented lines waiting for the test point that closes them.
    pending: String,
    pending_counts: (usize, usize),
    out_of_sequence: Vec<String>,
}

impl Stream {
    fn name(&self, test: &str) -> String {
        match &self.file {
            Some(f) => format!("{f}/{test}"),
            None => test.to_string(),
        }
    }

    /// The plan is satisfied: every planned test has been seen (what follows in `prove`
    /// output is its own verdict on the file).
    fn complete(&self) -> bool {
        self.plan.is_some_and(|p| self.count >= p)
    }

    /// Give the comments read since the last test point to that test.
    fn flush_between(&mut self, tests: &mut [ImportedTest]) {
        let between = std::mem::take(&mut self.between);
        if let Some(i) = self.last {
            tests[i].output.push_str(&between);
        }
    }
}

/// Split `desc # SKIP/TODO reason` at the first unescaped `#` that starts a directive; any
/// other `#` stays in the description (as TAP::Parser keeps it). Unescape `\#` and `\\`.
fn split_directive(rest: &str) -> (String, Option<String>) {
    let mut desc = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some((_, n @ ('#' | '\\'))) => {
                    desc.push(*n);
                    chars.next();
                }
                _ => desc.push('\\'),
            },
            '#' if directive(rest[i + 1..].trim()).is_some() => {
                return (
                    desc.trim().to_string(),
                    Some(rest[i + 1..].trim().to_string()),
                );
            }
            c => desc.push(c),
        }
    }
    (desc.trim().to_string(), None)
}

/// `SKIP reason` / `TODO reason` (case-insensitive; `skipped` counts) → (kind, reason).
fn directive(d: &str) -> Option<(&'static str, String)> {
    let lower = d.to_ascii_lowercase();
    for (word, kind) in [("skip", "skip"), ("todo", "todo")] {
        if lower.starts_with(word) {
            let rest = d[word.len()..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
            return Some((kind, rest.trim_start_matches([':', ' ']).trim().to_string()));
        }
    }
    None
}

fn is_prove_header(line: &str) -> Option<&str> {
    // `t/basic.t .. ` (the dots pad file names to one width); never a TAP line.
    let trimmed = line.trim_end();
    let name = trimmed.strip_suffix("..")?.trim_end_matches('.');
    let name = name.strip_suffix(' ')?;
    (!name.is_empty() && !name.starts_with(' ') && !name.contains(' ')).then_some(name)
}

/// A test point: (ok, number, rest of the line).
fn test_point(line: &str) -> Option<(bool, Option<u64>, &str)> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok") {
        (true, r)
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '#'])) {
        return None; // `okay`, `oklahoma`
    }
    let rest = rest.trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number = rest[..digits].parse().ok();
    let rest = rest[digits..].trim_start();
    let rest = rest
        .strip_prefix("- ")
        .or_else(|| (rest == "-").then_some(""))
        .unwrap_or(rest);
    Some((ok, number, rest))
}

/// A plan line `1..N` with an optional `# SKIP reason`.
fn plan_line(line: &str) -> Option<(u64, Option<String>)> {
    let rest = line.strip_prefix("1..")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let n = rest[..digits].parse().ok()?;
    let tail = rest[digits..].trim();
    if tail.is_empty() {
        return Some((n, None));
    }
    let d = tail.strip_prefix('#')?;
    Some((
        n,
        directive(d.trim())
            .filter(|(k, _)| *k == "skip")
            .map(|(_, r)| r),
    ))
}

/// Parse TAP 13/14 (and `prove -v`'s per-file output, and kselftest's KTAP) into tests.
pub fn parse_tap(text: &str) -> ImportReport {
    let mut report = ImportReport::default();
    let mut seen = HashSet::new();
    let mut stream = Stream::default();
    let mut in_yaml = false;
    let mut prev_was_point = false;
    let mut bailed: Option<String> = None;
    // `prove` reports a bail-out itself, first: `Bailout called.  Further testing stopped: …`.
    let mut prove_bailed: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if in_yaml {
            if let Some(i) = stream.last {
                let t = &mut report.tests[i];
                t.output.push_str(line.trim_start());
                t.output.push('\n');
                if let Some(v) = line.trim().strip_prefix("duration_ms:") {
                    t.duration_ms = v.trim().parse::<f64>().ok().map(|ms| ms.round() as u64);
                }
            }
            if line.trim() == "..." {
                in_yaml = false;
            }
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented && prev_was_point && line.trim() == "---" {
            in_yaml = true;
            prev_was_point = false;
            if let Some(i) = stream.last {
                report.tests[i].output.push_str("---\n");
            }
            continue;
        }
        prev_was_point = false;
        if let Some(r) = line.strip_prefix("Bailout called.") {
            prove_bailed = Some(
                r.trim()
                    .trim_start_matches("Further testing stopped:")
                    .trim()
                    .to_string(),
            );
            continue;
        }
        if let Some(file) = is_prove_header(line) {
            finish_stream(&mut report, &mut seen, &mut stream);
            stream = Stream {
                file: Some(file.to_string()),
                first: report.tests.len(),
                ..Stream::default()
            };
            continue;
        }
        if indented {
            // A subtest's lines: kept for, and counted into, the test point that closes it.
            let inner = line.trim_start();
            if let Some(reason) = inner.strip_prefix("Bail out!") {
                bailed = Some(reason.trim().to_string());
                break;
            }
            if let Some((ok, _, _)) = test_point(inner) {
                if ok {
                    stream.pending_counts.0 += 1;
                } else {
                    stream.pending_counts.1 += 1;
                }
                report.subtests += 1;
            }
            stream.pending.push_str(line);
            stream.pending.push('\n');
            continue;
        }
        if let Some(reason) = line.strip_prefix("Bail out!") {
            bailed = Some(reason.trim().to_string());
            break;
        }
        if line.starts_with("TAP version") {
            stream.versioned = true;
            continue;
        }
        if line.starts_with("pragma ") {
            continue;
        }
        if let Some((n, skip)) = plan_line(line) {
            stream.plan = Some(n);
            stream.plan_skip = skip;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let buf = if comment.trim_start().starts_with("Subtest:") || !stream.pending.is_empty()
            {
                &mut stream.pending
            } else {
                &mut stream.between
            };
            buf.push_str(line);
            buf.push('\n');
            continue;
        }
        if let Some((ok, number, rest)) = test_point(line) {
            // After a file's plan is met, `prove` prints its own verdict (`ok`, `Dubious…`).
            if stream.file.is_some() && stream.complete() {
                continue;
            }
            stream.count += 1;
            let expected = stream.count;
            if let Some(n) = number
                && n != expected
            {
                stream
                    .out_of_sequence
                    .push(format!("test {n} reported where test {expected} was due"));
            }
            let number = number.unwrap_or(expected);
            let (desc, dir) = split_directive(rest);
            let dir = dir.as_deref().and_then(directive);
            let label = if desc.is_empty() {
                number.to_string()
            } else {
                desc.clone()
            };
            let point = format!(
                "{} {number}{}",
                if ok { "ok" } else { "not ok" },
                if desc.is_empty() {
                    String::new()
                } else {
                    format!(" - {desc}")
                }
            );
            let (status, reason) = match (&dir, ok) {
                (Some(("skip", r)), _) => (
                    Status::Skipped,
                    Some(if r.is_empty() {
                        "skipped".into()
                    } else {
                        format!("skipped: {r}")
                    }),
                ),
                (Some(("todo", r)), false) => (
                    Status::Skipped,
                    Some(format!("TODO (known not to work yet): {r}")),
                ),
                (Some(("todo", r)), true) => (
                    Status::Passed,
                    Some(format!("TODO test passed unexpectedly: {r}")),
                ),
                (_, true) => (Status::Passed, None),
                (_, false) => (Status::Failed, Some(point.clone())),
            };
            // Comments since the last point: that test's (Test::More) or this one's (KTAP).
            let mut output = if stream.versioned || stream.last.is_none() {
                std::mem::take(&mut stream.between)
            } else {
                stream.flush_between(&mut report.tests);
                String::new()
            };
            output.push_str(&std::mem::take(&mut stream.pending));
            if !stream.pending_counts.eq(&(0, 0)) || output.contains("# Subtest:") {
                let (p, f) = std::mem::take(&mut stream.pending_counts);
                let _ = writeln!(output, "(subtests: {p} ok, {f} not ok)");
            }
            output.push_str(line);
            output.push('\n');
            report.push(
                ImportedTest {
                    name: stream.name(&label),
                    status,
                    reason,
                    duration_ms: None,
                    output,
                    stderr: String::new(),
                },
                &mut seen,
                Some(number),
            );
            stream.last = Some(report.tests.len() - 1);
            prev_was_point = true;
            continue;
        }
        // Anything else is not TAP: kept with the last test until its file's plan is met.
        if let Some(i) = stream.last
            && !stream.complete()
            && !line.trim().is_empty()
        {
            report.tests[i].output.push_str(line);
            report.tests[i].output.push('\n');
        }
    }
    stream.flush_between(&mut report.tests);
    if let Some(reason) = bailed.or(prove_bailed) {
        let name = stream.name("(bail out)");
        report.push(
            ImportedTest {
                name,
                status: Status::Error,
                reason: Some(format!("Bail out! {reason}").trim().to_string()),
                duration_ms: None,
                output: std::mem::take(&mut stream.pending),
                stderr: String::new(),
            },
            &mut seen,
            None,
        );
        finish_failures(&mut report, stream.first);
        return report;
    }
    finish_stream(&mut report, &mut seen, &mut stream);
    report
}

/// Close a stream: a skipped plan, a plan mismatch, tests out of sequence; then give every
/// failed test of it the first line of its diagnostics as its reason.
fn finish_stream(report: &mut ImportReport, seen: &mut HashSet<String>, stream: &mut Stream) {
    let starts = stream.first;
    if stream.file.is_none() && stream.plan.is_none() && stream.count == 0 {
        return; // nothing was read (e.g. the preamble before prove's first file)
    }
    let problem = |why: String| ImportedTest {
        name: stream.name("(plan)"),
        status: Status::Failed,
        reason: Some(why),
        duration_ms: None,
        output: String::new(),
        stderr: String::new(),
    };
    match (stream.plan, &stream.plan_skip) {
        (Some(0), Some(why)) if stream.count == 0 => {
            let name = stream.file.clone().unwrap_or_else(|| "(all)".into());
            let r = if why.is_empty() {
                "skipped".to_string()
            } else {
                format!("skipped: {why}")
            };
            report.push(
                ImportedTest {
                    name,
                    status: Status::Skipped,
                    reason: Some(r),
                    duration_ms: None,
                    output: String::new(),
                    stderr: String::new(),
                },
                seen,
                None,
            );
        }
        (Some(p), _) if p != stream.count => {
            let t = problem(format!("planned {p} test(s) but {} ran", stream.count));
            report.push(t, seen, None);
        }
        (None, _) => {
            let t = problem(format!(
                "{} test(s) ran but no plan (`1..N`) was printed: the suite may have stopped early",
                stream.count
            ));
            report.push(t, seen, None);
        }
        _ => {}
    }
    if !stream.out_of_sequence.is_empty() {
        let t = problem(format!(
            "tests out of sequence: {}",
            stream.out_of_sequence.join("; ")
        ));
        report.push(t, seen, None);
    }
    stream.flush_between(&mut report.tests);
    finish_failures(report, starts);
}

/// `not ok 2 - x: Failed test 'x' at t/fail.t line 4.` — the point plus its first
/// diagnostics (before or after it, not repeating the test's own name).
fn finish_failures(report: &mut ImportReport, from: usize) {
    for t in &mut report.tests[from..] {
        if t.status != Status::Failed {
            continue;
        }
        let diag = t
            .output
            .lines()
            .filter(|l| test_point(l).is_none())
            .map(|l| l.trim_start_matches('#').trim())
            .filter(|l| !l.is_empty() && *l != "---" && *l != "..." && !t.name.contains(*l))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        if !diag.is_empty()
            && let Some(r) = &mut t.reason
        {
            let _ = write!(r, ": {}", short(&diag, 200));
        }
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------- JUnit

/// Parse a JUnit XML report (a `<testsuites>` document, or a lone `<testsuite>` as many tools
/// write) with quick-junit.
pub fn parse_junit(xml: &str) -> Result<ImportReport, String> {
    use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
    let report = match Report::deserialize_from_str(xml) {
        Ok(r) => r,
        Err(first) => {
            // A lone <testsuite> root: wrap it.
            let body = match xml.trim_start().strip_prefix("<?xml") {
                Some(rest) => rest.split_once("?>").map_or(rest, |(_, b)| b),
                None => xml,
            };
            if !body.trim_start().starts_with("<testsuite")
                || body.trim_start().starts_with("<testsuites")
            {
                return Err(format!("not a JUnit XML report: {first}"));
            }
            Report::deserialize_from_str(&format!("<testsuites>{body}</testsuites>"))
                .map_err(|e| format!("not a JUnit XML report: {e}"))?
        }
    };
    let mut out = ImportReport::default();
    let mut seen = HashSet::new();
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            let name = match &case.classname {
                Some(c) if !c.is_empty() => format!("{}.{}", c.as_str(), case.name.as_str()),
                _ => case.name.to_string(),
            };
            let mut output = String::new();
            let text = |m: &Option<quick_junit::XmlString>,
                        d: &Option<quick_junit::XmlString>|
             -> (String, String) {
                let message = m.as_ref().map(|s| s.to_string()).unwrap_or_default();
                let detail = d.as_ref().map(|s| s.to_string()).unwrap_or_default();
                (message, detail)
            };
            let (status, reason) = match &case.status {
                TestCaseStatus::Success { flaky_runs } if flaky_runs.is_empty() => {
                    (Status::Passed, None)
                }
                TestCaseStatus::Success { flaky_runs } => (
                    Status::Flaky,
                    Some(format!("passed after {} failed run(s)", flaky_runs.len())),
                ),
                TestCaseStatus::NonSuccess {
                    kind,
                    message,
                    description,
                    ty,
                    ..
                } => {
                    let (m, d) = text(message, description);
                    output.push_str(&d);
                    let first = if m.is_empty() {
                        d.lines().next().unwrap_or_default().to_string()
                    } else {
                        m
                    };
                    let first = first.lines().next().unwrap_or_default().to_string();
                    let ty = ty
                        .as_ref()
                        .map(|t| format!("{}: ", t.as_str()))
                        .unwrap_or_default();
                    let what = match kind {
                        NonSuccessKind::Failure => "failure",
                        NonSuccessKind::Error => "error",
                    };
                    (
                        Status::Failed,
                        Some(short(&format!("{what}: {ty}{first}"), 300)),
                    )
                }
                TestCaseStatus::Skipped {
                    message,
                    description,
                    ..
                } => {
                    let (m, d) = text(message, description);
                    output.push_str(&d);
                    (
                        Status::Skipped,
                        Some(if m.is_empty() {
                            "skipped".into()
                        } else {
                            format!("skipped: {m}")
                        }),
                    )
                }
            };
            if let Some(so) = &case.system_out {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(so.as_str());
            }
            out.push(
                ImportedTest {
                    name,
                    status,
                    reason,
                    duration_ms: case.time.map(|d| d.as_millis() as u64),
                    output,
                    stderr: case
                        .system_err
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                },
                &mut seen,
                None,
            );
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- running

/// One imported test as the engine records it: `<import-case-id>/<name>`.
#[derive(Debug, Clone)]
pub struct ImportedCase {
    pub id: String,
    pub duration_ms: u64,
    pub outcome: CaseOutcome,
}

/// Run the external suite and judge it. The returned outcome is the import case's own record
/// (the marker that the import finished, with the producer's full output as its log); its
/// `children` are the imported tests, recorded before it.
pub async fn run(
    target: &dyn Target,
    imp: &ImportAction,
    case: &Case,
    vars: Vec<(String, String)>,
    (workdir, scrub): (&str, &[String]),
    grace: std::time::Duration,
    cancel: &CancellationToken,
) -> CaseOutcome {
    let mut log = String::new();
    let cwd = imp.cwd.clone().unwrap_or_else(|| workdir.to_string());
    let file = imp.file.as_ref().map(|f| {
        if f.starts_with('/') {
            f.clone()
        } else {
            format!("{}/{f}", cwd.trim_end_matches('/'))
        }
    });
    if let Some(f) = &file {
        // A report left by an earlier run must not pass for this one's.
        let rm = ExecRequest::new(
            format!("rm -f {}", adaptest_adapters::target::shell_quote(f)),
            case.timeout,
        );
        if let Err(e) = target.exec(rm, cancel).await {
            return CaseOutcome::error(crate::engine::error_chain(&e));
        }
    }
    let mut req = ExecRequest::new(imp.command.clone(), case.timeout);
    req.env_remove = scrub.to_vec();
    req.cwd = Some(cwd);
    req.env = vars;
    req.env
        .extend(imp.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    req.capture_limit = CAPTURE_LIMIT;
    req.grace = grace;
    let o = match target.exec(req, cancel).await {
        Err(e) => return CaseOutcome::error(crate::engine::error_chain(&e)),
        Ok(o) if o.cancelled => return CaseOutcome::cancelled(),
        Ok(o) => o,
    };
    super::command_log::append(&mut log, &imp.command, &o, usize::MAX);
    let parsed = match (imp.format, &file) {
        (ImportFormat::Tap, _) => {
            let mut r = parse_tap(&String::from_utf8_lossy(&o.stdout));
            if o.stdout_dropped > 0 {
                r.tests.push(ImportedTest {
                    name: "(output)".into(),
                    status: Status::Failed,
                    reason: Some(format!("the TAP stream exceeded {CAPTURE_LIMIT} bytes and was cut; tests after the cut are missing")),
                    duration_ms: None,
                    output: String::new(),
                    stderr: String::new(),
                });
            }
            Ok(r)
        }
        (ImportFormat::Junit, Some(f)) => match target.get_file(f, cancel).await {
            Ok(bytes) => {
                let _ = writeln!(log, "--- {f} ({} bytes) ---", bytes.len());
                parse_junit(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{f}: {e}"))
            }
            Err(e) => Err(format!(
                "the suite wrote no readable JUnit file at {f} (it {}): {}",
                adaptest_adapters::exit_status::describe(o.exit_code, o.signal),
                crate::engine::error_chain(&e)
            )),
        },
        (ImportFormat::Junit, None) => Err("a JUnit import needs `file`".into()),
    };
    let mut outcome = match parsed {
        Err(why) => CaseOutcome::failed(why),
        Ok(r) if r.tests.is_empty() => CaseOutcome::failed(format!(
            "the suite reported no tests (it {}){}",
            adaptest_adapters::exit_status::describe(o.exit_code, o.signal),
            if o.timed_out { ", and timed out" } else { "" }
        )),
        Ok(r) => judge(
            &case.id,
            r,
            o.timed_out.then(|| format_duration(case.timeout)),
        ),
    };
    outcome.exit_code = o.exit_code;
    outcome.leaked = o.leaked;
    outcome.stdout = crate::engine::excerpt(&o.stdout, crate::engine::EXCERPT_BYTES);
    outcome.stderr = crate::engine::excerpt(&o.stderr, crate::engine::EXCERPT_BYTES);
    outcome.log = log;
    outcome
}

/// The import case's outcome from its tests: error when the suite bailed out, failed when a
/// test failed or the suite timed out, passed otherwise; the tests become its children.
fn judge(id: &str, report: ImportReport, timed_out: Option<String>) -> CaseOutcome {
    let (mut passed, mut failed, mut error, mut skipped) = (0, 0, 0, 0);
    let mut children = Vec::with_capacity(report.tests.len());
    for t in report.tests {
        match t.status {
            Status::Passed | Status::Flaky => passed += 1,
            Status::Failed => failed += 1,
            Status::Error => error += 1,
            Status::Skipped | Status::NotRun => skipped += 1,
        }
        let mut o = CaseOutcome {
            status: t.status,
            reason: t.reason,
            stdout: crate::engine::excerpt(t.output.as_bytes(), crate::engine::EXCERPT_BYTES),
            stderr: crate::engine::excerpt(t.stderr.as_bytes(), crate::engine::EXCERPT_BYTES),
            ..CaseOutcome::passed()
        };
        o.log = if t.stderr.is_empty() {
            t.output
        } else {
            format!("{}\n--- stderr ---\n{}", t.output, t.stderr)
        };
        children.push(ImportedCase {
            id: format!("{id}/{}", t.name),
            duration_ms: t.duration_ms.unwrap_or(0),
            outcome: o,
        });
    }
    let mut summary = format!(
        "{} test(s) imported: {passed} passed, {failed} failed, {skipped} skipped",
        children.len()
    );
    if error > 0 {
        let _ = write!(summary, ", {error} error");
    }
    if report.subtests > 0 {
        let _ = write!(
            summary,
            " ({} subtest point(s) counted into their parents)",
            report.subtests
        );
    }
    let mut o = if error > 0 {
        CaseOutcome::error(summary)
    } else if let Some(after) = timed_out {
        CaseOutcome::failed(format!(
            "timed out after {after}; the process tree was killed; {summary}"
        ))
    } else if failed > 0 {
        CaseOutcome::failed(summary)
    } else {
        let mut p = CaseOutcome::passed();
        p.reason = Some(summary);
        p
    };
    o.children = children;
    o
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
