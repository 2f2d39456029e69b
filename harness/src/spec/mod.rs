//! Plan and suite formats: raw TOML with spans, validated into resolved types.

pub mod diag;
pub mod duration;
pub mod glob;
pub mod import;
pub mod inherit;
pub mod kinds;
pub mod plan;
pub mod suite;

pub use diag::{Source, SpecError, SpecErrors};
pub use plan::{Combination, ComponentSpec, Plan, TargetSpec, parse_plan};
pub use suite::{Action, Case, Suite, parse_suite};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every suite available to a run, by id.
pub type SuiteSet = BTreeMap<String, Arc<Suite>>;

pub(crate) fn component_or_capability_known(name: &str) -> bool {
    adaptest_adapters::component::component_kind(name).is_some()
        || adaptest_adapters::component::KNOWN_CAPABILITIES.contains(&name)
}

pub(crate) fn known_components_help() -> String {
    let kinds: Vec<&str> = adaptest_adapters::component::COMPONENT_KINDS
        .iter()
        .map(|k| k.name)
        .collect();
    format!(
        "component kinds in this build: {}; capabilities: {}",
        kinds.join(", "),
        adaptest_adapters::component::KNOWN_CAPABILITIES.join(", ")
    )
}

/// A file could not be read at all (before any parsing).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("failed to read {path}")]
#[diagnostic(code(adaptest::io))]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Why loading inputs failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] SpecErrors),
}

/// Read a plan or suite file. Text that is not UTF-8 is an input error at the first bad byte
/// (file, line, column), not an I/O error without a place.
pub fn read_source(path: &Path) -> Result<Source, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError {
        path: path.display().to_string(),
        source,
    })?;
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, text)),
        Err(e) => Err(SpecErrors::from(diag::invalid_utf8(name, e.as_bytes())).into()),
    }
}

/// Is this TOML text a suite (it has a `[suite]` table) rather than a plan?
pub fn looks_like_suite(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with("[suite]"))
}

/// Every `*.toml` under `dir`, recursively, in a stable order.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| ReadError {
            path: d.display().to_string(),
            source,
        })?;
        for e in rd {
            let p = e
                .map_err(|source| ReadError {
                    path: d.display().to_string(),
                    source,
                })?
                .path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load the built-in suites (optionally) and every suite file under `dirs`, plus `files`.
/// A user suite with the id of a built-in one replaces it; two user suites with one id are an
/// error naming both files. All problems of all files are reported together.
pub fn load_suites(
    builtin: bool,
    dirs: &[PathBuf],
    files: &[PathBuf],
) -> Result<SuiteSet, LoadError> {
    let mut sources = Vec::new();
    let mut user = Vec::new();
    let mut errors = Vec::new();
    let mut read = |path: &Path, user: &mut Vec<Source>| match read_source(path) {
        Ok(s) => {
            user.push(s);
            Ok(())
        }
        Err(LoadError::Spec(e)) => {
            errors.extend(e.errors);
            Ok(())
        }
        Err(e) => Err(e),
    };
    if builtin {
        for (path, text) in adaptest_suites::suite_files() {
            sources.push(Source::new(format!("builtin:{path}"), text));
        }
    }
    for d in dirs {
        for f in toml_files(d)? {
            read(&f, &mut user)?;
        }
    }
    for f in files {
        read(f, &mut user)?;
    }
    let builtin_count = sources.len();
    sources.extend(user);
    let mut set: SuiteSet = BTreeMap::new();
    let mut from_user: BTreeMap<String, String> = BTreeMap::new();
    for (i, src) in sources.into_iter().enumerate() {
        if !looks_like_suite(&src.text) {
            continue; // a plan next to the suites: not ours to load here
        }
        match parse_suite(src) {
            Ok(s) => {
                let is_user = i >= builtin_count;
                if is_user {
                    if let Some(prev) = from_user.get(&s.id) {
                        errors.push(s.source.error(
                            0..0,
                            "suite.id",
                            format!("suite `{}` is defined twice: here and in {prev}", s.id),
                        ));
                        continue;
                    }
                    from_user.insert(s.id.clone(), s.source.name.clone());
                    if set.contains_key(&s.id) {
                        tracing::info!(
                            "suite `{}` from {} replaces the built-in one",
                            s.id,
                            s.source.name
                        );
                    }
                }
                set.insert(s.id.clone(), Arc::new(s));
            }
            Err(e) => errors.extend(e.errors),
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors { errors }.into());
    }
    Ok(set)
}

/// The plan at `path`, or the embedded default plan.
pub fn load_plan(path: Option<&Path>, suites: &SuiteSet) -> Result<Plan, LoadError> {
    let source = match path {
        Some(p) => read_source(p)?,
        None => Source::new(
            format!("builtin:{}", adaptest_suites::DEFAULT_PLAN),
            adaptest_suites::file(adaptest_suites::DEFAULT_PLAN).expect("embedded default plan"),
        ),
    };
    Ok(parse_plan(source, suites)?)
}
