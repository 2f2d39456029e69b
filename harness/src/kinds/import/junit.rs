//! The JUnit XML parser (quick-junit): test cases, reruns, failures, errors, skips.

use super::*;

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
