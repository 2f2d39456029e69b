//! Suite files: parsing (`SuiteFile`, with spans) and resolution into [`Suite`].

use super::diag::{Source, SpecErrors, from_toml_error};
use super::duration::parse_duration;
use adaptest_reports::Level;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use toml::Spanned;

// ---------------------------------------------------------------- raw, as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    suite: SuiteHeader,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default, rename = "case")]
    cases: Vec<Spanned<CaseSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteHeader {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    title_zh: String,
    component: Spanned<String>,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    description_zh: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    timeout: Option<Spanned<String>>,
    level: Option<Level>,
    retries: Option<u32>,
    /// `sql` cases: results of more values than this are shown hashed (classic default 8).
    hash_threshold: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    title_zh: String,
    level: Option<Level>,
    #[serde(default)]
    tags: Vec<String>,
    timeout: Option<Spanned<String>>,
    retries: Option<u32>,
    #[serde(default)]
    requires: Requires,
    // kind `run`
    run: Option<Spanned<String>>,
    stdin: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Secret variables (a component's `password_env`) this command may inherit; every other
    /// one is removed from its environment.
    #[serde(default)]
    pass_env: Vec<String>,
    cwd: Option<String>,
    expect: Option<ExpectSpec>,
    // kind `sql`: a sqllogictest file, relative to the suite file
    sql: Option<Spanned<String>>,
    hash_threshold: Option<u64>,
    // kind `steps`: protocol-neutral operations on the component
    steps: Option<Spanned<Vec<Spanned<toml::Table>>>>,
    // kind `bench`: one operation driven at a concurrency, measured
    bench: Option<Spanned<toml::Table>>,
    // kind `import`: an external suite printing TAP or writing JUnit XML
    import: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requires {
    #[serde(default)]
    arch: Vec<String>,
    #[serde(default)]
    os: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    capabilities: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    exit: Option<i32>,
    stdout: Option<String>,
    #[serde(default)]
    stdout_contains: Vec<String>,
    #[serde(default)]
    stdout_not_contains: Vec<String>,
    stdout_regex: Option<Spanned<String>>,
    stderr: Option<String>,
    #[serde(default)]
    stderr_contains: Vec<String>,
    #[serde(default)]
    stderr_not_contains: Vec<String>,
    stderr_regex: Option<Spanned<String>>,
}

// ---------------------------------------------------------------- resolved

/// A loaded, validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub id: String,
    pub title: String,
    pub title_zh: String,
    /// The component kind (or capability) this suite exercises: `os`, `sql`, `postgres`, …
    pub component: String,
    pub version: String,
    pub description: String,
    pub description_zh: String,
    pub cases: Vec<Case>,
    /// Where it was loaded from (for diagnostics and the evidence).
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub title: String,
    pub title_zh: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub requires: Requirements,
    pub action: Action,
}

/// What must hold on the target for a case to apply; otherwise it is skipped.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    pub arch: Vec<String>,
    pub os: Vec<String>,
    pub commands: Vec<String>,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// A shell command on the target, with expectations on its outcome.
    Run(RunAction),
    /// A sqllogictest script through the component's `sql.query` operation.
    Sql(super::kinds::SqlAction),
    /// Protocol-neutral operations on the component, in order.
    Steps(Vec<super::kinds::Step>),
    /// One operation driven at a concurrency and measured.
    Bench(super::kinds::BenchAction),
    /// An external suite whose TAP or JUnit report becomes one case per test.
    Import(super::import::ImportAction),
}

impl Action {
    /// Does this case talk to the component (rather than only the target's shell)?
    pub fn needs_component(&self) -> bool {
        !matches!(self, Action::Run(_) | Action::Import(_))
    }
}

#[derive(Debug, Clone)]
pub struct RunAction {
    pub command: String,
    pub stdin: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Secret variables the command may inherit (`pass_env`).
    pub pass_env: Vec<String>,
    pub cwd: Option<String>,
    pub expect: Expectations,
}

#[derive(Debug, Clone)]
pub struct Expectations {
    pub exit: i32,
    pub stdout: Stream,
    pub stderr: Stream,
}

#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub equals: Option<String>,
    pub contains: Vec<String>,
    pub not_contains: Vec<String>,
    pub regex: Option<Regex>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// Parse and validate one suite file, reporting every problem found.
pub fn parse_suite(source: Source) -> Result<Suite, SpecErrors> {
    let file: SuiteFile = toml::from_str(&source.text).map_err(|e| from_toml_error(&source, &e))?;
    let mut errors = Vec::new();
    let id = file.suite.id.get_ref().clone();
    if !valid_id(&id) {
        errors.push(source.error(
            file.suite.id.span(),
            "suite.id",
            format!("`{id}` is not a valid id (lowercase letters, digits, `.`, `_`, `-`)"),
        ));
    }
    let component = file.suite.component.get_ref().clone();
    if !super::component_or_capability_known(&component) {
        errors.push(
            source
                .error(
                    file.suite.component.span(),
                    "suite.component",
                    format!("unknown component kind or capability `{component}`"),
                )
                .with_help(super::known_components_help()),
        );
    }
    let default_timeout = match &file.defaults.timeout {
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                errors.push(source.error(t.span(), "defaults.timeout", e.to_string()));
                DEFAULT_TIMEOUT
            }
        },
        None => DEFAULT_TIMEOUT,
    };
    let default_level = file.defaults.level.unwrap_or(Level::Mandatory);
    let default_retries = file.defaults.retries.unwrap_or(0);

    let mut seen = HashSet::new();
    let mut cases = Vec::new();
    if file.cases.is_empty() {
        errors.push(source.error(file.suite.id.span(), "case", "the suite has no [[case]]"));
    }
    for (i, spanned) in file.cases.into_iter().enumerate() {
        let span = spanned.span();
        let c = spanned.into_inner();
        let at = |f: &str| format!("case[{i}].{f}");
        let cid = c.id.get_ref().clone();
        if !valid_id(&cid) {
            errors.push(source.error(
                c.id.span(),
                &at("id"),
                format!("`{cid}` is not a valid id (lowercase letters, digits, `.`, `_`, `-`)"),
            ));
        } else if !seen.insert(cid.clone()) {
            errors.push(source.error(
                c.id.span(),
                &at("id"),
                format!("duplicate case id `{cid}` in suite `{id}`"),
            ));
        }
        let timeout = match &c.timeout {
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(source.error(t.span(), &at("timeout"), e.to_string()));
                    default_timeout
                }
            },
            None => default_timeout,
        };
        for cap in &c.requires.capabilities {
            if !adaptest_adapters::component::KNOWN_CAPABILITIES.contains(&cap.get_ref().as_str()) {
                errors.push(
                    source
                        .error(
                            cap.span(),
                            &at("requires.capabilities"),
                            format!("unknown capability `{}`", cap.get_ref()),
                        )
                        .with_help(format!(
                            "known capabilities: {}",
                            adaptest_adapters::component::KNOWN_CAPABILITIES.join(", ")
                        )),
                );
            }
        }
        if c.hash_threshold.is_some() && c.sql.is_none() {
            errors.push(source.error(
                span.clone(),
                &at("hash_threshold"),
                "`hash_threshold` applies to `sql` cases only",
            ));
        }
        let reserved = [
            ("sql", c.sql.as_ref().map(|s| s.span())),
            ("steps", c.steps.as_ref().map(|s| s.span())),
            ("bench", c.bench.as_ref().map(|s| s.span())),
            ("import", c.import.as_ref().map(|s| s.span())),
        ];
        let mut kinds: Vec<&str> = reserved
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(k, _)| *k)
            .collect();
        if c.run.is_some() {
            kinds.insert(0, "run");
        } else if !c.pass_env.is_empty() {
            errors.push(source.error(
                span.clone(),
                &at("pass_env"),
                "`pass_env` is for `run` cases (a `shell` step takes its own `pass_env`)",
            ));
        }
        let action = match kinds.as_slice() {
            [] => {
                errors.push(
                    source
                        .error(span.clone(), &at("run"), "the case has no action")
                        .with_help("give exactly one of `run`, `sql`, `steps`, `bench`, `import`"),
                );
                None
            }
            ["run"] => {
                let run = c.run.as_ref().expect("run present");
                if run.get_ref().trim().is_empty() {
                    errors.push(source.error(run.span(), &at("run"), "the command is empty"));
                }
                let e = c.expect.unwrap_or_default();
                let mut regex = |r: &Option<Spanned<String>>, field: &str| {
                    r.as_ref().and_then(|r| {
                        match regex::RegexBuilder::new(r.get_ref())
                            .multi_line(true)
                            .build()
                        {
                            Ok(re) => Some(re),
                            Err(err) => {
                                errors.push(source.error(
                                    r.span(),
                                    &at(field),
                                    format!("invalid regular expression: {err}"),
                                ));
                                None
                            }
                        }
                    })
                };
                let stdout_regex = regex(&e.stdout_regex, "expect.stdout_regex");
                let stderr_regex = regex(&e.stderr_regex, "expect.stderr_regex");
                Some(Action::Run(RunAction {
                    command: run.get_ref().clone(),
                    stdin: c.stdin,
                    env: c.env,
                    pass_env: c.pass_env,
                    cwd: c.cwd,
                    expect: Expectations {
                        exit: e.exit.unwrap_or(0),
                        stdout: Stream {
                            equals: e.stdout,
                            contains: e.stdout_contains,
                            not_contains: e.stdout_not_contains,
                            regex: stdout_regex,
                        },
                        stderr: Stream {
                            equals: e.stderr,
                            contains: e.stderr_contains,
                            not_contains: e.stderr_not_contains,
                            regex: stderr_regex,
                        },
                    },
                }))
            }
            ["sql"] => {
                let f = c.sql.as_ref().expect("sql present");
                match super::kinds::load_sql(&source, f.get_ref()) {
                    Ok(mut a) => {
                        if let Some(t) = c.hash_threshold.or(file.defaults.hash_threshold) {
                            a.hash_threshold = t;
                        }
                        errors.extend(super::kinds::check_sql(&source, &a, &at("sql")));
                        Some(Action::Sql(a))
                    }
                    Err(e) => {
                        errors.push(source.error(f.span(), &at("sql"), e));
                        None
                    }
                }
            }
            ["steps"] => {
                let steps = c.steps.as_ref().expect("steps present");
                let mut out = Vec::new();
                if steps.get_ref().is_empty() {
                    errors.push(source.error(steps.span(), &at("steps"), "no steps"));
                }
                for (si, st) in steps.get_ref().iter().enumerate() {
                    match super::kinds::parse_step(st.get_ref()) {
                        Ok(step) => out.push(step),
                        Err((field, e)) => errors.push(source.error(
                            st.span(),
                            &at(&format!("steps[{si}].{field}")),
                            e,
                        )),
                    }
                }
                Some(Action::Steps(out))
            }
            ["bench"] => {
                let b = c.bench.as_ref().expect("bench present");
                match super::kinds::parse_bench(b.get_ref()) {
                    Ok(bench) => Some(Action::Bench(bench)),
                    Err((field, e)) => {
                        errors.push(source.error(b.span(), &at(&format!("bench.{field}")), e));
                        None
                    }
                }
            }
            ["import"] => {
                let imp = c.import.as_ref().expect("import present");
                if c.expect.is_some() || c.stdin.is_some() {
                    errors.push(
                        source
                            .error(imp.span(), &at("import"), "an import is judged by the tests it reports: `expect` and `stdin` do not apply")
                            .with_help("`env` and `cwd` do apply to the import's command"),
                    );
                }
                match super::import::parse_import(imp.get_ref()) {
                    Ok(mut a) => {
                        a.env = c.env.clone();
                        a.cwd = c.cwd.clone();
                        Some(Action::Import(a))
                    }
                    Err((field, e)) => {
                        let path = if field.is_empty() {
                            "import".to_string()
                        } else {
                            format!("import.{field}")
                        };
                        errors.push(source.error(imp.span(), &at(&path), e));
                        None
                    }
                }
            }
            [kind] => {
                let (_, s) = reserved.iter().find(|(k, _)| k == kind).expect("listed");
                errors.push(
                    source
                        .error(
                            s.clone().unwrap_or(span.clone()),
                            &at(kind),
                            format!("case kind `{kind}` is reserved but not supported by this version of adaptest"),
                        )
                        .with_help("this version runs `run`, `sql`, `steps` and `bench` cases"),
                );
                None
            }
            many => {
                errors.push(
                    source
                        .error(
                            span.clone(),
                            &at(many[1]),
                            format!("the case has several actions: {}", many.join(", ")),
                        )
                        .with_help("give exactly one of `run`, `sql`, `steps`, `bench`, `import`"),
                );
                None
            }
        };
        if let Some(action) = action {
            cases.push(Case {
                id: cid,
                title: c.title,
                title_zh: c.title_zh,
                level: c.level.unwrap_or(default_level),
                tags: c.tags,
                timeout,
                retries: c.retries.unwrap_or(default_retries),
                requires: Requirements {
                    arch: c.requires.arch,
                    os: c.requires.os,
                    commands: c.requires.commands,
                    capabilities: c
                        .requires
                        .capabilities
                        .into_iter()
                        .map(Spanned::into_inner)
                        .collect(),
                },
                action,
            });
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors { errors });
    }
    Ok(Suite {
        id,
        title: file.suite.title,
        title_zh: file.suite.title_zh,
        component,
        version: file.suite.version,
        description: file.suite.description,
        description_zh: file.suite.description_zh,
        cases,
        source,
    })
}
