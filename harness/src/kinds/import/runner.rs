//! Running the external suite on the target and judging what it reported.

use super::*;

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
            return CaseOutcome::error(adaptest_adapters::text::error_chain(&e));
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
        Err(e) => return CaseOutcome::error(adaptest_adapters::text::error_chain(&e)),
        Ok(o) if o.cancelled => return CaseOutcome::cancelled(),
        Ok(o) => o,
    };
    crate::kinds::command_log::append(&mut log, &imp.command, &o, usize::MAX);
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
                adaptest_adapters::text::error_chain(&e)
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
    outcome.stdout = adaptest_adapters::text::excerpt(&o.stdout, crate::kinds::EXCERPT_BYTES);
    outcome.stderr = adaptest_adapters::text::excerpt(&o.stderr, crate::kinds::EXCERPT_BYTES);
    outcome.log = log;
    outcome
}

/// The import case's outcome from its tests: error when the suite bailed out, failed when a
/// test failed or the suite timed out, passed otherwise; the tests become its children.
pub(super) fn judge(id: &str, report: ImportReport, timed_out: Option<String>) -> CaseOutcome {
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
            stdout: adaptest_adapters::text::excerpt(
                t.output.as_bytes(),
                crate::kinds::EXCERPT_BYTES,
            ),
            stderr: adaptest_adapters::text::excerpt(
                t.stderr.as_bytes(),
                crate::kinds::EXCERPT_BYTES,
            ),
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
