//! The TAP parser: test points, directives, plans, `Bail out!`, prove headers, subtests.

use super::*;

/// A TAP stream being read: one for plain TAP, one per file in `prove -v` output.
#[derive(Default)]
pub(super) struct Stream {
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
pub(super) fn split_directive(rest: &str) -> (String, Option<String>) {
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
pub(super) fn directive(d: &str) -> Option<(&'static str, String)> {
    let lower = d.to_ascii_lowercase();
    for (word, kind) in [("skip", "skip"), ("todo", "todo")] {
        if lower.starts_with(word) {
            let rest = d[word.len()..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
            return Some((kind, rest.trim_start_matches([':', ' ']).trim().to_string()));
        }
    }
    None
}

pub(super) fn is_prove_header(line: &str) -> Option<&str> {
    // `t/basic.t .. ` (the dots pad file names to one width); never a TAP line.
    let trimmed = line.trim_end();
    let name = trimmed.strip_suffix("..")?.trim_end_matches('.');
    let name = name.strip_suffix(' ')?;
    (!name.is_empty() && !name.starts_with(' ') && !name.contains(' ')).then_some(name)
}

/// A test point: (ok, number, rest of the line).
pub(super) fn test_point(line: &str) -> Option<(bool, Option<u64>, &str)> {
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
pub(super) fn plan_line(line: &str) -> Option<(u64, Option<String>)> {
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
pub(super) fn finish_stream(
    report: &mut ImportReport,
    seen: &mut HashSet<String>,
    stream: &mut Stream,
) {
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
pub(super) fn finish_failures(report: &mut ImportReport, from: usize) {
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
