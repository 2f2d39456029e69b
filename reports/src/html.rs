//! The certification report: one self-contained HTML file (inline CSS and a little inline JS,
//! nothing fetched from anywhere), in English or Simplified Chinese, printable to PDF from a
//! browser as a clean A4 document (cover page, numbered sections, page numbers).
//!
//! Sections: cover (product, center, report number, dates, tester/reviewer, verdict, evidence
//! fingerprint), scope, environment, compatibility matrix, summary, test items by suite,
//! failures with output excerpts, waivers, metrics, conclusion.
//!
//! The template is embedded (`templates/report.html.tera`) and rendered with tera's HTML
//! autoescaping on, so every value from the results is escaped. Rendering stays fast and the page
//! responsive for very large runs: passed cases are collapsed per combination; beyond
//! [`INLINE_PASSED_MAX`] passed cases in the whole run they are not HTML rows at all but compact
//! JSON data that the page shows [`PASSED_PAGE_SIZE`] rows at a time; only the first
//! [`MAX_FAILURE_DETAILS`] failures get their output excerpts.
//!
//! (long because the template's view model: the structs `report.html.tera` reads and the code filling them are one contract with the template)

use crate::error::RenderError;
use crate::labels::{self, Labels, verdict_class};
use crate::schema::{
    CaseResult, CombinationResult, Completion, Environment, Level, RunResults, Status, Summary,
    Verdict, WaiverStatus,
};
use crate::text;
use crate::verdict::{is_waived, waiver_of};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The embedded template. Its registered name ends in `.html`, which turns autoescaping on.
const TEMPLATE: &str = include_str!("../templates/report.html.tera");
const TEMPLATE_NAME: &str = "report.html";

/// Failed and errored cases whose output excerpts are shown in the "Failures" section; the rest
/// are still listed (with their reason) in the per-combination tables.
pub const MAX_FAILURE_DETAILS: usize = 1_000;

/// Bytes kept of each stdout/stderr excerpt shown in the "Failures" section.
pub const HTML_EXCERPT_CAP: usize = 16 * 1024;

/// Up to this many passed cases in a run, they are HTML rows (collapsed, printable without
/// JavaScript); beyond it they are paged JSON data, so the page stays light.
pub const INLINE_PASSED_MAX: usize = 5_000;

/// Passed cases per page when they are paged.
pub const PASSED_PAGE_SIZE: usize = 500;

/// Targets side by side in one environment table.
const ENV_COLUMNS: usize = 4;

/// Language of the HTML report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English (`en`).
    #[default]
    En,
    /// Simplified Chinese (`zh-CN`).
    ZhCn,
}

impl Lang {
    /// The BCP 47 tag: `en` or `zh-CN`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The other language (the cover shows the verdict in both).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::ZhCn,
            Lang::ZhCn => Lang::En,
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Lang {
    type Err = RenderError;

    /// `en` or `zh-CN`, ignoring case (`zh`, `zh_CN` and `en-US` are accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "en" | "en-us" | "en-gb" => Ok(Lang::En),
            "zh" | "zh-cn" | "zh-hans" | "zh-hans-cn" => Ok(Lang::ZhCn),
            _ => Err(RenderError::UnknownLanguage {
                given: s.to_owned(),
            }),
        }
    }
}

/// Render `results` as a self-contained HTML report in `lang`. The evidence fingerprint is the
/// SHA-256 of `to_json(results)`, i.e. of the `results.json` these results are stored as; when
/// the stored bytes are at hand, [`render_html`] with their fingerprint avoids serializing again.
pub fn to_html(results: &RunResults, lang: Lang) -> Result<String, RenderError> {
    let json = crate::to_json(results)?;
    let fingerprint = crate::fingerprint::fingerprint(json.as_bytes());
    drop(json);
    render_html(results, lang, &fingerprint)
}

/// Render `results` as a self-contained HTML report in `lang`, showing `fingerprint` (see
/// [`crate::fingerprint`]) as the evidence fingerprint.
pub fn render_html(
    results: &RunResults,
    lang: Lang,
    fingerprint: &str,
) -> Result<String, RenderError> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on([".html"]);
    tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(RenderError::Template)?;

    let view = View::new(results, lang, fingerprint);
    let mut context = tera::Context::new();
    context.insert("r", &view);

    // A passed row is ~100 bytes; reserving avoids repeated copies of a large report.
    let cases: usize = results.combinations.iter().map(|c| c.cases.len()).sum();
    let mut out = Vec::with_capacity(64 * 1024 + cases * 128);
    tera.render_to(TEMPLATE_NAME, &context, &mut out)
        .map_err(RenderError::Html)?;
    // The template is UTF-8 and every inserted value is a Rust string.
    Ok(String::from_utf8(out).expect("tera renders UTF-8"))
}

/// Everything the template shows, already formatted and in the chosen language.
#[derive(Serialize)]
struct View<'a> {
    lang: &'static str,
    t: &'static Labels,
    product: &'a crate::schema::Product,
    harness: &'a crate::schema::HarnessInfo,
    run_id: &'a str,
    test_period: String,
    started_at: String,
    finished_at: String,
    report_date: &'a str,
    duration: String,
    plan: &'a str,
    completion: &'static str,
    complete: bool,
    summary: &'a Summary,
    mandatory_not_run: u64,
    basis: &'a crate::schema::VerdictBasis,
    verdict: VerdictView,
    /// The verdict in the other language, under the main one on the cover.
    verdict_other: &'static str,
    conclusion: String,
    notes: Vec<String>,
    fingerprint: &'a str,
    scope: ScopeView<'a>,
    env_tables: Vec<Vec<EnvView<'a>>>,
    matrix: MatrixView<'a>,
    combinations: Vec<IndexRow<'a>>,
    suites: Vec<SuiteGroup<'a>>,
    /// Passed cases are paged JSON data rather than HTML rows.
    passed_paged: bool,
    page_size: usize,
    failures: Vec<FailureView<'a>>,
    failures_total: usize,
    waivers: Vec<WaiverView<'a>>,
    metrics: Vec<MetricView<'a>>,
    /// Inline SVG charts of the `resources` items (one per component profiled).
    resource_charts: Vec<ResourceChart>,
    pairs: Vec<PairView<'a>>,
}

#[derive(Serialize)]
struct ResourceChart {
    combination: String,
    svg: String,
}

#[derive(Serialize, Clone, Copy)]
struct VerdictView {
    /// `certified`, `notes` or `not` (the CSS class).
    class: &'static str,
    label: &'static str,
}

impl VerdictView {
    fn new(verdict: Verdict, t: &'static Labels) -> Self {
        VerdictView {
            class: verdict_class(verdict),
            label: t.verdict(verdict),
        }
    }
}

#[derive(Serialize)]
struct ScopeView<'a> {
    targets: Vec<ScopeTarget<'a>>,
    components: Vec<ScopeComponent<'a>>,
    suites: Vec<ScopeSuite<'a>>,
    combinations: usize,
    cases: u64,
}

#[derive(Serialize)]
struct ScopeTarget<'a> {
    id: &'a str,
    kind: &'a str,
    arch: &'a str,
    os: String,
}

#[derive(Serialize)]
struct ScopeComponent<'a> {
    id: &'a str,
    kind: &'a str,
    /// Distinct versions over the targets, joined.
    versions: String,
}

#[derive(Serialize)]
struct ScopeSuite<'a> {
    id: &'a str,
    title: &'a str,
    version: &'a str,
    cases: usize,
}

#[derive(Serialize, Default)]
struct EnvView<'a> {
    target: &'a str,
    target_kind: &'a str,
    hostname: &'a str,
    arch: &'a str,
    cpu: String,
    cores: u32,
    memory_gib: String,
    page_size: u64,
    os: String,
    kernel: &'a str,
    libc: &'a str,
    components: Vec<(&'a str, &'a str)>,
    /// Hardware identity rows (empty strings when the target reported none).
    hw: bool,
    dmi: String,
    cpu_id: String,
    numa: String,
    pci: Vec<String>,
    disks: Vec<String>,
    nics: Vec<String>,
    missing: Vec<String>,
    /// The platform classes this target's certification covers, one line per built-in rule
    /// (empty when the target is not certified).
    covers: Vec<String>,
}

#[derive(Serialize)]
struct MatrixView<'a> {
    components: Vec<&'a str>,
    rows: Vec<MatrixRow<'a>>,
}

#[derive(Serialize)]
struct MatrixRow<'a> {
    target: &'a str,
    arch: &'a str,
    os: String,
    cells: Vec<Option<MatrixCell<'a>>>,
}

#[derive(Serialize)]
struct MatrixCell<'a> {
    verdict: VerdictView,
    passed: u64,
    applicable: u64,
    version: &'a str,
    /// Anchor of the pair's first combination.
    anchor: String,
}

#[derive(Serialize)]
struct IndexRow<'a> {
    anchor: String,
    id: &'a str,
    counts: Summary,
    verdict: VerdictView,
}

#[derive(Serialize)]
struct SuiteGroup<'a> {
    id: &'a str,
    title: &'a str,
    version: &'a str,
    combinations: Vec<CombinationView<'a>>,
}

#[derive(Serialize)]
struct CombinationView<'a> {
    anchor: String,
    id: &'a str,
    target: &'a str,
    component: &'a str,
    component_version: &'a str,
    duration: String,
    counts: Summary,
    verdict: VerdictView,
    /// Every case that did not simply pass, in plan order.
    others: Vec<CaseRow<'a>>,
    /// Passed cases as terse rows (collapsed), when not paged.
    passed: Vec<PassedRow<'a>>,
    passed_count: usize,
    /// Passed cases as JSON `[[id, title, level, duration], …]`, escaped for a `<script>`
    /// element, when paged.
    passed_data: String,
    passed_pages: usize,
}

#[derive(Serialize)]
struct CaseRow<'a> {
    id: &'a str,
    title: &'a str,
    level: &'static str,
    status: &'static str,
    status_label: &'static str,
    duration: String,
    attempts: u32,
    reason: &'a str,
    /// The processes the case left running (killed by the harness), `pid 12 (sleep), …`.
    leaked: String,
    /// `waived` (an active waiver covers it) or `expired` (only an expired one matched).
    waiver: &'static str,
    waiver_number: usize,
    /// Index of the case in the "Failures" section, when it has an entry there.
    detail: Option<usize>,
    /// An `sql` case's record counts (empty for other kinds).
    records: String,
}

#[derive(Serialize)]
struct PassedRow<'a> {
    id: &'a str,
    title: &'a str,
    level: &'static str,
    duration: String,
    records: String,
}

#[derive(Serialize)]
struct FailureView<'a> {
    combination: &'a str,
    id: &'a str,
    title: &'a str,
    level: &'static str,
    status: &'static str,
    status_label: &'static str,
    reason: &'a str,
    exit_code: String,
    attempts: u32,
    log: &'a str,
    waiver: &'static str,
    waiver_number: usize,
    waiver_reason: &'a str,
    waiver_expires: &'a str,
    stdout: Cow<'a, str>,
    stderr: Cow<'a, str>,
    records: String,
}

#[derive(Serialize)]
struct WaiverView<'a> {
    number: usize,
    case: &'a str,
    target: &'a str,
    component: &'a str,
    reason: &'a str,
    owner: &'a str,
    expires: &'a str,
    expired: bool,
    status: &'static str,
    matched: u64,
}

#[derive(Serialize)]
struct MetricView<'a> {
    combination: &'a str,
    case: &'a str,
    name: &'a str,
    value: String,
    unit: &'a str,
    threshold: &'a str,
}

#[derive(Serialize)]
struct PairView<'a> {
    target: &'a str,
    component: &'a str,
    verdict: VerdictView,
}

impl<'a> View<'a> {
    fn new(results: &'a RunResults, lang: Lang, fingerprint: &'a str) -> Self {
        let t = Labels::of(lang);
        let certification = &results.certification;
        let waivers = &certification.waivers;
        let passed_total = results.summary.passed as usize;
        let passed_paged = passed_total > INLINE_PASSED_MAX;
        let mut failures = Vec::new();
        let mut failures_total = 0;
        let mut metrics = Vec::new();
        let mut resource_charts = Vec::new();
        let mut mandatory_not_run = 0;

        let mut suites: Vec<SuiteGroup<'a>> = Vec::new();
        let mut index = Vec::with_capacity(results.combinations.len());
        for (n, combination) in results.combinations.iter().enumerate() {
            let anchor = format!("c{n}");
            let env = results.environments.get(&combination.target);
            let mut others = Vec::new();
            let mut passed = Vec::new();
            let mut passed_data = String::new();
            let mut passed_count = 0;
            for case in &combination.cases {
                let title = pick(lang, &case.title, &case.title_zh);
                let level = t.level(case.level);
                if case.level == Level::Mandatory && case.status == Status::NotRun {
                    mandatory_not_run += 1;
                }
                if case.id == "resources"
                    && combination.id.ends_with("/lifecycle")
                    && let Some(svg) = resource_svg(&case.metrics, t)
                {
                    resource_charts.push(ResourceChart {
                        combination: combination.id.clone(),
                        svg,
                    });
                }
                metrics.extend(case.metrics.iter().map(|m| MetricView {
                    combination: &combination.id,
                    case: &case.id,
                    name: &m.name,
                    value: text::number(m.value),
                    unit: &m.unit,
                    threshold: m.threshold.as_deref().unwrap_or(""),
                }));
                // A passed case that leaked processes is listed with the others, so the leak shows.
                if case.status == Status::Passed && case.leaked.is_empty() {
                    passed_count += 1;
                    if passed_paged {
                        let records = records_text(case, t);
                        let titled;
                        let title = if records.is_empty() {
                            title
                        } else {
                            titled = format!("{title} — {}: {records}", t.sql_records);
                            titled.as_str()
                        };
                        push_passed_json(
                            &mut passed_data,
                            &case.id,
                            title,
                            level,
                            case.duration_ms,
                        );
                    } else {
                        passed.push(PassedRow {
                            id: &case.id,
                            title,
                            level,
                            duration: text::duration(case.duration_ms),
                            records: records_text(case, t),
                        });
                    }
                    continue;
                }
                let (waiver, waiver_number) = waiver_mark(case, waivers);
                let mut detail = None;
                if matches!(case.status, Status::Failed | Status::Error) {
                    failures_total += 1;
                    if failures.len() < MAX_FAILURE_DETAILS {
                        detail = Some(failures.len());
                        failures.push(FailureView::new(combination, case, title, t, results));
                    }
                }
                others.push(CaseRow {
                    id: &case.id,
                    title,
                    level,
                    status: case.status.as_str(),
                    status_label: t.status(case.status),
                    duration: text::duration(case.duration_ms),
                    attempts: case.attempts,
                    reason: case.reason.as_deref().unwrap_or(""),
                    leaked: case
                        .leaked
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    waiver,
                    waiver_number,
                    detail,
                    records: records_text(case, t),
                });
            }
            if passed_paged {
                passed_data = close_passed_json(passed_data);
            }
            let counts = Summary::of(&combination.cases);
            let verdict = VerdictView::new(combination.verdict, t);
            index.push(IndexRow {
                anchor: anchor.clone(),
                id: &combination.id,
                counts: counts.clone(),
                verdict,
            });
            let view = CombinationView {
                anchor,
                id: &combination.id,
                target: &combination.target,
                component: &combination.component,
                component_version: env
                    .and_then(|env| env.components.get(&combination.component))
                    .map_or("", String::as_str),
                duration: text::duration(combination.duration_ms),
                counts,
                verdict,
                others,
                passed,
                passed_count,
                passed_data,
                passed_pages: passed_count.div_ceil(PASSED_PAGE_SIZE),
            };
            match suites.iter_mut().find(|s| s.id == combination.suite) {
                Some(group) => group.combinations.push(view),
                None => suites.push(SuiteGroup {
                    id: &combination.suite,
                    title: pick(lang, &combination.suite_title, &combination.suite_title_zh),
                    version: &combination.suite_version,
                    combinations: vec![view],
                }),
            }
        }

        let product_name = format!("{} {}", results.product.name, results.product.version)
            .trim()
            .to_owned();
        let complete = results.run.completion == Completion::Complete;
        let started = timestamp(&results.run.started_at);
        let finished = timestamp(&results.run.finished_at);
        let test_period = if started.get(..10) == finished.get(..10) && finished.len() > 11 {
            format!("{started} – {}", &finished[11..])
        } else {
            format!("{started} – {finished}")
        };

        View {
            lang: lang.code(),
            t,
            product: &results.product,
            harness: &results.harness,
            run_id: &results.run.id,
            test_period,
            started_at: started,
            finished_at: finished,
            report_date: if certification.judged_on.is_empty() {
                results.run.finished_at.get(..10).unwrap_or("")
            } else {
                &certification.judged_on
            },
            duration: text::duration(results.run.duration_ms),
            plan: &results.run.plan,
            completion: t.completion(results.run.completion),
            complete,
            summary: &results.summary,
            mandatory_not_run,
            basis: &certification.basis,
            verdict: VerdictView::new(certification.verdict, t),
            verdict_other: Labels::of(lang.other()).verdict(certification.verdict),
            conclusion: labels::conclusion(lang, &product_name, certification.verdict, complete),
            notes: labels::notes(lang, &certification.basis, results.summary.flaky),
            fingerprint,
            scope: ScopeView::new(results, lang),
            env_tables: results
                .environments
                .values()
                .map(|e| EnvView::new(e).with_inheritance(e, results))
                .collect::<Vec<_>>()
                .chunks_mut(ENV_COLUMNS)
                .map(|chunk| chunk.iter_mut().map(std::mem::take).collect())
                .collect(),
            matrix: MatrixView::new(results, t),
            combinations: index,
            suites,
            passed_paged,
            page_size: PASSED_PAGE_SIZE,
            failures,
            failures_total,
            waivers: waivers
                .iter()
                .enumerate()
                .map(|(i, w)| WaiverView {
                    number: i + 1,
                    case: &w.case,
                    target: w.target.as_deref().unwrap_or(""),
                    component: w.component.as_deref().unwrap_or(""),
                    reason: &w.reason,
                    owner: &w.owner,
                    expires: &w.expires,
                    expired: w.status == WaiverStatus::Expired,
                    status: t.waiver_status(w.status),
                    matched: w.matched,
                })
                .collect(),
            metrics,
            resource_charts,
            pairs: certification
                .pairs
                .iter()
                .map(|p| PairView {
                    target: &p.target,
                    component: &p.component,
                    verdict: VerdictView::new(p.verdict, t),
                })
                .collect(),
        }
    }
}

/// How a non-passed case stands with the waivers: (`waived` | `expired` | ``, waiver number).
fn waiver_mark(
    case: &CaseResult,
    waivers: &[crate::schema::WaiverRecord],
) -> (&'static str, usize) {
    match case.waiver {
        Some(i) if is_waived(case, waivers) => ("waived", i as usize + 1),
        Some(i) if waiver_of(case, waivers).is_some() => ("expired", i as usize + 1),
        _ => ("", 0),
    }
}

/// Append one passed case to a JSON array under construction (`[` is added first).
fn push_passed_json(out: &mut String, id: &str, title: &str, level: &str, duration_ms: u64) {
    out.push(if out.is_empty() { '[' } else { ',' });
    out.push('[');
    push_json_string(out, id);
    out.push(',');
    push_json_string(out, title);
    out.push(',');
    push_json_string(out, level);
    out.push(',');
    push_json_string(out, &text::duration(duration_ms));
    out.push(']');
}

fn close_passed_json(mut out: String) -> String {
    if out.is_empty() {
        out.push('[');
    }
    out.push(']');
    out
}

/// A JSON string literal that is also safe as the text of a `<script>` element: `<`, `>` and `&`
/// are written as `\u` escapes, so no `</script>` or `<!--` can appear.
fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-01-27T08:30:00.123Z` → `2026-01-27 08:30:00 UTC`; anything else unchanged.
fn timestamp(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

impl<'a> ScopeView<'a> {
    fn new(results: &'a RunResults, lang: Lang) -> Self {
        let mut targets: Vec<ScopeTarget<'a>> = Vec::new();
        let mut components: Vec<ScopeComponent<'a>> = Vec::new();
        let mut suites: Vec<ScopeSuite<'a>> = Vec::new();
        for c in &results.combinations {
            if !targets.iter().any(|t| t.id == c.target) {
                let env = results.environments.get(&c.target);
                targets.push(ScopeTarget {
                    id: &c.target,
                    kind: env.map_or("", |e| e.target_kind.as_str()),
                    arch: env.map_or("", |e| e.arch.as_str()),
                    os: env.map(os_name).unwrap_or_default(),
                });
            }
            if !components.iter().any(|x| x.id == c.component) {
                let mut versions: Vec<&str> = Vec::new();
                for env in results.environments.values() {
                    if let Some(v) = env.components.get(&c.component)
                        && !versions.contains(&v.as_str())
                    {
                        versions.push(v);
                    }
                }
                components.push(ScopeComponent {
                    id: &c.component,
                    kind: &c.component_kind,
                    versions: versions.join("; "),
                });
            }
            if !suites.iter().any(|s| s.id == c.suite) {
                suites.push(ScopeSuite {
                    id: &c.suite,
                    title: pick(lang, &c.suite_title, &c.suite_title_zh),
                    version: &c.suite_version,
                    cases: c.cases.len(),
                });
            }
        }
        ScopeView {
            targets,
            components,
            suites,
            combinations: results.combinations.len(),
            cases: results.summary.total,
        }
    }
}

impl<'a> MatrixView<'a> {
    fn new(results: &'a RunResults, t: &'static Labels) -> Self {
        let mut targets: Vec<&'a str> = Vec::new();
        let mut components: Vec<&'a str> = Vec::new();
        // (target, component) → (verdict, passed, applicable, first combination index)
        let mut cells: BTreeMap<(&str, &str), (Verdict, u64, u64, usize)> = BTreeMap::new();
        for (n, c) in results.combinations.iter().enumerate() {
            if !targets.contains(&c.target.as_str()) {
                targets.push(&c.target);
            }
            if !components.contains(&c.component.as_str()) {
                components.push(&c.component);
            }
            let counts = Summary::of(&c.cases);
            let passed = counts.passed + counts.flaky;
            let applicable = counts.total - counts.skipped;
            cells
                .entry((&c.target, &c.component))
                .and_modify(|e| {
                    e.0 = e.0.max(c.verdict);
                    e.1 += passed;
                    e.2 += applicable;
                })
                .or_insert((c.verdict, passed, applicable, n));
        }
        // The stored pair verdicts are authoritative when present.
        for p in &results.certification.pairs {
            if let Some(e) = cells.get_mut(&(p.target.as_str(), p.component.as_str())) {
                e.0 = p.verdict;
            }
        }
        let rows = targets
            .iter()
            .map(|&target| {
                let env = results.environments.get(target);
                MatrixRow {
                    target,
                    arch: env.map_or("", |e| e.arch.as_str()),
                    os: env.map(os_name).unwrap_or_default(),
                    cells: components
                        .iter()
                        .map(|&component| {
                            cells.get(&(target, component)).map(
                                |&(verdict, passed, applicable, n)| MatrixCell {
                                    verdict: VerdictView::new(verdict, t),
                                    passed,
                                    applicable,
                                    version: env
                                        .and_then(|e| e.components.get(component))
                                        .map_or("", String::as_str),
                                    anchor: format!("c{n}"),
                                },
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        MatrixView { components, rows }
    }
}

fn os_name(env: &Environment) -> String {
    if env.os_name.is_empty() {
        format!("{} {}", env.os_id, env.os_version)
            .trim()
            .to_owned()
    } else {
        env.os_name.clone()
    }
}

impl<'a> EnvView<'a> {
    fn new(env: &'a Environment) -> Self {
        let cpu = if env.cpu_vendor.is_empty() || env.cpu_model.contains(&env.cpu_vendor) {
            env.cpu_model.clone()
        } else {
            format!("{} ({})", env.cpu_model, env.cpu_vendor)
        };
        EnvView {
            target: &env.target,
            target_kind: &env.target_kind,
            hostname: &env.hostname,
            arch: &env.arch,
            cpu,
            cores: env.cores,
            memory_gib: format!("{:.1}", env.memory_bytes as f64 / (1u64 << 30) as f64),
            page_size: env.page_size,
            os: os_name(env),
            kernel: &env.kernel,
            libc: &env.libc,
            components: env
                .components
                .iter()
                .map(|(name, version)| (name.as_str(), version.as_str()))
                .collect(),
            ..EnvView::default()
        }
        .with_hardware(env.hardware.as_ref())
    }

    /// When every pair on this target is certified: what each built-in inheritance rule admits.
    fn with_inheritance(mut self, env: &Environment, results: &RunResults) -> Self {
        let pairs: Vec<_> = results
            .certification
            .pairs
            .iter()
            .filter(|p| p.target == env.target)
            .collect();
        if env.hardware.is_none()
            || pairs.is_empty()
            || pairs
                .iter()
                .any(|p| p.verdict == adaptest_schema::Verdict::NotCertified)
        {
            return self;
        }
        self.covers = crate::inherit::default_rules()
            .iter()
            .map(|rule| match crate::inherit::covered_class(rule, env) {
                Ok(class) => format!("{}: {class}", rule.id),
                Err(why) => format!("{}: — ({why})", rule.id),
            })
            .collect();
        self
    }

    /// Fill the hardware rows; a fact that is missing shows its reason instead.
    fn with_hardware(mut self, hw: Option<&adaptest_schema::Hardware>) -> Self {
        let Some(hw) = hw else { return self };
        let why = |fact: &str| {
            hw.missing
                .get(fact)
                .map_or_else(|| "—".to_owned(), |r| format!("— ({r})"))
        };
        self.hw = true;
        self.dmi = if hw.dmi.is_empty() {
            why("dmi")
        } else {
            [
                "sys_vendor",
                "product_name",
                "board_vendor",
                "board_name",
                "bios_vendor",
                "bios_version",
            ]
            .iter()
            .filter_map(|k| hw.dmi.get(*k).map(|v| format!("{k}: {v}")))
            .collect::<Vec<_>>()
            .join("; ")
        };
        let c = &hw.cpu;
        self.cpu_id = if c.family.is_empty() && c.model.is_empty() {
            c.microarch.clone()
        } else {
            format!(
                "{} family {} model {} stepping {} — {}",
                c.vendor, c.family, c.model, c.stepping, c.microarch
            )
        };
        self.numa = if hw.numa_nodes == 0 {
            why("numa")
        } else {
            hw.numa_nodes.to_string()
        };
        self.pci = hw
            .pci
            .iter()
            .map(|d| {
                let drv = if d.driver.is_empty() {
                    "-"
                } else {
                    d.driver.as_str()
                };
                format!("{} {} [{}] {}", d.address, d.four_tuple(), d.class, drv)
            })
            .collect();
        if self.pci.is_empty() {
            self.pci.push(why("pci"));
        }
        self.disks = hw
            .disks
            .iter()
            .map(|d| {
                let kind = match d.rotational {
                    Some(true) => " HDD",
                    Some(false) => " SSD",
                    None => "",
                };
                format!(
                    "{} {} {:.1} GiB{kind}",
                    d.name,
                    d.model,
                    d.size_bytes as f64 / (1u64 << 30) as f64
                )
            })
            .collect();
        if self.disks.is_empty() {
            self.disks.push(why("disks"));
        }
        self.nics = hw
            .nics
            .iter()
            .map(|n| {
                format!(
                    "{} ({})",
                    n.name,
                    if n.driver.is_empty() { "-" } else { &n.driver }
                )
            })
            .collect();
        if self.nics.is_empty() {
            self.nics.push(why("nics"));
        }
        self.missing = hw
            .missing
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        self
    }
}

impl<'a> FailureView<'a> {
    fn new(
        combination: &'a CombinationResult,
        case: &'a CaseResult,
        title: &'a str,
        t: &'static Labels,
        results: &'a RunResults,
    ) -> Self {
        let waivers = &results.certification.waivers;
        let (waiver, waiver_number) = waiver_mark(case, waivers);
        let record = waiver_of(case, waivers);
        FailureView {
            combination: &combination.id,
            id: &case.id,
            title,
            level: t.level(case.level),
            status: case.status.as_str(),
            status_label: t.status(case.status),
            reason: case.reason.as_deref().unwrap_or(""),
            exit_code: case.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            attempts: case.attempts,
            log: case.log.as_deref().unwrap_or(""),
            waiver,
            waiver_number,
            waiver_reason: record.map_or("", |w| w.reason.as_str()),
            waiver_expires: record.map_or("", |w| w.expires.as_str()),
            stdout: text::bounded(&case.stdout, HTML_EXCERPT_CAP),
            stderr: text::bounded(&case.stderr, HTML_EXCERPT_CAP),
            records: records_text(case, t),
        }
    }
}

/// An `sql` case's record counts in the report's language (`12 ran · 2 skipped by condition ·
/// 0 left after a halt`); empty for other kinds.
fn records_text(case: &CaseResult, t: &Labels) -> String {
    let Some(r) = &case.sql_records else {
        return String::new();
    };
    [
        (t.records_ran, r.ran),
        (t.records_skipped, r.skipped),
        (t.records_halted, r.halted),
    ]
    .iter()
    .map(|(l, n)| l.replacen("{}", &n.to_string(), 1))
    .collect::<Vec<_>>()
    .join(" · ")
}

/// `primary` in the chosen language, falling back to the other language when it is empty.
pub(crate) fn pick<'a>(lang: Lang, en: &'a str, zh: &'a str) -> &'a str {
    let (first, second) = match lang {
        Lang::En => (en, zh),
        Lang::ZhCn => (zh, en),
    };
    if first.trim().is_empty() {
        second
    } else {
        first
    }
}

/// An inline SVG of a resource profile: per phase, bars of CPU (avg and max, % of one core)
/// and RSS (avg and max, MiB), drawn from the item's `phase/quantity.stat` metrics; no script,
/// no external fetch, prints as it shows. `None` without CPU or RSS metrics.
fn resource_svg(metrics: &[crate::schema::Metric], t: &Labels) -> Option<String> {
    use std::fmt::Write as _;
    let get = |phase: &str, q: &str| {
        metrics
            .iter()
            .find(|m| m.name == format!("{phase}/{q}"))
            .map(|m| m.value)
    };
    let mut phases: Vec<&str> = Vec::new();
    for m in metrics {
        if let Some((p, "cpu_pct.avg")) = m.name.split_once('/')
            && !phases.contains(&p)
        {
            phases.push(p);
        }
    }
    if phases.is_empty() {
        return None;
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let row = 22.0;
    let (label_w, bar_w) = (160.0, 220.0);
    let width = label_w + 2.0 * (bar_w + 90.0);
    let height = 40.0 + row * 2.0 * phases.len() as f64;
    let cpu_scale = phases
        .iter()
        .filter_map(|p| get(p, "cpu_pct.max"))
        .fold(1.0f64, f64::max);
    let rss_scale = phases
        .iter()
        .filter_map(|p| get(p, "rss_bytes.max"))
        .fold(1.0f64, f64::max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" class="resources" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="12" font-family="sans-serif">"##
    );
    let cols = [
        (label_w, t.resource_cpu, cpu_scale, "cpu_pct", 1.0, "%"),
        (
            label_w + bar_w + 90.0,
            t.resource_rss,
            rss_scale,
            "rss_bytes",
            1024.0 * 1024.0,
            " MiB",
        ),
    ];
    for (x, title, ..) in cols {
        let _ = write!(
            svg,
            r##"<text x="{x}" y="14" font-weight="bold">{}</text>"##,
            esc(title)
        );
    }
    for (i, p) in phases.iter().enumerate() {
        let y = 28.0 + row * 2.0 * i as f64;
        let _ = write!(
            svg,
            r##"<text x="0" y="{}">{}</text>"##,
            y + row * 0.8,
            esc(p)
        );
        for (x, _, scale, q, div, unit) in cols {
            for (k, (stat, colour)) in [("avg", "#4a7ebb"), ("max", "#c0504d")].iter().enumerate() {
                let Some(v) = get(p, &format!("{q}.{stat}")) else {
                    continue;
                };
                let yy = y + k as f64 * (row - 4.0);
                let w = (v / scale * bar_w).max(1.0);
                let _ = write!(
                    svg,
                    r##"<rect x="{x}" y="{yy}" width="{w:.1}" height="{}" fill="{colour}"><title>{p} {stat}</title></rect><text x="{:.1}" y="{:.1}">{stat} {:.1}{unit}</text>"##,
                    row - 6.0,
                    x + w + 4.0,
                    yy + row - 9.0,
                    v / div
                );
            }
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_script_cannot_close_the_element() {
        let mut out = String::new();
        push_json_string(&mut out, "</script><!-- \"x\" & \\ \n");
        assert_eq!(
            out,
            r#""\u003c/script\u003e\u003c!-- \"x\" \u0026 \\ \u000a""#
        );
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "</script><!-- \"x\" & \\ \n");
    }

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(
            timestamp("2026-01-27T08:30:00.123456Z"),
            "2026-01-27 08:30:00 UTC"
        );
        assert_eq!(
            timestamp("2026-01-27T16:30:00+08:00"),
            "2026-01-27 08:30:00 UTC"
        );
        assert_eq!(timestamp("yesterday"), "yesterday");
    }
}
