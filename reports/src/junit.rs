//! JUnit XML (`junit.xml`) for CI systems: one `<testsuite>` per combination, one `<testcase>`
//! per case, the target's environment as suite properties and metrics as case properties.
//!
//! Each suite carries its combination's `verdict` as a property; a failed case that matched a
//! waiver carries `waiver` (`active: reason` or `expired: reason`).
//!
//! Status mapping: `passed` → success; `flaky` → success with one `<flakyFailure>` per failed
//! attempt; `failed` → `<failure>`; `error` → `<error>`; `skipped` and `not_run` → `<skipped>`
//! (told apart by its `type`).
//!
//! Like nextest's defaults, output excerpts (`<system-out>`/`<system-err>`) and the log path are
//! kept only for cases that did not simply pass; they are bounded per case ([`CASE_OUTPUT_CAP`])
//! and per report ([`REPORT_OUTPUT_BUDGET`], in plan order), so the XML of a huge run stays small
//! enough for CI tools to load. The full output of every case stays in `results.json` and the
//! logs.

use crate::error::RenderError;
use crate::schema::{
    CaseResult, CombinationResult, Environment, Level, RunResults, Status, WaiverRecord,
    WaiverStatus,
};
use crate::text;
use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};
use std::borrow::Cow;
use std::time::Duration;

/// Bytes of stdout + stderr kept per case (split between the two, see the module docs).
pub const CASE_OUTPUT_CAP: usize = 64 * 1024;

/// Bytes of output kept over the whole report; once spent, a case gets a note instead.
pub const REPORT_OUTPUT_BUDGET: usize = 64 * 1024 * 1024;

/// Name of the `<testsuites>` element.
pub const REPORT_NAME: &str = "adaptest";

/// Render `results` as a JUnit XML document.
///
/// The report is named [`REPORT_NAME`]; every `<testsuite>` carries a `run_id` property (and the
/// report's `timestamp`/`time` come from the run), so a CI system can tell runs apart.
pub fn to_junit(results: &RunResults) -> Result<String, RenderError> {
    let mut budget = OutputBudget::new();

    let mut report = Report::new(REPORT_NAME);
    if let Ok(started) = chrono::DateTime::parse_from_rfc3339(&results.run.started_at) {
        report.set_timestamp(started);
    }
    report.set_time(Duration::from_millis(results.run.duration_ms));

    for combination in &results.combinations {
        let env = results.environments.get(&combination.target);
        let mut suite = TestSuite::new(combination.id.as_str());
        suite.set_time(Duration::from_millis(combination.duration_ms));
        suite.add_properties(suite_properties(results, combination, env));
        let waivers = &results.certification.waivers;
        suite.add_test_cases(
            combination
                .cases
                .iter()
                .map(|case| test_case(combination, case, waivers, &mut budget)),
        );
        report.add_test_suite(suite);
    }

    report.to_string().map_err(RenderError::Junit)
}

fn suite_properties(
    results: &RunResults,
    combination: &CombinationResult,
    env: Option<&Environment>,
) -> Vec<Property> {
    let mut props = vec![
        Property::new("run_id", &results.run.id),
        Property::new("target", &combination.target),
    ];
    if let Some(env) = env {
        props.extend([
            Property::new("target_kind", &env.target_kind),
            Property::new("arch", &env.arch),
            Property::new("cpu_model", &env.cpu_model),
            Property::new("os", &env.os_name),
            Property::new("os_id", &env.os_id),
            Property::new("os_version", &env.os_version),
            Property::new("kernel", &env.kernel),
            Property::new("libc", &env.libc),
        ]);
    }
    props.push(Property::new("component", &combination.component));
    props.push(Property::new("component_kind", &combination.component_kind));
    if let Some(version) = env.and_then(|env| env.components.get(&combination.component)) {
        props.push(Property::new("component_version", version));
    }
    props.push(Property::new("suite", &combination.suite));
    props.push(Property::new("suite_version", &combination.suite_version));
    props.push(Property::new("verdict", combination.verdict.as_str()));
    props
}

fn test_case(
    combination: &CombinationResult,
    case: &CaseResult,
    waivers: &[WaiverRecord],
    budget: &mut OutputBudget,
) -> TestCase {
    let reason = case.reason.as_deref().filter(|r| !r.is_empty());
    let status = match case.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Flaky => {
            let mut status = TestCaseStatus::success();
            let failed_attempts = case.attempts.saturating_sub(1).max(1);
            status.add_reruns((1..=failed_attempts).map(|attempt| {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun.set_message(match reason {
                    Some(reason) => format!("attempt {attempt} failed: {reason}"),
                    None => format!("attempt {attempt} failed"),
                });
                rerun
            }));
            status
        }
        Status::Failed | Status::Error => {
            let kind = if case.status == Status::Failed {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut status = TestCaseStatus::non_success(kind);
            status.set_message(reason.unwrap_or(case.status.as_str()));
            status.set_type(case.status.as_str());
            status
        }
        Status::Skipped | Status::NotRun => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(reason.unwrap_or(match case.status {
                Status::Skipped => "not applicable",
                _ => "not run",
            }));
            status.set_type(case.status.as_str());
            status
        }
    };

    let mut test_case = TestCase::new(case.id.as_str(), status);
    test_case.set_classname(combination.suite.as_str());
    test_case.set_time(Duration::from_millis(case.duration_ms));
    test_case.add_properties(case_properties(case));
    if let Some(w) = crate::verdict::waiver_of(case, waivers) {
        // `active: reason` (the failure is waived) or `expired: reason` (it is not).
        let state = match w.status {
            WaiverStatus::Active => "active",
            WaiverStatus::Expired => "expired",
        };
        test_case.add_property(Property::new("waiver", format!("{state}: {}", w.reason)));
    }

    if case.status != Status::Passed {
        if let Some((stdout, stderr)) = budget.take(case) {
            if !stdout.is_empty() {
                test_case.set_system_out(stdout);
            }
            if !stderr.is_empty() {
                test_case.set_system_err(stderr);
            }
        } else {
            test_case.set_system_out(match &case.log {
                Some(log) => {
                    format!("[output left out: the report's output budget is spent; see {log}]")
                }
                None => "[output left out: the report's output budget is spent]".to_owned(),
            });
        }
    }
    test_case
}

fn case_properties(case: &CaseResult) -> Vec<Property> {
    let mut props = vec![Property::new(
        "level",
        match case.level {
            Level::Mandatory => "mandatory",
            Level::Optional => "optional",
        },
    )];
    if case.attempts > 1 {
        props.push(Property::new("attempts", case.attempts.to_string()));
    }
    if let Some(code) = case.exit_code.filter(|_| !case.status.is_pass()) {
        props.push(Property::new("exit_code", code.to_string()));
    }
    if let Some(log) = case.log.as_ref().filter(|_| case.status != Status::Passed) {
        props.push(Property::new("log", log));
    }
    for metric in &case.metrics {
        props.push(Property::new(
            format!("metric.{}", metric.name),
            text::metric_value(metric.value, &metric.unit),
        ));
        if let Some(threshold) = &metric.threshold {
            props.push(Property::new(
                format!("metric.{}.threshold", metric.name),
                threshold,
            ));
        }
    }
    props
}

/// The report-wide output budget, spent in plan order.
struct OutputBudget {
    left: usize,
}

impl OutputBudget {
    fn new() -> Self {
        OutputBudget {
            left: REPORT_OUTPUT_BUDGET,
        }
    }

    /// The bounded (stdout, stderr) of `case`, or `None` when the budget cannot afford them.
    fn take<'c>(&mut self, case: &'c CaseResult) -> Option<(Cow<'c, str>, Cow<'c, str>)> {
        let (out_limit, err_limit) =
            text::split_allowance(case.stdout.len(), case.stderr.len(), CASE_OUTPUT_CAP);
        let needed = out_limit + err_limit;
        if needed > self.left {
            return None;
        }
        self.left -= needed;
        Some((
            text::bounded(&case.stdout, out_limit),
            text::bounded(&case.stderr, err_limit),
        ))
    }
}
