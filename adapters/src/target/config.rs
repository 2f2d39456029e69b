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

/// Check the kind-specific fields of a target (which are required, which make no sense).
pub fn validate(cfg: &TargetConfig) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    match cfg.kind.as_str() {
        "local" => {
            for (field, set) in [
                ("host", cfg.host.is_some()),
                ("rootfs", cfg.rootfs.is_some()),
                ("image", cfg.image.is_some()),
                ("kernel", cfg.kernel.is_some()),
            ] {
                if set {
                    out.push((
                        field,
                        format!("`{field}` does not apply to a `local` target"),
                    ));
                }
            }
        }
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
