//! The run directory: its layout, the inputs kept for resume and evidence, and assembling the
//! journal into [`RunResults`].
//!
//! ```text
//! adaptest-runs/<run-id>/
//!   run.json            what was run (id, plan, harness version, product)
//!   inputs/plan.toml    the plan as it was; inputs/suites/<suite-id>/suite.toml every suite
//!                       used, with the files it refers to (sqllogictest scripts) beside it
//!   journal.jsonl       one line per finished case (source of truth)
//!   env/<target>.json   environment of each target
//!   logs/<target>/<component>/<suite>/<case>.log
//!   results.json junit.xml report.html report.zh-CN.html
//! ```

use crate::engine::StopReason;
use crate::journal::{self, CaseRecord};
use crate::spec::{self, Plan, Source};
use adaptest_reports::{
    CaseResult, CombinationResult, Completion, Environment, HarnessInfo, RunInfo, RunResults,
    SCHEMA_VERSION, Status,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// `run.json`: what a run directory holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub created_at: String,
    /// The plan as the user named it (`builtin:default-plan.toml` for the default).
    pub plan: String,
    pub harness_version: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunDirError {
    #[error("failed to create the run directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an adaptest run directory (no readable run.json)")]
    NotARun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: run.json is invalid: {message}")]
    BadMeta { path: PathBuf, message: String },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] spec::LoadError),
}

pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let nanos = now.subsec_nanosecond() as u32;
    let salt = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) & 0xffff;
    format!("{}-{salt:04x}", now.strftime("%Y%m%d-%H%M%S"))
}

/// Create `base/<run-id>/` with its inputs copied in.
pub fn create(base: &Path, run_id: &str, plan: &Plan) -> Result<PathBuf, RunDirError> {
    let dir = base.join(run_id);
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| RunDirError::Create {
            path: p.to_path_buf(),
            source,
        })
    };
    mkdir(&dir.join("inputs/suites"))?;
    mkdir(&dir.join("env"))?;
    mkdir(&dir.join("logs"))?;
    write(&dir.join("inputs/plan.toml"), plan.source.text.as_bytes())?;
    let mut written = std::collections::HashSet::new();
    for c in &plan.combinations {
        // Synthetic suites (a component's lifecycle) come from the plan itself.
        if c.suite.id == spec::plan::LIFECYCLE_SUITE || !written.insert(c.suite.id.clone()) {
            continue;
        }
        // Each suite in a directory of its own, with the files it refers to beside it, so that
        // a resume (and the evidence bundle) sees exactly what ran.
        let sdir = dir.join("inputs/suites").join(&c.suite.id);
        mkdir(&sdir)?;
        write(&sdir.join("suite.toml"), c.suite.source.text.as_bytes())?;
        for case in &c.suite.cases {
            if let spec::Action::Sql(sql) = &case.action {
                let mut files = vec![(sql.file.clone(), &sql.script)];
                for (engine, text) in &sql.variants {
                    files.push((sql.for_engine(engine).0, text));
                }
                for (rel, text) in files {
                    let p = sdir.join(&rel);
                    mkdir(p.parent().expect("has parent"))?;
                    write(&p, text.as_bytes())?;
                }
            }
        }
    }
    let meta = RunMeta {
        run_id: run_id.to_string(),
        created_at: jiff::Timestamp::now().to_string(),
        plan: if plan.source.name.starts_with("builtin:") {
            plan.source.name.clone()
        } else {
            std::fs::canonicalize(&plan.source.name)
                .map_or_else(|_| plan.source.name.clone(), |p| p.display().to_string())
        },
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // Written last and atomically (a temporary file renamed into place): a kill at any moment
    // leaves either no run.json (nothing ran) or a whole one, never an empty file.
    let tmp = dir.join("run.json.partial");
    write(
        &tmp,
        serde_json::to_string_pretty(&meta)
            .expect("meta serializes")
            .as_bytes(),
    )?;
    std::fs::rename(&tmp, dir.join("run.json")).map_err(|source| RunDirError::Write {
        path: dir.join("run.json"),
        source,
    })?;
    Ok(dir)
}

/// Is `id` a run id that is safe as one path component (it names the run directory and the
/// top directory of a bundle): `[A-Za-z0-9._-]`, not empty, not `.` or `..`?
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    std::fs::write(path, bytes).map_err(|source| RunDirError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub fn read_meta(dir: &Path) -> Result<RunMeta, RunDirError> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|source| RunDirError::NotARun {
        path: dir.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        // Only an adaptest older than the atomic write leaves this (killed while creating the
        // directory): no case ran, so there is nothing to resume.
        return Err(RunDirError::BadMeta {
            path,
            message: format!(
                "it is empty: the run was killed while its directory was being created, before any case ran; nothing can be resumed — start a new run (and remove {})",
                dir.display()
            ),
        });
    }
    let meta: RunMeta = serde_json::from_str(&text).map_err(|e| RunDirError::BadMeta {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if !valid_run_id(&meta.run_id) {
        return Err(RunDirError::BadMeta {
            path,
            message: format!(
                "run_id {:?} is not a run id (letters, digits, `.`, `_` and `-` only; not `.` or `..`)",
                meta.run_id
            ),
        });
    }
    Ok(meta)
}

/// The plan and suites exactly as the run first used them (edits since then do not leak in).
pub fn load_inputs(dir: &Path) -> Result<(RunMeta, Plan), RunDirError> {
    let meta = read_meta(dir)?;
    let suites = spec::load_suites(false, &[dir.join("inputs/suites")], &[])?;
    let plan_path = dir.join("inputs/plan.toml");
    let text = std::fs::read_to_string(&plan_path).map_err(|source| RunDirError::NotARun {
        path: dir.to_path_buf(),
        source,
    })?;
    // Relative paths in the plan (rootfs, keys) stay relative to where the plan was.
    let name = if meta.plan.starts_with("builtin:") {
        meta.plan.clone()
    } else {
        plan_path.display().to_string()
    };
    let mut source = Source::new(name, text);
    if !meta.plan.starts_with("builtin:") {
        source.base = Some(
            Path::new(&meta.plan)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        );
    }
    let plan = spec::parse_plan(source, &suites).map_err(spec::LoadError::from)?;
    Ok((meta, plan))
}

/// Environments saved in `env/`.
pub fn read_environments(dir: &Path) -> BTreeMap<String, Environment> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("env")) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Ok(text) = std::fs::read_to_string(&p)
                && let Ok(env) = serde_json::from_str::<Environment>(&text)
            {
                out.insert(env.target.clone(), env);
            }
        }
    }
    out
}

/// Build the results document from the plan and the journal records.
pub fn assemble(
    meta: &RunMeta,
    plan: &Plan,
    records: &HashMap<(String, String), CaseRecord>,
    environments: BTreeMap<String, Environment>,
    stopped: Option<StopReason>,
    started_at: &str,
) -> RunResults {
    let finished_at = jiff::Timestamp::now();
    let duration_ms = started_at
        .parse::<jiff::Timestamp>()
        .ok()
        .map_or(0, |s| (finished_at - s).as_millis().max(0) as u64);
    let mut combinations = Vec::with_capacity(plan.combinations.len());
    for combo in &plan.combinations {
        let mut cases = Vec::with_capacity(combo.suite.cases.len());
        for case in &combo.suite.cases {
            let r = records.get(&(combo.id.clone(), case.id.clone()));
            // A finished import is shown as the tests it imported.
            if let (Some(parent), spec::Action::Import(_)) = (r, &case.action) {
                let children = crate::kinds::import::children_of(records, &combo.id, parent);
                if !children.is_empty() {
                    cases.extend(
                        children
                            .into_iter()
                            .map(|c| crate::kinds::import::child_result(case, c)),
                    );
                    continue;
                }
            }
            cases.push(match r {
                Some(r) => CaseResult {
                    id: case.id.clone(),
                    title: case.title.clone(),
                    title_zh: case.title_zh.clone(),
                    level: case.level,
                    status: r.status,
                    reason: r.reason.clone(),
                    attempts: r.attempts,
                    duration_ms: r.duration_ms,
                    exit_code: r.exit_code,
                    stdout: r.stdout.clone(),
                    stderr: r.stderr.clone(),
                    log: r.log.clone(),
                    tags: case.tags.clone(),
                    metrics: r.metrics.clone(),
                    waiver: None,
                    sql_records: r.sql_records,
                    leaked: r.leaked.clone(),
                },
                None => CaseResult {
                    id: case.id.clone(),
                    title: case.title.clone(),
                    title_zh: case.title_zh.clone(),
                    level: case.level,
                    status: Status::NotRun,
                    reason: Some(match stopped {
                        Some(StopReason::FailFast) => "not run: --fail-fast stopped the run".into(),
                        Some(StopReason::Interrupted) => "not run: the run was interrupted".into(),
                        None => "not run".into(),
                    }),
                    attempts: 0,
                    duration_ms: 0,
                    exit_code: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    log: None,
                    tags: case.tags.clone(),
                    metrics: Vec::new(),
                    waiver: None,
                    sql_records: None,
                    leaked: Vec::new(),
                },
            });
        }
        combinations.push(CombinationResult {
            id: combo.id.clone(),
            target: combo.target.clone(),
            component: combo.component.clone(),
            component_kind: combo.component_kind.clone(),
            suite: combo.suite.id.clone(),
            suite_title: combo.suite.title.clone(),
            suite_title_zh: combo.suite.title_zh.clone(),
            suite_version: combo.suite.version.clone(),
            duration_ms: cases.iter().map(|c| c.duration_ms).sum(),
            cases,
            verdict: adaptest_reports::Verdict::fail_closed(),
        });
    }
    let mut environments = environments;
    for (id, env) in environments.iter_mut() {
        // The OS component's version is the OS itself.
        if plan.target(id).is_some() && !env.os_name.is_empty() {
            env.components
                .entry("os".into())
                .or_insert_with(|| env.os_name.clone());
        }
        for c in &plan.components {
            if let Some(v) = &c.version {
                env.components
                    .entry(c.id.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        harness: HarnessInfo {
            name: "adaptest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        run: RunInfo {
            id: meta.run_id.clone(),
            started_at: started_at.to_string(),
            finished_at: finished_at.to_string(),
            duration_ms,
            completion: match stopped {
                None => Completion::Complete,
                Some(StopReason::Interrupted) => Completion::Interrupted,
                Some(StopReason::FailFast) => Completion::FailFast,
            },
            plan: meta.plan.clone(),
        },
        product: plan.product.clone(),
        environments,
        combinations,
        summary: Default::default(),
        certification: Default::default(),
    };
    results.recount();
    crate::verdict::apply(&mut results, &plan.waivers, crate::verdict::today());
    results
}

/// Write results.json, junit.xml, report.html (English) and report.zh-CN.html into the run
/// directory; the reports show the SHA-256 of results.json as the evidence fingerprint.
pub fn write_reports(
    dir: &Path,
    results: &RunResults,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let json = adaptest_reports::to_json(results)?;
    // The evidence fingerprint both reports show: SHA-256 of results.json as written.
    let fingerprint = adaptest_reports::fingerprint::fingerprint(json.as_bytes());
    write(&dir.join("results.json"), json.as_bytes())?;
    drop(json);
    write(
        &dir.join("junit.xml"),
        adaptest_reports::to_junit(results)?.as_bytes(),
    )?;
    for (lang, name) in [
        (adaptest_reports::Lang::En, "report.html"),
        (adaptest_reports::Lang::ZhCn, "report.zh-CN.html"),
    ] {
        write(
            &dir.join(name),
            adaptest_reports::render_html(results, lang, &fingerprint)?.as_bytes(),
        )?;
    }
    Ok(())
}

/// Records of a run directory's journal, latest per case.
pub fn journal_records(
    dir: &Path,
) -> Result<HashMap<(String, String), CaseRecord>, journal::JournalError> {
    Ok(journal::latest_cases(&journal::read(
        &dir.join("journal.jsonl"),
    )?))
}
