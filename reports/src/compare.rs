//! Comparing two runs (A, the baseline, and B): new failures, fixed, still failing, flaky, cases
//! only in one run, and metric changes beyond a threshold; rendered as a terminal table, JSON or
//! self-contained HTML.
//!
//! Cases are matched by (combination id, case id). A failing case is *platform-specific* when,
//! in the same run, the same component × suite × case failed on some platforms (arch + OS) and
//! passed on others, with no platform in both groups; *target-specific* when it failed on some
//! targets and passed on others of the same platform (a machine, not a platform, problem).

use crate::error::RenderError;
use crate::html::Lang;
use crate::labels::{Labels, verdict_class};
use crate::schema::{CaseResult, Level, RunResults, Status, Summary, Verdict};
use crate::text;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../templates/compare.html.tera");
const TEMPLATE_NAME: &str = "compare.html";

/// The result of comparing run A (baseline) with run B.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub a: RunRef,
    pub b: RunRef,
    /// A metric change is listed when it is larger than this, in percent of A's value.
    pub metric_threshold_pct: f64,
    /// Failed or errored in B, not in A (passed, flaky, skipped or not run there, or absent).
    pub new_failures: Vec<CaseChange>,
    /// Failed or errored in A, passed (or flaky) in B.
    pub fixed: Vec<CaseChange>,
    /// Failed or errored in both.
    pub still_failing: Vec<CaseChange>,
    /// Passed only on a retry in A or in B.
    pub flaky: Vec<CaseChange>,
    /// Cases present in only one of the runs.
    pub only_in_a: Vec<CaseChange>,
    pub only_in_b: Vec<CaseChange>,
    pub metric_changes: Vec<MetricChange>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRef {
    pub run_id: String,
    pub product: String,
    pub version: String,
    pub started_at: String,
    pub verdict: Verdict,
    pub summary: Summary,
}

/// A case in the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseChange {
    pub combination: String,
    pub case: String,
    pub target: String,
    pub component: String,
    pub suite: String,
    pub level: Level,
    /// Status in A, absent when the case is not in A.
    pub before: Option<Status>,
    /// Status in B, absent when the case is not in B.
    pub after: Option<Status>,
    /// Why it did not pass (from B, or from A when it is fixed or only in A).
    pub reason: Option<String>,
    /// For a failing case that failed only on some platforms or targets of its run.
    pub spread: Option<Spread>,
}

/// Where a case failed and where it passed, within one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub kind: SpreadKind,
    /// Platforms (`aarch64 · openEuler 24.03`) for platform-specific, else target ids.
    pub failing_on: Vec<String>,
    pub passing_on: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpreadKind {
    PlatformSpecific,
    TargetSpecific,
}

/// A metric that moved by more than the threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricChange {
    pub combination: String,
    pub case: String,
    pub name: String,
    pub unit: String,
    pub before: f64,
    pub after: f64,
    /// `(after - before) / |before|` in percent; absent when `before` is 0.
    pub change_pct: Option<f64>,
    pub direction: Direction,
}

/// Whether a metric change is for the better, judged from its threshold (`>= 1000`: higher is
/// better) or, without one, its unit (`…/s`: higher is better; `ms`, `s`: lower is better).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Regression,
    Improvement,
    Changed,
}

impl Comparison {
    /// Did B get worse: a new failure or a metric regression?
    pub fn has_regressions(&self) -> bool {
        !self.new_failures.is_empty()
            || self
                .metric_changes
                .iter()
                .any(|m| m.direction == Direction::Regression)
    }
}

fn failing(s: Status) -> bool {
    matches!(s, Status::Failed | Status::Error)
}

/// Compare run `a` (baseline) with run `b`; metric changes larger than `metric_threshold_pct`
/// percent are listed.
pub fn compare(a: &RunResults, b: &RunResults, metric_threshold_pct: f64) -> Comparison {
    let index_a = index(a);
    let spread_a = Spreads::new(a);
    let spread_b = Spreads::new(b);
    let mut out = Comparison {
        a: RunRef::of(a),
        b: RunRef::of(b),
        metric_threshold_pct,
        new_failures: Vec::new(),
        fixed: Vec::new(),
        still_failing: Vec::new(),
        flaky: Vec::new(),
        only_in_a: Vec::new(),
        only_in_b: Vec::new(),
        metric_changes: Vec::new(),
    };
    let mut seen_in_b: BTreeSet<(&str, &str)> = BTreeSet::new();
    for combination in &b.combinations {
        for case in &combination.cases {
            seen_in_b.insert((&combination.id, &case.id));
            let before = index_a.get(&(combination.id.as_str(), case.id.as_str()));
            let change = |spread: Option<Spread>, reason: Option<&String>| CaseChange {
                combination: combination.id.clone(),
                case: case.id.clone(),
                target: combination.target.clone(),
                component: combination.component.clone(),
                suite: combination.suite.clone(),
                level: case.level,
                before: before.map(|c| c.status),
                after: Some(case.status),
                reason: reason.cloned(),
                spread,
            };
            let Some(old) = before else {
                out.only_in_b.push(change(None, case.reason.as_ref()));
                if failing(case.status) {
                    let spread = spread_b.of(&combination.component, &combination.suite, case);
                    out.new_failures.push(change(spread, case.reason.as_ref()));
                }
                continue;
            };
            match (failing(old.status), failing(case.status)) {
                (false, true) => {
                    let spread = spread_b.of(&combination.component, &combination.suite, case);
                    out.new_failures.push(change(spread, case.reason.as_ref()));
                }
                (true, true) => {
                    let spread = spread_b.of(&combination.component, &combination.suite, case);
                    out.still_failing.push(change(spread, case.reason.as_ref()));
                }
                (true, false) if case.status.is_pass() => {
                    let spread = spread_a.of(&combination.component, &combination.suite, old);
                    out.fixed.push(change(spread, old.reason.as_ref()));
                }
                _ => {}
            }
            if old.status == Status::Flaky || case.status == Status::Flaky {
                out.flaky
                    .push(change(None, case.reason.as_ref().or(old.reason.as_ref())));
            }
            for m in &case.metrics {
                let Some(o) = old.metrics.iter().find(|o| o.name == m.name) else {
                    continue;
                };
                let change_pct = (o.value != 0.0)
                    .then(|| (m.value - o.value) / o.value.abs() * 100.0)
                    .filter(|p| p.is_finite());
                let beyond = match change_pct {
                    Some(p) => p.abs() > metric_threshold_pct,
                    None => m.value != o.value,
                };
                if beyond {
                    out.metric_changes.push(MetricChange {
                        combination: combination.id.clone(),
                        case: case.id.clone(),
                        name: m.name.clone(),
                        unit: m.unit.clone(),
                        before: o.value,
                        after: m.value,
                        change_pct,
                        direction: direction(
                            m.threshold.as_deref().or(o.threshold.as_deref()),
                            &m.unit,
                            m.value - o.value,
                        ),
                    });
                }
            }
        }
    }
    for combination in &a.combinations {
        for case in &combination.cases {
            if !seen_in_b.contains(&(combination.id.as_str(), case.id.as_str())) {
                out.only_in_a.push(CaseChange {
                    combination: combination.id.clone(),
                    case: case.id.clone(),
                    target: combination.target.clone(),
                    component: combination.component.clone(),
                    suite: combination.suite.clone(),
                    level: case.level,
                    before: Some(case.status),
                    after: None,
                    reason: case.reason.clone(),
                    spread: None,
                });
            }
        }
    }
    out
}

fn direction(threshold: Option<&str>, unit: &str, delta: f64) -> Direction {
    let threshold = threshold.unwrap_or("").trim_start();
    let higher_is_better = if threshold.starts_with('>') {
        Some(true)
    } else if threshold.starts_with('<') {
        Some(false)
    } else if unit.ends_with("/s") {
        Some(true)
    } else if matches!(unit, "ns" | "us" | "µs" | "ms" | "s") {
        Some(false)
    } else {
        None
    };
    match higher_is_better {
        Some(h) if (delta > 0.0) == h => Direction::Improvement,
        Some(_) => Direction::Regression,
        None => Direction::Changed,
    }
}

type CaseIndex<'r> = HashMap<(&'r str, &'r str), &'r CaseResult>;

fn index(results: &RunResults) -> CaseIndex<'_> {
    let mut out = HashMap::new();
    for combination in &results.combinations {
        for case in &combination.cases {
            out.insert((combination.id.as_str(), case.id.as_str()), case);
        }
    }
    out
}

impl RunRef {
    fn of(r: &RunResults) -> Self {
        RunRef {
            run_id: r.run.id.clone(),
            product: r.product.name.clone(),
            version: r.product.version.clone(),
            started_at: r.run.started_at.clone(),
            verdict: r.certification.verdict,
            summary: r.summary.clone(),
        }
    }
}

/// A component × suite × case.
type CaseKey<'r> = (&'r str, &'r str, &'r str);

/// Where a case ran: (target, platform, failed).
type Ran<'r> = (&'r str, String, bool);

/// For each component × suite × case of one run: the targets it failed and passed on.
struct Spreads<'r> {
    runs: HashMap<CaseKey<'r>, Vec<Ran<'r>>>,
}

impl<'r> Spreads<'r> {
    fn new(results: &'r RunResults) -> Self {
        let mut runs: HashMap<_, Vec<_>> = HashMap::new();
        for combination in &results.combinations {
            let platform = match results.environments.get(&combination.target) {
                Some(env) => {
                    let os = if env.os_name.is_empty() {
                        format!("{} {}", env.os_id, env.os_version)
                    } else {
                        env.os_name.clone()
                    };
                    format!("{} · {}", env.arch, os.trim())
                }
                None => combination.target.clone(),
            };
            for case in &combination.cases {
                let ran = failing(case.status) || case.status.is_pass();
                if ran {
                    runs.entry((
                        combination.component.as_str(),
                        combination.suite.as_str(),
                        case.id.as_str(),
                    ))
                    .or_default()
                    .push((
                        combination.target.as_str(),
                        platform.clone(),
                        failing(case.status),
                    ));
                }
            }
        }
        Spreads { runs }
    }

    fn of(&self, component: &str, suite: &str, case: &CaseResult) -> Option<Spread> {
        let runs = self.runs.get(&(component, suite, case.id.as_str()))?;
        let (failed, passed): (Vec<_>, Vec<_>) = runs.iter().partition(|(_, _, f)| *f);
        if failed.is_empty() || passed.is_empty() {
            return None;
        }
        let platforms = |v: &[&Ran<'_>]| -> Vec<String> {
            v.iter()
                .map(|(_, p, _)| p.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let targets = |v: &[&Ran<'_>]| -> Vec<String> {
            v.iter()
                .map(|(t, _, _)| t.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let (pf, pp) = (platforms(&failed), platforms(&passed));
        if pf.iter().all(|p| !pp.contains(p)) {
            Some(Spread {
                kind: SpreadKind::PlatformSpecific,
                failing_on: pf,
                passing_on: pp,
            })
        } else {
            Some(Spread {
                kind: SpreadKind::TargetSpecific,
                failing_on: targets(&failed),
                passing_on: targets(&passed),
            })
        }
    }
}

/// The comparison as JSON.
pub fn to_json(comparison: &Comparison) -> Result<String, RenderError> {
    serde_json::to_string_pretty(comparison).map_err(RenderError::SerializeJson)
}

fn status_text(s: Option<Status>) -> &'static str {
    s.map_or("—", Status::as_str)
}

fn spread_text(spread: &Option<Spread>) -> String {
    match spread {
        Some(s) => format!(
            "{}: fails on {}; passes on {}",
            match s.kind {
                SpreadKind::PlatformSpecific => "platform-specific",
                SpreadKind::TargetSpecific => "target-specific",
            },
            s.failing_on.join(", "),
            s.passing_on.join(", ")
        ),
        None => String::new(),
    }
}

fn pct_text(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{p:+.1}%"),
        None => "n/a".to_owned(),
    }
}

/// The comparison as an aligned plain-text table for a terminal.
pub fn to_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A {} ({}, {})  →  B {} ({}, {})",
        c.a.run_id,
        c.a.verdict.as_str(),
        counts_text(&c.a.summary),
        c.b.run_id,
        c.b.verdict.as_str(),
        counts_text(&c.b.summary)
    );
    let sections: [(&str, &Vec<CaseChange>); 6] = [
        ("new failures", &c.new_failures),
        ("fixed", &c.fixed),
        ("still failing", &c.still_failing),
        ("flaky", &c.flaky),
        ("only in A", &c.only_in_a),
        ("only in B", &c.only_in_b),
    ];
    for (title, rows) in sections {
        let _ = writeln!(out, "\n{title} ({})", rows.len());
        let table: Vec<[String; 5]> = rows
            .iter()
            .map(|r| {
                let mut note = r.reason.clone().unwrap_or_default();
                let spread = spread_text(&r.spread);
                if !spread.is_empty() {
                    if !note.is_empty() {
                        note.push_str(" — ");
                    }
                    note.push_str(&spread);
                }
                [
                    r.combination.clone(),
                    r.case.clone(),
                    match r.level {
                        Level::Mandatory => "mandatory".to_owned(),
                        Level::Optional => "optional".to_owned(),
                    },
                    format!("{} → {}", status_text(r.before), status_text(r.after)),
                    note,
                ]
            })
            .collect();
        push_table(&mut out, &table);
    }
    let _ = writeln!(
        out,
        "\nmetric changes beyond {}% ({})",
        text::number(c.metric_threshold_pct),
        c.metric_changes.len()
    );
    let table: Vec<[String; 5]> = c
        .metric_changes
        .iter()
        .map(|m| {
            [
                m.combination.clone(),
                m.case.clone(),
                m.name.clone(),
                format!(
                    "{} → {}",
                    text::metric_value(m.before, &m.unit),
                    text::metric_value(m.after, &m.unit)
                ),
                format!(
                    "{} {}",
                    pct_text(m.change_pct),
                    match m.direction {
                        Direction::Regression => "regression",
                        Direction::Improvement => "improvement",
                        Direction::Changed => "changed",
                    }
                ),
            ]
        })
        .collect();
    push_table(&mut out, &table);
    out
}

fn counts_text(s: &Summary) -> String {
    format!(
        "{} cases: {} passed, {} failed, {} error",
        s.total, s.passed, s.failed, s.error
    )
}

/// Rows indented by two spaces, columns padded to their widest cell (the last one is not).
fn push_table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        out.push_str("  ");
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
}

#[derive(Serialize)]
struct HtmlView<'a> {
    lang: &'static str,
    t: &'static Labels,
    c: &'a Comparison,
    a_verdict: (&'static str, &'static str),
    b_verdict: (&'static str, &'static str),
    sections: Vec<HtmlSection<'a>>,
    metrics: Vec<HtmlMetric<'a>>,
}

#[derive(Serialize)]
struct HtmlSection<'a> {
    id: &'static str,
    title: &'static str,
    rows: Vec<HtmlRow<'a>>,
}

#[derive(Serialize)]
struct HtmlRow<'a> {
    combination: &'a str,
    case: &'a str,
    level: &'static str,
    before: &'static str,
    before_class: &'static str,
    after: &'static str,
    after_class: &'static str,
    reason: &'a str,
    spread: &'static str,
    spread_on: String,
}

#[derive(Serialize)]
struct HtmlMetric<'a> {
    combination: &'a str,
    case: &'a str,
    name: &'a str,
    before: String,
    after: String,
    change: String,
    direction: &'static str,
    direction_label: &'static str,
}

fn html_section<'c>(
    t: &'static Labels,
    id: &'static str,
    title: &'static str,
    changes: &'c [CaseChange],
) -> HtmlSection<'c> {
    let status = |s: Option<Status>| s.map_or("—", |s| t.status(s));
    let class = |s: Option<Status>| s.map_or("", Status::as_str);
    HtmlSection {
        id,
        title,
        rows: changes
            .iter()
            .map(|r| HtmlRow {
                combination: &r.combination,
                case: &r.case,
                level: t.level(r.level),
                before: status(r.before),
                before_class: class(r.before),
                after: status(r.after),
                after_class: class(r.after),
                reason: r.reason.as_deref().unwrap_or(""),
                spread: match r.spread.as_ref().map(|s| s.kind) {
                    Some(SpreadKind::PlatformSpecific) => t.platform_specific,
                    Some(SpreadKind::TargetSpecific) => t.target_specific,
                    None => "",
                },
                spread_on: r
                    .spread
                    .as_ref()
                    .map(|s| s.failing_on.join(", "))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// The comparison as a self-contained HTML page in `lang`.
pub fn to_html(c: &Comparison, lang: Lang) -> Result<String, RenderError> {
    let t = Labels::of(lang);
    let section = |id, title, v| html_section(t, id, title, v);
    let view = HtmlView {
        lang: lang.code(),
        t,
        c,
        a_verdict: (verdict_class(c.a.verdict), t.verdict(c.a.verdict)),
        b_verdict: (verdict_class(c.b.verdict), t.verdict(c.b.verdict)),
        sections: vec![
            section("new", t.new_failures, &c.new_failures),
            section("fixed", t.fixed, &c.fixed),
            section("still", t.still_failing, &c.still_failing),
            section("flaky", t.flaky_cases, &c.flaky),
            section("only-a", t.removed_cases, &c.only_in_a),
            section("only-b", t.added_cases, &c.only_in_b),
        ],
        metrics: c
            .metric_changes
            .iter()
            .map(|m| HtmlMetric {
                combination: &m.combination,
                case: &m.case,
                name: &m.name,
                before: text::metric_value(m.before, &m.unit),
                after: text::metric_value(m.after, &m.unit),
                change: pct_text(m.change_pct),
                direction: match m.direction {
                    Direction::Regression => "regression",
                    Direction::Improvement => "improvement",
                    Direction::Changed => "changed",
                },
                direction_label: match m.direction {
                    Direction::Regression => t.regression,
                    Direction::Improvement => t.improvement,
                    Direction::Changed => t.changed,
                },
            })
            .collect(),
    };
    let mut tera = tera::Tera::new();
    tera.autoescape_on([".html"]);
    tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(RenderError::Template)?;
    let mut context = tera::Context::new();
    context.insert("r", &view);
    tera.render(TEMPLATE_NAME, &context)
        .map_err(RenderError::Html)
}
