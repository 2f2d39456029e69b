//! Plan files: product, targets, components and the matrix; expansion into combinations.
//! `parse_plan` runs the steps in order: targets, components, matrix, lifecycle, waivers.

mod components;
mod lifecycle;
mod matrix;
mod raw;
mod targets;
mod waivers;

pub use lifecycle::{
    LIFECYCLE_SUITE, RECOVERY_CASE, RESIDUE_CASE, RESOURCES_CASE, lifecycle_cases,
};

use super::diag::{Source, SpecError, SpecErrors, from_toml_error};
use super::glob::glob_match;
use super::suite::Suite;
use adaptest_adapters::component::{ComponentConfig, Secret};
use adaptest_adapters::target::TargetConfig;
use adaptest_reports::Product;
use raw::PlanFile;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// A path as written in a plan: `~/` is the home directory, relative paths are relative to the
/// plan file's directory.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let pb = PathBuf::from(p);
    if pb.is_absolute() { pb } else { base.join(pb) }
}

/// A target as the plan declares it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub id: String,
    pub kind: String,
    pub slots: Option<u32>,
    /// Multiplies case timeouts; `None`: the target kind's own factor.
    pub timeout_factor: Option<f64>,
    pub description: String,
    /// Everything the adapter needs: paths resolved, the kind's fields checked and parsed.
    pub config: TargetConfig,
}

#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub id: String,
    pub kind: String,
    pub version: Option<String>,
    pub description: String,
    /// Everything the adapter needs except the secret, which is resolved at run time.
    pub config: ComponentConfig,
    pub password: Option<SecretRef>,
    /// The plan's extra `onlyif`/`skipif` labels for `sql` cases, after the component's own.
    pub labels: Vec<String>,
    /// `[component.resources]`: the component's resource profile is sampled and judged.
    pub resources: Option<ResourceSpec>,
    /// `[component.recovery]`: the component is killed and must come back.
    pub recovery: Option<RecoverySpec>,
}

/// `[component.recovery]`, parsed.
#[derive(Debug, Clone)]
pub struct RecoverySpec {
    /// Holds the main process's pid on the target.
    pub pid_file: String,
    /// `true`: the harness restarts it with the lifecycle `start`; `false` (`restart =
    /// "service"`): a service manager must, a new pid in `pid_file` answering.
    pub by_start: bool,
    pub timeout: std::time::Duration,
    /// Writes data before the kill (shell on the target).
    pub prepare: Option<String>,
    /// Checks the data after the recovery (shell on the target, exit 0).
    pub check: Option<String>,
}

/// How a component's processes are found on the target.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessSelector {
    /// The pid in this file (read again at every sample: a restart is followed).
    PidFile(String),
    /// Every process whose name (`/proc/<pid>/comm`) matches this shell glob.
    Process(String),
    /// The processes of this systemd unit's cgroup.
    SystemdUnit(String),
}

/// `[component.resources]`, parsed.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub select: ProcessSelector,
    pub sample_interval: std::time::Duration,
    pub idle_window: std::time::Duration,
    /// Percent of one core; the idle window's average must not exceed it.
    pub cpu_idle_max: Option<f64>,
    /// Percent of one core; no phase's p95 may exceed it.
    pub cpu_max: Option<f64>,
    /// Bytes; no sample's RSS may exceed it.
    pub rss_max: Option<u64>,
}

/// Where a component's password comes from; resolved when the run starts, so that validating
/// a plan needs no secrets. `at` is `file:line` of the reference, for the error message.
#[derive(Debug, Clone)]
pub enum SecretRef {
    Env { var: String, at: String },
    File { path: PathBuf, at: String },
}

impl SecretRef {
    /// The secret's value, or a message naming the plan line and what is missing.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env { var, at } => std::env::var(var).map(Secret::new).map_err(|_| {
                format!("{at}: password_env: environment variable `{var}` is not set")
            }),
            SecretRef::File { path, at } => std::fs::read_to_string(path)
                .map(|t| Secret::new(t.lines().next().unwrap_or("").to_string()))
                .map_err(|e| format!("{at}: password_file: cannot read {}: {e}", path.display())),
        }
    }
}

/// A waiver of the plan: failures of matching cases are accepted (they make a verdict
/// "certified with notes" instead of "not certified") through `expires`.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiver {
    /// `suite-id/case-id` glob.
    pub case: String,
    /// Target id glob; `None`: every target.
    pub target: Option<String>,
    /// Component id glob; `None`: every component.
    pub component: Option<String>,
    pub reason: String,
    pub owner: String,
    /// The last day the waiver applies.
    pub expires: jiff::civil::Date,
}

impl Waiver {
    /// Does this waiver name case `case` of suite `suite` run on `target` × `component`?
    pub fn matches(&self, target: &str, component: &str, suite: &str, case: &str) -> bool {
        glob_match(&self.case, &format!("{suite}/{case}"))
            && self.target.as_deref().is_none_or(|p| glob_match(p, target))
            && self
                .component
                .as_deref()
                .is_none_or(|p| glob_match(p, component))
    }

    /// Is it past its last day on `today`?
    pub fn is_expired(&self, today: jiff::civil::Date) -> bool {
        today > self.expires
    }
}

/// One unit of scheduling: a suite run for a target × component pair.
#[derive(Debug, Clone)]
pub struct Combination {
    /// `target/component/suite`.
    pub id: String,
    pub target: String,
    pub component: String,
    pub component_kind: String,
    pub suite: Arc<Suite>,
}

/// A validated plan with its matrix expanded, in a deterministic order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub product: Product,
    pub targets: Vec<TargetSpec>,
    pub components: Vec<ComponentSpec>,
    pub combinations: Vec<Combination>,
    /// `[[waiver]]`s, in the order written.
    pub waivers: Vec<Waiver>,
}

impl Plan {
    pub fn target(&self, id: &str) -> Option<&TargetSpec> {
        self.targets.iter().find(|t| t.id == id)
    }

    pub fn component(&self, id: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// Does a suite written for `suite_component` apply to a component of kind `kind`?
pub fn suite_applies(suite_component: &str, kind: &str) -> bool {
    suite_component == kind
        || adaptest_adapters::component::component_kind(kind)
            .is_some_and(|k| k.capabilities.contains(&suite_component))
}

pub(super) fn check_id(
    source: &Source,
    id: &Spanned<String>,
    field: &str,
    errors: &mut Vec<SpecError>,
) {
    let s = id.get_ref();
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        errors.push(source.error(
            id.span(),
            field,
            format!("`{s}` is not a valid id (letters, digits, `.`, `_`, `-`)"),
        ));
    }
}

/// Parse, validate and expand a plan against the available suites.
pub fn parse_plan(
    source: Source,
    suites: &BTreeMap<String, Arc<Suite>>,
) -> Result<Plan, SpecErrors> {
    let file: PlanFile = toml::from_str(&source.text).map_err(|e| from_toml_error(&source, &e))?;
    let mut errors = Vec::new();
    let base = source.base_dir();

    let targets = targets::parse_targets(&source, &base, &file.targets, &mut errors);
    let components = components::parse_components(&source, &base, &file.components, &mut errors);
    let combinations = matrix::expand_matrix(
        &source,
        &file.targets,
        &file.matrix,
        &components,
        suites,
        &mut errors,
    );
    let combinations = lifecycle::with_lifecycle(combinations, &components);
    if errors.is_empty() && combinations.iter().all(|c| c.suite.cases.is_empty()) {
        errors.push(
            source
                .error(0..0, "matrix", "the plan expands to no case: nothing would be certified")
                .with_help("`adaptest plan show` lists the combinations; `adaptest list --cases` the suites' cases"),
        );
    }
    let waivers = waivers::parse_waivers(&source, &file.waivers, &combinations, &mut errors);
    if !errors.is_empty() {
        return Err(SpecErrors { errors });
    }
    Ok(Plan {
        source,
        product: Product {
            name: file.product.name,
            version: file.product.version,
            vendor: file.product.vendor,
            center: file.product.center,
            report_number: file.product.report_number,
            tester: file.product.tester,
            reviewer: file.product.reviewer,
        },
        targets,
        components,
        combinations,
        waivers,
    })
}

pub(super) fn range_head(r: &Range<usize>) -> Range<usize> {
    r.start..(r.start + 1).min(r.end.max(r.start + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let source = Source::new("/lab/plans/p.toml", text);
        let suites = crate::spec::load_suites(true, &[], &[]).expect("built-in suites");
        parse_plan(source, &suites).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn component_paths_resolve_where_the_file_is_opened() {
        let p = plan(
            r#"[product]
name = "p"
version = "1"
vendor = "v"

[[component]]
id = "embedded"
kind = "sqlite"
path = "data/local.db"

[[component]]
id = "shell"
kind = "sqlite-cli"
path = "data/remote.db"

[[component]]
id = "absolute"
kind = "sqlite-cli"
path = "/srv/db/x.db"

[[target]]
id = "local"
kind = "local"

[[matrix]]
targets = ["local"]
components = ["embedded", "shell", "absolute"]
suites = ["db.sql-core"]
"#,
        );
        let path = |id: &str| p.component(id).unwrap().config.path.clone().unwrap();
        // Opened by the harness: next to the plan.
        assert_eq!(path("embedded"), Path::new("/lab/plans/data/local.db"));
        // Opened by sqlite3 on the target: as written (relative to its scratch directory).
        assert_eq!(path("shell"), Path::new("data/remote.db"));
        assert_eq!(path("absolute"), Path::new("/srv/db/x.db"));
    }

    /// A plugin timeout too large for seconds used to overflow `n * 60` in the plugin host's
    /// own parser (a panic in debug builds); it now goes through the one duration grammar and
    /// is a diagnostic naming the file, line and field.
    #[test]
    fn huge_plugin_timeout_is_a_diagnostic_not_a_panic() {
        let source = Source::new(
            "/lab/plans/p.toml",
            r#"[product]
name = "p"
version = "1"
vendor = "v"

[[component]]
id = "mc"
kind = "plugin"
options = { plugin = "exec:/bin/true", timeout = "307445734561825861m" }

[[target]]
id = "local"
kind = "local"

[[matrix]]
targets = ["local"]
components = ["mc"]
suites = ["os.*"]
"#,
        );
        let suites = crate::spec::load_suites(true, &[], &[]).expect("built-in suites");
        let errors = parse_plan(source, &suites).expect_err("the timeout is refused");
        let e = &errors.errors[0];
        assert_eq!(e.file, "/lab/plans/p.toml");
        assert_eq!(e.line, 8, "{e}");
        assert_eq!(e.field, "component[0].options.timeout");
        assert!(e.message.contains("too long"), "{e}");
    }
}
