//! What a plan says about a target, and building the adapter for it.

use super::{LocalTarget, Target, TargetError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A target as configured in a plan (`[[target]]`), already validated for syntax by the harness.
/// Relative paths have been resolved against the plan file's directory.
#[derive(Debug, Clone, Default)]
pub struct TargetConfig {
    pub id: String,
    /// `local`, `ssh`, `qemu-user`, `qemu-system`.
    pub kind: String,
    /// The architecture the target is expected to have (`qemu-*`: the one to emulate).
    pub arch: Option<String>,
    // --- ssh
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    /// Extra `-o Key=Value` options for ssh.
    pub ssh_options: Vec<String>,
    // --- qemu-user
    /// A root file system or sysroot directory.
    pub rootfs: Option<PathBuf>,
    // --- qemu-system
    /// A name from `adaptest image build`, or a path to an image directory.
    pub image: Option<String>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    pub firmware: Option<PathBuf>,
    pub append: Option<String>,
    pub memory_mb: Option<u32>,
    pub cpus: Option<u32>,
    /// `auto` (probe KVM with a real boot, else TCG), `kvm` or `tcg`.
    pub accel: Option<String>,
    pub boot_timeout: Option<Duration>,
    /// Guest TCP ports to forward to the harness (components add theirs automatically).
    pub forward_ports: Vec<u16>,
    // --- any kind
    /// Environment variables set for every command on this target.
    pub env: BTreeMap<String, String>,
}

/// Where a target may keep files: the run directory and a cache shared across runs.
#[derive(Debug, Clone)]
pub struct TargetContext {
    pub run_dir: PathBuf,
    /// `$ADAPTEST_CACHE` or `~/.cache/adaptest`: built images, base overlays.
    pub cache_dir: PathBuf,
}

/// A problem with a target's configuration that only the adapter can see: (field, message).
pub type ConfigProblem = (&'static str, String);

impl TargetConfig {
    /// Whether the plan set the kind-specific field `field`.
    fn is_set(&self, field: &str) -> bool {
        match field {
            "host" => self.host.is_some(),
            "port" => self.port.is_some(),
            "user" => self.user.is_some(),
            "identity_file" => self.identity_file.is_some(),
            "ssh_options" => !self.ssh_options.is_empty(),
            "rootfs" => self.rootfs.is_some(),
            "image" => self.image.is_some(),
            "kernel" => self.kernel.is_some(),
            "initrd" => self.initrd.is_some(),
            "disk" => self.disk.is_some(),
            other => unreachable!("not a kind-specific target field: {other}"),
        }
    }

    /// A problem for each of `fields` the plan set, though it belongs to another target kind
    /// (`article` is `a` or `an`, for the message).
    pub(crate) fn foreign_fields(
        &self,
        article: &str,
        fields: &[&'static str],
    ) -> Vec<ConfigProblem> {
        fields
            .iter()
            .filter(|f| self.is_set(f))
            .map(|&f| {
                let message = format!("`{f}` does not apply to {article} `{}` target", self.kind);
                (f, message)
            })
            .collect()
    }
}

/// Check the kind-specific fields of a target (which are required, which make no sense).
pub fn validate(cfg: &TargetConfig) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    match cfg.kind.as_str() {
        "local" => out.extend(cfg.foreign_fields("a", &["host", "rootfs", "image", "kernel"])),
        "ssh" => out.extend(super::ssh::validate(cfg)),
        #[cfg(target_os = "linux")]
        "qemu-user" => out.extend(super::qemu_user::validate(cfg)),
        #[cfg(target_os = "linux")]
        "qemu-system" => out.extend(super::qemu_system::validate(cfg)),
        other => out.push((
            "kind",
            format!("unknown or unsupported target kind `{other}`"),
        )),
    }
    out
}

/// Build the adapter for a validated target configuration.
pub fn create(cfg: &TargetConfig, _ctx: &TargetContext) -> Result<Arc<dyn Target>, TargetError> {
    match cfg.kind.as_str() {
        "local" => Ok(Arc::new(LocalTarget::new(cfg.id.clone()))),
        "ssh" => Ok(Arc::new(super::ssh::create(cfg)?)),
        #[cfg(target_os = "linux")]
        "qemu-user" => Ok(Arc::new(super::qemu_user::create(cfg, _ctx))),
        #[cfg(target_os = "linux")]
        "qemu-system" => Ok(Arc::new(super::qemu_system::create(cfg, _ctx)?)),
        other => Err(TargetError::Unreachable {
            target: cfg.id.clone(),
            reason: format!("target kind `{other}` is not supported by this build"),
        }),
    }
}
