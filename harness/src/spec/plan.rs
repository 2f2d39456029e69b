//! Plan files: product, targets, components and the matrix; expansion into combinations.

use super::diag::{Source, SpecError, SpecErrors, from_toml_error};
use super::duration::parse_duration;
use super::glob::glob_match;
use super::suite::Suite;
use adaptest_adapters::component::{ComponentConfig, Lifecycle, Secret};
use adaptest_adapters::target::{Field, TargetConfig, TargetFields};
use adaptest_reports::Product;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    product: ProductSpec,
    #[serde(default, rename = "target")]
    targets: Vec<TargetSpecRaw>,
    #[serde(default, rename = "component")]
    components: Vec<ComponentSpecRaw>,
    #[serde(default)]
    matrix: Vec<Spanned<MatrixSpec>>,
    #[serde(default, rename = "waiver")]
    waivers: Vec<Spanned<WaiverSpecRaw>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    vendor: String,
    /// The report cover: the adaptation center, its report number, tester and reviewer.
    #[serde(default)]
    center: String,
    #[serde(default)]
    report_number: String,
    #[serde(default)]
    tester: String,
    #[serde(default)]
    reviewer: String,
}

/// `[[waiver]]`: a known failure accepted until a date. Every field is optional here so that
/// a missing one is reported with the others (and with its table's position).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverSpecRaw {
    case: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    component: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    /// A TOML date (`2027-03-31`) or a string holding one.
    expires: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpecRaw {
    id: Spanned<String>,
    kind: Spanned<String>,
    /// How many combinations may run on this target at once.
    slots: Option<Spanned<u32>>,
    /// Case timeouts are multiplied by this (default: the target kind's own, e.g. 4 for a
    /// qemu-system guest under TCG).
    timeout_factor: Option<Spanned<f64>>,
    #[serde(default)]
    description: String,
    arch: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    user: Option<Spanned<String>>,
    identity_file: Option<Spanned<String>>,
    #[serde(default)]
    ssh_options: Vec<String>,
    rootfs: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    kernel: Option<Spanned<String>>,
    initrd: Option<Spanned<String>>,
    disk: Option<Spanned<String>>,
    firmware: Option<Spanned<String>>,
    append: Option<Spanned<String>>,
    memory_mb: Option<Spanned<u32>>,
    cpus: Option<Spanned<u32>>,
    accel: Option<Spanned<String>>,
    boot_timeout: Option<Spanned<String>>,
    #[serde(default)]
    forward_ports: Vec<u16>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl TargetSpecRaw {
    /// The span of a field (for problems the adapter reports), else the id's (a field that is
    /// not spanned, or a required one the plan left out).
    fn span_of(&self, field: Field) -> Range<usize> {
        fn s<T>(x: &Option<Spanned<T>>) -> Option<Range<usize>> {
            x.as_ref().map(Spanned::span)
        }
        let found = match field {
            Field::Kind => Some(self.kind.span()),
            Field::Arch => s(&self.arch),
            Field::Host => s(&self.host),
            Field::Port => s(&self.port),
            Field::User => s(&self.user),
            Field::IdentityFile => s(&self.identity_file),
            Field::Rootfs => s(&self.rootfs),
            Field::Image => s(&self.image),
            Field::Kernel => s(&self.kernel),
            Field::Initrd => s(&self.initrd),
            Field::Disk => s(&self.disk),
            Field::Firmware => s(&self.firmware),
            Field::Append => s(&self.append),
            Field::MemoryMb => s(&self.memory_mb),
            Field::Cpus => s(&self.cpus),
            Field::Accel => s(&self.accel),
            Field::BootTimeout => s(&self.boot_timeout),
            Field::SshOptions | Field::ForwardPorts => None,
        };
        found.unwrap_or_else(|| self.id.span())
    }

    /// The fields as the adapters take them: paths resolved, `boot_timeout` parsed.
    fn to_fields(
        &self,
        base: &Path,
        errors: &mut Vec<SpecError>,
        source: &Source,
        i: usize,
    ) -> TargetFields {
        let path =
            |x: &Option<Spanned<String>>| x.as_ref().map(|p| resolve_path(base, p.get_ref()));
        let boot_timeout =
            self.boot_timeout
                .as_ref()
                .and_then(|t| match parse_duration(t.get_ref()) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        errors.push(source.error(
                            t.span(),
                            &format!("target[{i}].boot_timeout"),
                            e.to_string(),
                        ));
                        None
                    }
                });
        let v = |x: &Option<Spanned<String>>| x.as_ref().map(|x| x.get_ref().clone());
        TargetFields {
            id: self.id.get_ref().clone(),
            kind: self.kind.get_ref().clone(),
            arch: v(&self.arch),
            host: v(&self.host),
            port: self.port.as_ref().map(|p| *p.get_ref()),
            user: v(&self.user),
            identity_file: path(&self.identity_file),
            ssh_options: self.ssh_options.clone(),
            rootfs: path(&self.rootfs),
            image: v(&self.image),
            kernel: path(&self.kernel),
            initrd: path(&self.initrd),
            disk: path(&self.disk),
            firmware: path(&self.firmware),
            append: v(&self.append),
            memory_mb: self.memory_mb.as_ref().map(|m| *m.get_ref()),
            cpus: self.cpus.as_ref().map(|c| *c.get_ref()),
            accel: v(&self.accel),
            boot_timeout,
            forward_ports: self.forward_ports.clone(),
            env: self.env.clone(),
        }
    }
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentSpecRaw {
    id: Spanned<String>,
    kind: Spanned<String>,
    /// The version the vendor declares (the adapter may also detect one).
    version: Option<String>,
    #[serde(default)]
    description: String,
    host: Option<String>,
    port: Option<Spanned<u16>>,
    user: Option<String>,
    /// Name of an environment variable holding the password (never the password itself).
    password_env: Option<Spanned<String>>,
    /// A file holding the password (first line).
    password_file: Option<Spanned<String>>,
    database: Option<String>,
    path: Option<String>,
    cli: Option<String>,
    /// More `onlyif`/`skipif` labels for `sql` cases (as the sqllogictest CLI's `--label`).
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    #[serde(default)]
    options: BTreeMap<String, toml::Value>,
    lifecycle: Option<LifecycleRaw>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleRaw {
    install: Option<String>,
    start: Option<String>,
    ready: Option<String>,
    ready_timeout: Option<Spanned<String>>,
    stop: Option<String>,
    uninstall: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixSpec {
    targets: Vec<Spanned<String>>,
    components: Vec<Spanned<String>>,
    suites: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<Selector>>,
    #[serde(default)]
    include: Vec<Spanned<Selector>>,
}

/// Glob patterns selecting combinations; an absent field matches everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selector {
    target: Option<String>,
    component: Option<String>,
    suite: Option<String>,
}

impl Selector {
    fn matches(&self, c: &Combination) -> bool {
        self.target
            .as_deref()
            .is_none_or(|p| glob_match(p, &c.target))
            && self
                .component
                .as_deref()
                .is_none_or(|p| glob_match(p, &c.component))
            && self
                .suite
                .as_deref()
                .is_none_or(|p| glob_match(p, &c.suite.id))
    }
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

fn check_id(source: &Source, id: &Spanned<String>, field: &str, errors: &mut Vec<SpecError>) {
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

/// Does the (resolved) plugin option name a library or program that exists on this host? A
/// program without a `/` is looked up on `PATH`.
fn plugin_file_exists(options: &BTreeMap<String, String>) -> Result<(), (&'static str, String)> {
    use adaptest_adapters::plugin::PluginSpec;
    let Some(Ok(spec)) = options.get("plugin").map(|t| PluginSpec::parse(t)) else {
        return Ok(());
    };
    let (what, path) = match spec {
        PluginSpec::Dylib(p) => ("plugin library", p),
        PluginSpec::Exec { program, .. } if program.contains('/') => {
            ("plugin program", PathBuf::from(program))
        }
        PluginSpec::Exec { program, .. } => {
            let on_path = std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&program).is_file()));
            return if on_path {
                Ok(())
            } else {
                Err((
                    "plugin",
                    format!("plugin program `{program}` is not on PATH"),
                ))
            };
        }
    };
    if path.is_file() {
        Ok(())
    } else {
        Err((
            "plugin",
            format!("{what} {} does not exist", path.display()),
        ))
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

    let mut targets = Vec::new();
    let mut target_ids = HashSet::new();
    for (i, t) in file.targets.iter().enumerate() {
        check_id(&source, &t.id, &format!("target[{i}].id"), &mut errors);
        if !target_ids.insert(t.id.get_ref().clone()) {
            errors.push(source.error(
                t.id.span(),
                &format!("target[{i}].id"),
                format!("duplicate target id `{}`", t.id.get_ref()),
            ));
        }
        let kind = t.kind.get_ref();
        let fields = t.to_fields(&base, &mut errors, &source, i);
        let mut config: Option<TargetConfig> = None;
        if !adaptest_adapters::target::KNOWN_TARGET_KINDS.contains(&kind.as_str()) {
            errors.push(
                source
                    .error(
                        t.kind.span(),
                        &format!("target[{i}].kind"),
                        format!("unknown or unsupported target kind `{kind}`"),
                    )
                    .with_help(format!(
                        "this build supports: {}",
                        adaptest_adapters::target::KNOWN_TARGET_KINDS.join(", ")
                    )),
            );
        } else {
            match adaptest_adapters::target::parse(&fields) {
                Ok(c) => config = Some(c),
                Err(problems) => {
                    for (field, message) in problems {
                        errors.push(source.error(
                            t.span_of(field),
                            &format!("target[{i}].{field}"),
                            message,
                        ));
                    }
                }
            }
        }
        if let Some(s) = &t.slots
            && *s.get_ref() == 0
        {
            errors.push(source.error(
                s.span(),
                &format!("target[{i}].slots"),
                "slots must be at least 1",
            ));
        }
        if let Some(f) = &t.timeout_factor
            && !(f.get_ref().is_finite() && *f.get_ref() > 0.0 && *f.get_ref() <= 100.0)
        {
            errors.push(source.error(
                f.span(),
                &format!("target[{i}].timeout_factor"),
                "timeout_factor must be a number above 0 and at most 100",
            ));
        }
        // A target whose fields are wrong has its errors above; the plan is not returned then.
        if let Some(config) = config {
            targets.push(TargetSpec {
                id: t.id.get_ref().clone(),
                kind: kind.clone(),
                slots: t.slots.as_ref().map(|s| *s.get_ref()),
                timeout_factor: t.timeout_factor.as_ref().map(|f| *f.get_ref()),
                description: t.description.clone(),
                config,
            });
        }
    }

    let mut components = Vec::new();
    let mut component_ids = HashSet::new();
    for (i, c) in file.components.iter().enumerate() {
        check_id(&source, &c.id, &format!("component[{i}].id"), &mut errors);
        if !component_ids.insert(c.id.get_ref().clone()) {
            errors.push(source.error(
                c.id.span(),
                &format!("component[{i}].id"),
                format!("duplicate component id `{}`", c.id.get_ref()),
            ));
        }
        let kind = c.kind.get_ref();
        if adaptest_adapters::component::component_kind(kind).is_none() {
            errors.push(
                source
                    .error(
                        c.kind.span(),
                        &format!("component[{i}].kind"),
                        format!("unknown component kind `{kind}`"),
                    )
                    .with_help(super::known_components_help()),
            );
        }
        let at = |sp: Range<usize>| {
            let (line, _) = source.line_col(sp.start);
            format!("{}:{line}", source.name)
        };
        let password = match (&c.password_env, &c.password_file) {
            (Some(e), None) => Some(SecretRef::Env {
                var: e.get_ref().clone(),
                at: at(e.span()),
            }),
            (None, Some(f)) => Some(SecretRef::File {
                path: resolve_path(&base, f.get_ref()),
                at: at(f.span()),
            }),
            (Some(e), Some(_)) => {
                errors.push(source.error(
                    e.span(),
                    &format!("component[{i}].password_env"),
                    "give `password_env` or `password_file`, not both",
                ));
                None
            }
            (None, None) => None,
        };
        let lc = c.lifecycle.as_ref();
        let ready_timeout = lc.and_then(|l| l.ready_timeout.as_ref()).and_then(|t| {
            match parse_duration(t.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(source.error(
                        t.span(),
                        &format!("component[{i}].lifecycle.ready_timeout"),
                        e.to_string(),
                    ));
                    None
                }
            }
        });
        let mut options: BTreeMap<String, String> = c
            .options
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        // A plugin names its library or program, relative to the plan's directory; it must
        // be there (a typo is the plan's mistake, not the product's failure at run time). A
        // plan re-read from a run directory (`source.base` set: resume, merge) is not checked
        // again: merging shards must work on a machine without the plugin.
        if kind == "plugin"
            && let Err((field, message)) =
                adaptest_adapters::plugin::resolve_options(&mut options, &base).and_then(|()| {
                    if source.base.is_none() {
                        plugin_file_exists(&options)
                    } else {
                        Ok(())
                    }
                })
        {
            errors.push(source.error(
                c.kind.span(),
                &format!("component[{i}].options.{field}"),
                message,
            ));
        }
        let config = ComponentConfig {
            id: c.id.get_ref().clone(),
            kind: kind.clone(),
            version: c.version.clone(),
            host: c.host.clone(),
            port: c.port.as_ref().map(|p| *p.get_ref()),
            user: c.user.clone(),
            password: None,
            database: c.database.clone(),
            // Embedded SQLite opens `path` on the harness machine: relative to the plan. Every
            // other kind hands it to a program on the target, where it means what it says there
            // (a relative path: the combination's scratch directory, the client's working
            // directory), so it is kept as written.
            path: c.path.as_ref().map(|p| {
                if kind == "sqlite" {
                    resolve_path(&base, p)
                } else {
                    PathBuf::from(p)
                }
            }),
            cli: c.cli.clone(),
            options,
            lifecycle: Lifecycle {
                install: lc.and_then(|l| l.install.clone()),
                start: lc.and_then(|l| l.start.clone()),
                ready: lc.and_then(|l| l.ready.clone()),
                ready_timeout,
                stop: lc.and_then(|l| l.stop.clone()),
                uninstall: lc.and_then(|l| l.uninstall.clone()),
            },
        };
        for (li, l) in c.labels.iter().enumerate() {
            let v = l.get_ref();
            if v.is_empty() || v.contains(|ch: char| ch.is_whitespace() || ch == '#') {
                errors.push(source.error(
                    l.span(),
                    &format!("component[{i}].labels[{li}]"),
                    format!("`{v}` is not a label (one word, no `#`)"),
                ));
            }
        }
        components.push(ComponentSpec {
            id: c.id.get_ref().clone(),
            kind: kind.clone(),
            version: c.version.clone(),
            description: c.description.clone(),
            config,
            password,
            labels: c.labels.iter().map(|l| l.get_ref().clone()).collect(),
        });
    }
    // The target's operating system is always available as component `os`.
    if !component_ids.contains("os") {
        components.push(ComponentSpec {
            id: "os".into(),
            kind: "os".into(),
            version: None,
            description: "the target's operating system".into(),
            config: ComponentConfig {
                id: "os".into(),
                kind: "os".into(),
                ..ComponentConfig::default()
            },
            password: None,
            labels: Vec::new(),
        });
    }

    if file.matrix.is_empty() {
        errors.push(source.error(
            0..0,
            "matrix",
            "the plan has no [[matrix]]: nothing would run",
        ));
    }

    let mut combinations: Vec<Combination> = Vec::new();
    let mut seen = HashSet::new();
    for (mi, m) in file.matrix.iter().enumerate() {
        let m_span = m.span();
        let m = m.get_ref();
        let errors_before = errors.len();
        let pick =
            |pats: &[Spanned<String>], ids: &[String], what: &str, errors: &mut Vec<SpecError>| {
                let mut out = Vec::new();
                for p in pats {
                    let hits: Vec<&String> = ids
                        .iter()
                        .filter(|id| glob_match(p.get_ref(), id))
                        .collect();
                    if hits.is_empty() {
                        errors.push(
                            source
                                .error(
                                    p.span(),
                                    &format!("matrix[{mi}].{what}s"),
                                    format!("`{}` matches no {what}", p.get_ref()),
                                )
                                .with_help(format!("known {what}s: {}", ids.join(", "))),
                        );
                    }
                    for h in hits {
                        if !out.contains(h) {
                            out.push(h.clone());
                        }
                    }
                }
                out
            };
        // Every declared target, also one whose fields are wrong (its errors are reported).
        let tids: Vec<String> = file
            .targets
            .iter()
            .map(|t| t.id.get_ref().clone())
            .collect();
        let cids: Vec<String> = components.iter().map(|c| c.id.clone()).collect();
        let sids: Vec<String> = suites.keys().cloned().collect();
        let ts = pick(&m.targets, &tids, "target", &mut errors);
        let cs = pick(&m.components, &cids, "component", &mut errors);
        let ss = pick(&m.suites, &sids, "suite", &mut errors);
        let make = |t: &str, c: &str, s: &str| -> Option<Combination> {
            let comp = components.iter().find(|x| x.id == c)?;
            let suite = suites.get(s)?;
            Some(Combination {
                id: format!("{t}/{c}/{s}"),
                target: t.to_string(),
                component: c.to_string(),
                component_kind: comp.kind.clone(),
                suite: suite.clone(),
            })
        };
        let mut added = 0usize;
        for t in &ts {
            for c in &cs {
                for s in &ss {
                    let Some(combo) = make(t, c, s) else { continue };
                    if !suite_applies(&combo.suite.component, &combo.component_kind) {
                        continue;
                    }
                    if m.exclude.iter().any(|x| x.get_ref().matches(&combo)) {
                        continue;
                    }
                    added += 1;
                    if seen.insert(combo.id.clone()) {
                        combinations.push(combo);
                    }
                }
            }
        }
        for (ii, inc) in m.include.iter().enumerate() {
            let sel = inc.get_ref();
            let before = added;
            for t in &tids {
                for c in &cids {
                    for s in &sids {
                        let Some(combo) = make(t, c, s) else { continue };
                        let explicit =
                            sel.target.is_some() && sel.component.is_some() && sel.suite.is_some();
                        if !explicit || !sel.matches(&combo) {
                            continue;
                        }
                        added += 1;
                        if seen.insert(combo.id.clone()) {
                            combinations.push(combo);
                        }
                    }
                }
            }
            if added == before {
                errors.push(
                    source
                        .error(inc.span(), &format!("matrix[{mi}].include[{ii}]"), "matches no target × component × suite")
                        .with_help("an include names `target`, `component` and `suite` (glob patterns allowed)"),
                );
            }
        }
        // Also when a list is empty (`targets = []`): nothing from this matrix would run.
        if added == 0 && errors.len() == errors_before {
            let empty: Vec<&str> = [
                ("targets", m.targets.is_empty()),
                ("components", m.components.is_empty()),
                ("suites", m.suites.is_empty()),
            ]
            .into_iter()
            .filter_map(|(f, e)| e.then_some(f))
            .collect();
            let message = if empty.is_empty() {
                "expands to no combination".to_string()
            } else {
                format!(
                    "expands to no combination: `{}` is empty",
                    empty.join("`, `")
                )
            };
            errors.push(
                source
                    .error(range_head(&m_span), &format!("matrix[{mi}]"), message)
                    .with_help("a suite pairs only with components of the kind it exercises (`[suite] component`), and `exclude` removes pairs"),
            );
        }
    }
    let combinations = with_lifecycle(combinations, &components);
    if errors.is_empty() && combinations.iter().all(|c| c.suite.cases.is_empty()) {
        errors.push(
            source
                .error(0..0, "matrix", "the plan expands to no case: nothing would be certified")
                .with_help("`adaptest plan show` lists the combinations; `adaptest list --cases` the suites' cases"),
        );
    }
    let waivers = parse_waivers(&source, &file.waivers, &combinations, &mut errors);
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

/// Validate the `[[waiver]]` tables: every field present and well-formed, and each waiver
/// naming at least one case of the expanded plan (a typo would silently waive nothing).
fn parse_waivers(
    source: &Source,
    raw: &[Spanned<WaiverSpecRaw>],
    combinations: &[Combination],
    errors: &mut Vec<SpecError>,
) -> Vec<Waiver> {
    let mut waivers = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let head = range_head(&w.span());
        let w = w.get_ref();
        let before = errors.len();
        let mut text = |value: &Option<Spanned<String>>, name: &str, help: &str| -> String {
            match value {
                None => {
                    errors.push(
                        source
                            .error(
                                head.clone(),
                                &format!("waiver[{i}].{name}"),
                                format!("missing field `{name}`"),
                            )
                            .with_help(help.to_owned()),
                    );
                    String::new()
                }
                Some(v) if v.get_ref().trim().is_empty() => {
                    errors.push(
                        source
                            .error(
                                v.span(),
                                &format!("waiver[{i}].{name}"),
                                format!("`{name}` is empty"),
                            )
                            .with_help(help.to_owned()),
                    );
                    String::new()
                }
                Some(v) => v.get_ref().trim().to_owned(),
            }
        };
        let case = text(
            &w.case,
            "case",
            "the cases waived, as `suite-id/case-id` (glob patterns allowed): `db.sql-core/window-*`",
        );
        let reason = text(
            &w.reason,
            "reason",
            "why the failure is accepted, for the report",
        );
        let owner = text(
            &w.owner,
            "owner",
            "who answers for the waiver (a person or a mailbox)",
        );
        if let Some(c) = &w.case
            && !case.is_empty()
            && !case.contains('/')
        {
            errors.push(
                source
                    .error(
                        c.span(),
                        &format!("waiver[{i}].case"),
                        format!("`{case}` does not name a suite and a case"),
                    )
                    .with_help(format!(
                        "write `suite-id/case-id`, e.g. `{case}/*` for every case of a suite"
                    )),
            );
        }
        let expires = match &w.expires {
            None => {
                errors.push(
                    source
                        .error(
                            head.clone(),
                            &format!("waiver[{i}].expires"),
                            "missing field `expires`",
                        )
                        .with_help("the last day the waiver applies: `expires = 2027-03-31`"),
                );
                None
            }
            Some(v) => match parse_expiry(v.get_ref()) {
                Ok(d) => Some(d),
                Err(message) => {
                    errors.push(
                        source
                            .error(v.span(), &format!("waiver[{i}].expires"), message)
                            .with_help("a calendar date: `expires = 2027-03-31` or `expires = \"2027-03-31\"`"),
                    );
                    None
                }
            },
        };
        let target = w.target.as_ref().map(|t| t.get_ref().clone());
        let component = w.component.as_ref().map(|c| c.get_ref().clone());
        let mut scope_ok = true;
        for (value, what) in [(&w.target, "target"), (&w.component, "component")] {
            let Some(v) = value else { continue };
            let known = combinations.iter().any(|c| {
                let id = if what == "target" {
                    &c.target
                } else {
                    &c.component
                };
                glob_match(v.get_ref(), id)
            });
            if !known {
                scope_ok = false;
                errors.push(source.error(
                    v.span(),
                    &format!("waiver[{i}].{what}"),
                    format!(
                        "`{}` matches no {what} of the plan's combinations",
                        v.get_ref()
                    ),
                ));
            }
        }
        // Whether it names a case at all (worth saying only when its scope is right).
        let case_ok = w.case.is_some() && case.contains('/') && scope_ok;
        let matches_a_case = |expires| {
            let waiver = Waiver {
                case: case.clone(),
                target: target.clone(),
                component: component.clone(),
                reason: reason.clone(),
                owner: owner.clone(),
                expires,
            };
            let hit = combinations.iter().any(|c| {
                c.suite
                    .cases
                    .iter()
                    .any(|k| waiver.matches(&c.target, &c.component, &c.suite.id, &k.id))
            });
            (hit, waiver)
        };
        if case_ok {
            let (hit, _) = matches_a_case(jiff::civil::Date::MAX);
            if !hit {
                let span = w.case.as_ref().map_or(head.clone(), |c| c.span());
                errors.push(
                    source
                        .error(span, &format!("waiver[{i}].case"), format!("`{case}` matches no case of the plan"))
                        .with_help("`adaptest plan show` lists the combinations and `adaptest list --cases` the case ids"),
                );
            }
        }
        let (Some(expires), true) = (expires, errors.len() == before) else {
            continue;
        };
        let (_, waiver) = matches_a_case(expires);
        waivers.push(waiver);
    }
    waivers
}

/// The last day of a waiver from a TOML date or a string holding one.
fn parse_expiry(value: &toml::Value) -> Result<jiff::civil::Date, String> {
    let text = match value {
        toml::Value::Datetime(dt) if dt.date.is_some() && dt.time.is_none() => dt.to_string(),
        toml::Value::Datetime(dt) => {
            return Err(format!(
                "`{dt}` is not a date: a waiver expires at the end of a day"
            ));
        }
        toml::Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("expected a date, found a {}", other.type_str())),
    };
    text.parse::<jiff::civil::Date>()
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}
fn range_head(r: &Range<usize>) -> Range<usize> {
    r.start..(r.start + 1).min(r.end.max(r.start + 1))
}

/// Suite id of the synthetic lifecycle combinations.
pub const LIFECYCLE_SUITE: &str = "lifecycle";

/// Give every target × component pair whose component declares lifecycle commands a
/// `target/component/lifecycle` combination (install, start, ready, stop, uninstall as cases),
/// placed before the pair's first suite: installation and start-up are certification items.
fn with_lifecycle(combos: Vec<Combination>, components: &[ComponentSpec]) -> Vec<Combination> {
    let mut out = Vec::with_capacity(combos.len());
    let mut done = HashSet::new();
    for c in combos {
        let spec = components.iter().find(|x| x.id == c.component);
        if let Some(spec) = spec
            && lifecycle_cases(&spec.config.lifecycle).next().is_some()
            && done.insert((c.target.clone(), c.component.clone()))
        {
            out.push(Combination {
                id: format!("{}/{}/{LIFECYCLE_SUITE}", c.target, c.component),
                target: c.target.clone(),
                component: c.component.clone(),
                component_kind: c.component_kind.clone(),
                suite: Arc::new(lifecycle_suite(spec)),
            });
        }
        out.push(c);
    }
    out
}

/// (id, title, title_zh, command) of each declared lifecycle step, in order.
pub fn lifecycle_cases(
    l: &Lifecycle,
) -> impl Iterator<Item = (&'static str, &'static str, &'static str, &String)> {
    [
        ("install", "Installation", "安装", l.install.as_ref()),
        ("start", "Start-up", "启动", l.start.as_ref()),
        ("ready", "Ready for service", "服务就绪", l.ready.as_ref()),
        ("stop", "Shutdown", "停止", l.stop.as_ref()),
        ("uninstall", "Uninstallation", "卸载", l.uninstall.as_ref()),
    ]
    .into_iter()
    .filter_map(|(id, t, tz, cmd)| cmd.map(|c| (id, t, tz, c)))
}

fn lifecycle_suite(spec: &ComponentSpec) -> Suite {
    use super::suite::{Case, Expectations, Requirements, RunAction, Stream};
    let timeout = spec
        .config
        .lifecycle
        .ready_timeout
        .unwrap_or(std::time::Duration::from_secs(300));
    let cases = lifecycle_cases(&spec.config.lifecycle)
        .map(|(id, title, title_zh, cmd)| Case {
            id: id.to_string(),
            title: title.to_string(),
            title_zh: title_zh.to_string(),
            level: adaptest_reports::Level::Mandatory,
            tags: vec!["lifecycle".into()],
            timeout,
            retries: 0,
            requires: Requirements::default(),
            action: super::suite::Action::Run(RunAction {
                command: cmd.clone(),
                stdin: None,
                env: BTreeMap::new(),
                pass_env: Vec::new(),
                cwd: None,
                expect: Expectations {
                    exit: 0,
                    stdout: Stream::default(),
                    stderr: Stream::default(),
                },
            }),
        })
        .collect();
    Suite {
        id: LIFECYCLE_SUITE.into(),
        title: format!("Lifecycle of {}", spec.id),
        title_zh: format!("{} 生命周期", spec.id),
        component: spec.kind.clone(),
        version: String::new(),
        description: String::new(),
        description_zh: String::new(),
        cases,
        source: Source::new(format!("(lifecycle of component {})", spec.id), ""),
    }
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
