//! The human-readable report: one self-contained HTML file (inline CSS and a little inline JS,
//! nothing fetched from anywhere), in English or Simplified Chinese, printable to PDF.
//!
//! The template is embedded (`templates/report.html.tera`) and rendered with tera's HTML
//! autoescaping on, so every value from the results is escaped. Rendering stays fast and the file
//! small for very large runs: passed cases sit in a collapsed `<details>` per combination with
//! terse rows, and only the first [`MAX_FAILURE_DETAILS`] failures get their output excerpts.

use crate::error::RenderError;
use crate::schema::{
    CaseResult, CombinationResult, Completion, Environment, Level, RunResults, Status, Summary,
};
use crate::text;
use serde::Serialize;
use std::borrow::Cow;
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

/// Render `results` as a self-contained HTML report in `lang`.
pub fn to_html(results: &RunResults, lang: Lang) -> Result<String, RenderError> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on([".html"]);
    tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(RenderError::Template)?;

    let view = View::new(results, lang);
    let mut context = tera::Context::new();
    context.insert("r", &view);

    // A passed row is ~100 bytes; reserving avoids repeated copies of a large report.
    let cases: usize = results.combinations.iter().map(|c| c.cases.len()).sum();
    let mut out = Vec::with_capacity(32 * 1024 + cases * 128);
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
    started_at: &'a str,
    finished_at: &'a str,
    duration: String,
    plan: &'a str,
    completion: &'static str,
    complete: bool,
    summary: &'a Summary,
    mandatory_not_run: u64,
    /// `pass`, `fail` or `incomplete`.
    outcome: &'static str,
    outcome_text: &'static str,
    environments: Vec<EnvView<'a>>,
    combinations: Vec<CombinationView<'a>>,
    failures: Vec<FailureView<'a>>,
    failures_total: usize,
    metrics: Vec<MetricView<'a>>,
}

#[derive(Serialize)]
struct EnvView<'a> {
    target: &'a str,
    target_kind: &'a str,
    hostname: &'a str,
    arch: &'a str,
    cpu: String,
    cores: u32,
    memory_gib: String,
    os: String,
    kernel: &'a str,
    libc: &'a str,
    components: Vec<(&'a str, &'a str)>,
}

#[derive(Serialize)]
struct CombinationView<'a> {
    id: &'a str,
    target: &'a str,
    component: &'a str,
    component_version: &'a str,
    suite_title: &'a str,
    suite_version: &'a str,
    duration: String,
    counts: Summary,
    /// Every case that did not simply pass, in plan order.
    others: Vec<CaseRow<'a>>,
    /// Passed cases: terse rows, rendered collapsed.
    passed: Vec<PassedRow<'a>>,
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
    /// Index of the case in the "Failures" section, when it has an entry there.
    detail: Option<usize>,
}

#[derive(Serialize)]
struct PassedRow<'a> {
    id: &'a str,
    title: &'a str,
    level: &'static str,
    duration: String,
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
    stdout: Cow<'a, str>,
    stderr: Cow<'a, str>,
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

impl<'a> View<'a> {
    fn new(results: &'a RunResults, lang: Lang) -> Self {
        let t = Labels::of(lang);
        let mut failures = Vec::new();
        let mut failures_total = 0;
        let mut metrics = Vec::new();
        let mut mandatory_not_run = 0;

        let combinations = results
            .combinations
            .iter()
            .map(|combination| {
                let env = results.environments.get(&combination.target);
                let mut others = Vec::new();
                let mut passed = Vec::new();
                for case in &combination.cases {
                    let title = pick(lang, &case.title, &case.title_zh);
                    let level = t.level(case.level);
                    if case.level == Level::Mandatory && case.status == Status::NotRun {
                        mandatory_not_run += 1;
                    }
                    metrics.extend(case.metrics.iter().map(|m| MetricView {
                        combination: &combination.id,
                        case: &case.id,
                        name: &m.name,
                        value: text::number(m.value),
                        unit: &m.unit,
                        threshold: m.threshold.as_deref().unwrap_or(""),
                    }));
                    if case.status == Status::Passed {
                        passed.push(PassedRow {
                            id: &case.id,
                            title,
                            level,
                            duration: text::duration(case.duration_ms),
                        });
                        continue;
                    }
                    let mut detail = None;
                    if matches!(case.status, Status::Failed | Status::Error) {
                        failures_total += 1;
                        if failures.len() < MAX_FAILURE_DETAILS {
                            detail = Some(failures.len());
                            failures.push(FailureView::new(combination, case, title, t));
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
                        detail,
                    });
                }
                CombinationView {
                    id: &combination.id,
                    target: &combination.target,
                    component: &combination.component,
                    component_version: env
                        .and_then(|env| env.components.get(&combination.component))
                        .map_or("", String::as_str),
                    suite_title: pick(lang, &combination.suite_title, &combination.suite_title_zh),
                    suite_version: &combination.suite_version,
                    duration: text::duration(combination.duration_ms),
                    counts: Summary::of(&combination.cases),
                    others,
                    passed,
                }
            })
            .collect();

        let summary = &results.summary;
        let (outcome, outcome_text) = if summary.mandatory_failed > 0 {
            ("fail", t.outcome_fail)
        } else if mandatory_not_run > 0 {
            ("incomplete", t.outcome_incomplete)
        } else {
            ("pass", t.outcome_pass)
        };

        View {
            lang: lang.code(),
            t,
            product: &results.product,
            harness: &results.harness,
            run_id: &results.run.id,
            started_at: &results.run.started_at,
            finished_at: &results.run.finished_at,
            duration: text::duration(results.run.duration_ms),
            plan: &results.run.plan,
            completion: t.completion(results.run.completion),
            complete: results.run.completion == Completion::Complete,
            summary,
            mandatory_not_run,
            outcome,
            outcome_text,
            environments: results.environments.values().map(EnvView::new).collect(),
            combinations,
            failures,
            failures_total,
            metrics,
        }
    }
}

impl<'a> EnvView<'a> {
    fn new(env: &'a Environment) -> Self {
        let os = if env.os_name.is_empty() {
            format!("{} {}", env.os_id, env.os_version)
                .trim()
                .to_owned()
        } else {
            env.os_name.clone()
        };
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
            os,
            kernel: &env.kernel,
            libc: &env.libc,
            components: env
                .components
                .iter()
                .map(|(name, version)| (name.as_str(), version.as_str()))
                .collect(),
        }
    }
}

impl<'a> FailureView<'a> {
    fn new(
        combination: &'a CombinationResult,
        case: &'a CaseResult,
        title: &'a str,
        t: &'static Labels,
    ) -> Self {
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
            stdout: text::bounded(&case.stdout, HTML_EXCERPT_CAP),
            stderr: text::bounded(&case.stderr, HTML_EXCERPT_CAP),
        }
    }
}

/// `primary` in the chosen language, falling back to the other language when it is empty.
fn pick<'a>(lang: Lang, en: &'a str, zh: &'a str) -> &'a str {
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

/// Every fixed string of the report, per language.
#[derive(Serialize)]
struct Labels {
    /// `: ` in English, the full-width `：` in Chinese.
    colon: &'static str,
    report_title: &'static str,
    product: &'static str,
    version: &'static str,
    vendor: &'static str,
    run_id: &'static str,
    started: &'static str,
    finished: &'static str,
    duration: &'static str,
    plan: &'static str,
    completion: &'static str,
    harness: &'static str,
    summary: &'static str,
    total: &'static str,
    passed: &'static str,
    flaky: &'static str,
    failed: &'static str,
    error: &'static str,
    skipped: &'static str,
    not_run: &'static str,
    mandatory_failed: &'static str,
    mandatory_not_run: &'static str,
    outcome: &'static str,
    outcome_pass: &'static str,
    outcome_fail: &'static str,
    outcome_incomplete: &'static str,
    environment: &'static str,
    target: &'static str,
    target_kind: &'static str,
    hostname: &'static str,
    arch: &'static str,
    cpu: &'static str,
    cores: &'static str,
    memory_gib: &'static str,
    os: &'static str,
    kernel: &'static str,
    libc: &'static str,
    components: &'static str,
    component: &'static str,
    results: &'static str,
    combination: &'static str,
    suite_version: &'static str,
    case: &'static str,
    title: &'static str,
    level: &'static str,
    status: &'static str,
    attempts: &'static str,
    reason: &'static str,
    details: &'static str,
    passed_cases: &'static str,
    no_cases: &'static str,
    failures: &'static str,
    no_failures: &'static str,
    failures_shown: &'static str,
    exit_code: &'static str,
    log: &'static str,
    stdout: &'static str,
    stderr: &'static str,
    metrics: &'static str,
    metric: &'static str,
    value: &'static str,
    unit: &'static str,
    threshold: &'static str,
    expand_all: &'static str,
    collapse_all: &'static str,
    contents: &'static str,
    generated_by: &'static str,
    mandatory: &'static str,
    optional: &'static str,
    completion_complete: &'static str,
    completion_interrupted: &'static str,
    completion_fail_fast: &'static str,
}

impl Labels {
    fn of(lang: Lang) -> &'static Labels {
        match lang {
            Lang::En => &EN,
            Lang::ZhCn => &ZH_CN,
        }
    }

    fn level(&self, level: Level) -> &'static str {
        match level {
            Level::Mandatory => self.mandatory,
            Level::Optional => self.optional,
        }
    }

    fn status(&self, status: Status) -> &'static str {
        match status {
            Status::Passed => self.passed,
            Status::Flaky => self.flaky,
            Status::Failed => self.failed,
            Status::Error => self.error,
            Status::Skipped => self.skipped,
            Status::NotRun => self.not_run,
        }
    }

    fn completion(&self, completion: Completion) -> &'static str {
        match completion {
            Completion::Complete => self.completion_complete,
            Completion::Interrupted => self.completion_interrupted,
            Completion::FailFast => self.completion_fail_fast,
        }
    }
}

static EN: Labels = Labels {
    colon: ": ",
    report_title: "Compatibility Test Report",
    product: "Product",
    version: "Version",
    vendor: "Vendor",
    run_id: "Run ID",
    started: "Started",
    finished: "Finished",
    duration: "Duration",
    plan: "Test plan",
    completion: "Completion",
    harness: "Test harness",
    summary: "Summary",
    total: "Total",
    passed: "Passed",
    flaky: "Flaky (passed on retry)",
    failed: "Failed",
    error: "Error",
    skipped: "Skipped",
    not_run: "Not run",
    mandatory_failed: "Mandatory failures",
    mandatory_not_run: "Mandatory cases not run",
    outcome: "Outcome",
    outcome_pass: "All mandatory cases passed",
    outcome_fail: "Mandatory cases failed",
    outcome_incomplete: "Incomplete: some mandatory cases did not run",
    environment: "Environment",
    target: "Target",
    target_kind: "Target kind",
    hostname: "Host name",
    arch: "Architecture",
    cpu: "CPU model",
    cores: "Cores",
    memory_gib: "Memory (GiB)",
    os: "Operating system",
    kernel: "Kernel",
    libc: "C library",
    components: "Component versions",
    component: "Component",
    results: "Results",
    combination: "Combination",
    suite_version: "Suite version",
    case: "Case",
    title: "Title",
    level: "Level",
    status: "Status",
    attempts: "Attempts",
    reason: "Reason",
    details: "details",
    passed_cases: "Passed cases",
    no_cases: "No cases.",
    failures: "Failures",
    no_failures: "No case failed.",
    failures_shown: "Output is shown for the first failures only; all of them are listed in the tables above. Shown / total",
    exit_code: "Exit code",
    log: "Log",
    stdout: "Standard output",
    stderr: "Standard error",
    metrics: "Metrics",
    metric: "Metric",
    value: "Value",
    unit: "Unit",
    threshold: "Threshold",
    expand_all: "Expand all",
    collapse_all: "Collapse all",
    contents: "Combinations",
    generated_by: "Generated by",
    mandatory: "mandatory",
    optional: "optional",
    completion_complete: "complete",
    completion_interrupted: "interrupted",
    completion_fail_fast: "stopped at the first failure (fail-fast)",
};

static ZH_CN: Labels = Labels {
    colon: "：",
    report_title: "兼容性测试报告",
    product: "产品",
    version: "版本",
    vendor: "厂商",
    run_id: "运行编号",
    started: "开始时间",
    finished: "结束时间",
    duration: "耗时",
    plan: "测试计划",
    completion: "完成情况",
    harness: "测试工具",
    summary: "概要",
    total: "总数",
    passed: "通过",
    flaky: "重试后通过",
    failed: "失败",
    error: "错误",
    skipped: "跳过",
    not_run: "未运行",
    mandatory_failed: "必测项失败",
    mandatory_not_run: "必测项未运行",
    outcome: "结论",
    outcome_pass: "所有必测用例均已通过",
    outcome_fail: "存在未通过的必测用例",
    outcome_incomplete: "测试未完成：部分必测用例未运行",
    environment: "测试环境",
    target: "测试目标",
    target_kind: "目标类型",
    hostname: "主机名",
    arch: "架构",
    cpu: "CPU 型号",
    cores: "核数",
    memory_gib: "内存 (GiB)",
    os: "操作系统",
    kernel: "内核",
    libc: "C 库",
    components: "组件版本",
    component: "组件",
    results: "测试结果",
    combination: "测试组合",
    suite_version: "套件版本",
    case: "用例",
    title: "名称",
    level: "级别",
    status: "状态",
    attempts: "尝试次数",
    reason: "原因",
    details: "详情",
    passed_cases: "已通过用例",
    no_cases: "无用例。",
    failures: "失败项",
    no_failures: "无失败用例。",
    failures_shown: "仅显示前若干失败项的输出，全部失败项见上方各表。显示 / 总数",
    exit_code: "退出码",
    log: "日志",
    stdout: "标准输出",
    stderr: "标准错误",
    metrics: "性能指标",
    metric: "指标",
    value: "数值",
    unit: "单位",
    threshold: "阈值",
    expand_all: "全部展开",
    collapse_all: "全部折叠",
    contents: "测试组合",
    generated_by: "生成工具",
    mandatory: "必测",
    optional: "可选",
    completion_complete: "完整",
    completion_interrupted: "已中断",
    completion_fail_fast: "遇到失败后停止 (fail-fast)",
};
