//! The plan file as TOML deserialises it, before validation (spans kept for diagnostics).

use super::Combination;
use super::resolve_path;
use crate::spec::diag::{Source, SpecError};
use crate::spec::duration::parse_duration;
use crate::spec::glob::glob_match;
use adaptest_adapters::target::{Field, TargetFields};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanFile {
    #[serde(default)]
    pub(super) product: ProductSpec,
    #[serde(default, rename = "target")]
    pub(super) targets: Vec<TargetSpecRaw>,
    #[serde(default, rename = "component")]
    pub(super) components: Vec<ComponentSpecRaw>,
    #[serde(default)]
    pub(super) matrix: Vec<Spanned<MatrixSpec>>,
    #[serde(default, rename = "waiver")]
    pub(super) waivers: Vec<Spanned<WaiverSpecRaw>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProductSpec {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) version: String,
    #[serde(default)]
    pub(super) vendor: String,
    /// The report cover: the adaptation center, its report number, tester and reviewer.
    #[serde(default)]
    pub(super) center: String,
    #[serde(default)]
    pub(super) report_number: String,
    #[serde(default)]
    pub(super) tester: String,
    #[serde(default)]
    pub(super) reviewer: String,
}

/// `[[waiver]]`: a known failure accepted until a date. Every field is optional here so that
/// a missing one is reported with the others (and with its table's position).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaiverSpecRaw {
    pub(super) case: Option<Spanned<String>>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) component: Option<Spanned<String>>,
    pub(super) reason: Option<Spanned<String>>,
    pub(super) owner: Option<Spanned<String>>,
    /// A TOML date (`2027-03-31`) or a string holding one.
    pub(super) expires: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetSpecRaw {
    pub(super) id: Spanned<String>,
    pub(super) kind: Spanned<String>,
    /// How many combinations may run on this target at once.
    pub(super) slots: Option<Spanned<u32>>,
    /// Case timeouts are multiplied by this (default: the target kind's own, e.g. 4 for a
    /// qemu-system guest under TCG).
    pub(super) timeout_factor: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) arch: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) identity_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ssh_options: Vec<String>,
    pub(super) rootfs: Option<Spanned<String>>,
    pub(super) image: Option<Spanned<String>>,
    pub(super) kernel: Option<Spanned<String>>,
    pub(super) initrd: Option<Spanned<String>>,
    pub(super) disk: Option<Spanned<String>>,
    pub(super) firmware: Option<Spanned<String>>,
    pub(super) append: Option<Spanned<String>>,
    pub(super) memory_mb: Option<Spanned<u32>>,
    pub(super) cpus: Option<Spanned<u32>>,
    pub(super) accel: Option<Spanned<String>>,
    pub(super) boot_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) forward_ports: Vec<u16>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
}

impl TargetSpecRaw {
    /// The span of a field (for problems the adapter reports), else the id's (a field that is
    /// not spanned, or a required one the plan left out).
    pub(super) fn span_of(&self, field: Field) -> Range<usize> {
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
    pub(super) fn to_fields(
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComponentSpecRaw {
    pub(super) id: Spanned<String>,
    pub(super) kind: Spanned<String>,
    /// The version the vendor declares (the adapter may also detect one).
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) host: Option<String>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) user: Option<String>,
    /// Name of an environment variable holding the password (never the password itself).
    pub(super) password_env: Option<Spanned<String>>,
    /// A file holding the password (first line).
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) database: Option<String>,
    pub(super) path: Option<String>,
    pub(super) cli: Option<String>,
    /// More `onlyif`/`skipif` labels for `sql` cases (as the sqllogictest CLI's `--label`).
    #[serde(default)]
    pub(super) labels: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) options: BTreeMap<String, toml::Value>,
    pub(super) lifecycle: Option<LifecycleRaw>,
    pub(super) resources: Option<ResourcesRaw>,
    pub(super) recovery: Option<RecoveryRaw>,
}

/// `[component.recovery]`: the recovery item (SIGKILL the main process, see it come back).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoveryRaw {
    pub(super) pid_file: Spanned<String>,
    pub(super) restart: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) prepare: Option<String>,
    pub(super) check: Option<String>,
}

/// `[component.resources]`: how to find the component's processes on the target, how often
/// to sample them, and the thresholds of the resource-profile item.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesRaw {
    pub(super) pid_file: Option<String>,
    pub(super) process: Option<String>,
    pub(super) systemd_unit: Option<String>,
    pub(super) sample_interval: Option<Spanned<String>>,
    pub(super) idle_window: Option<Spanned<String>>,
    pub(super) cpu_idle_max: Option<Spanned<String>>,
    pub(super) cpu_max: Option<Spanned<String>>,
    pub(super) rss_max: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LifecycleRaw {
    pub(super) install: Option<String>,
    pub(super) start: Option<String>,
    pub(super) ready: Option<String>,
    pub(super) ready_timeout: Option<Spanned<String>>,
    pub(super) stop: Option<String>,
    pub(super) uninstall: Option<String>,
    /// Check what `uninstall` leaves behind (implied by any `residue_*` field).
    pub(super) residue: Option<bool>,
    pub(super) residue_roots: Option<Vec<String>>,
    pub(super) residue_passwd: Option<String>,
    pub(super) residue_group: Option<String>,
    #[serde(default)]
    pub(super) residue_allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatrixSpec {
    pub(super) targets: Vec<Spanned<String>>,
    pub(super) components: Vec<Spanned<String>>,
    pub(super) suites: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<Selector>>,
    #[serde(default)]
    pub(super) include: Vec<Spanned<Selector>>,
}

/// Glob patterns selecting combinations; an absent field matches everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Selector {
    pub(super) target: Option<String>,
    pub(super) component: Option<String>,
    pub(super) suite: Option<String>,
}

impl Selector {
    pub(super) fn matches(&self, c: &Combination) -> bool {
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
