//! What a plan says about a target: its fields as written ([`TargetFields`]), checked and
//! parsed once into a typed [`TargetConfig`] ([`parse`]: one variant per kind, the arch and the
//! accelerator already parsed), and building the adapter for it ([`create`]).

use super::{LocalTarget, Target, TargetError};
use crate::image::Arch;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A target's fields as a plan's `[[target]]` writes them, already validated for syntax by the
/// harness. Relative paths have been resolved against the plan file's directory.
#[derive(Debug, Clone, Default)]
pub struct TargetFields {
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

/// A field of [`TargetFields`] that a target kind checks: what a [`ConfigProblem`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Kind,
    Arch,
    Host,
    Port,
    User,
    IdentityFile,
    SshOptions,
    Rootfs,
    Image,
    Kernel,
    Initrd,
    Disk,
    Firmware,
    Append,
    MemoryMb,
    Cpus,
    Accel,
    BootTimeout,
    ForwardPorts,
}

impl Field {
    /// The field's name in a plan.
    pub fn name(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Arch => "arch",
            Field::Host => "host",
            Field::Port => "port",
            Field::User => "user",
            Field::IdentityFile => "identity_file",
            Field::SshOptions => "ssh_options",
            Field::Rootfs => "rootfs",
            Field::Image => "image",
            Field::Kernel => "kernel",
            Field::Initrd => "initrd",
            Field::Disk => "disk",
            Field::Firmware => "firmware",
            Field::Append => "append",
            Field::MemoryMb => "memory_mb",
            Field::Cpus => "cpus",
            Field::Accel => "accel",
            Field::BootTimeout => "boot_timeout",
            Field::ForwardPorts => "forward_ports",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A problem with a target's configuration that only the adapter can see: (field, message).
pub type ConfigProblem = (Field, String);

/// A target, checked: what [`create`] builds the adapter from.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub id: String,
    /// Environment variables set for every command on this target.
    pub env: BTreeMap<String, String>,
    pub kind: KindConfig,
}

/// What is particular to each target kind.
#[derive(Debug, Clone)]
pub enum KindConfig {
    Local,
    Ssh(SshConfig),
    QemuUser(QemuUserConfig),
    QemuSystem(QemuSystemConfig),
}

/// An `ssh` target.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub ssh_options: Vec<String>,
    /// The architecture the machine must report.
    pub arch: Option<Arch>,
}

/// A `qemu-user` target.
#[derive(Debug, Clone)]
pub struct QemuUserConfig {
    pub arch: Arch,
    pub rootfs: PathBuf,
}

/// A `qemu-system` target.
#[derive(Debug, Clone)]
pub struct QemuSystemConfig {
    pub arch: Arch,
    pub accel: AccelChoice,
    pub guest: GuestSource,
    /// Added to (image) or replacing (own kernel) the kernel command line.
    pub append: Option<String>,
    pub memory_mb: Option<u32>,
    pub cpus: Option<u32>,
    pub boot_timeout: Option<Duration>,
    pub forward_ports: Vec<u16>,
    pub ssh_options: Vec<String>,
}

/// `accel` of a `qemu-system` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when the probe boot works (x86_64 guests on an x86_64 host), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// What a `qemu-system` guest boots.
#[derive(Debug, Clone)]
pub enum GuestSource {
    /// An image of `adaptest image build` (a name or a directory).
    Image(String),
    /// The center's own kernel and/or disk.
    Own(OwnGuest),
}

/// A guest of the center's own: at least a kernel or a disk, and the key that logs in.
#[derive(Debug, Clone)]
pub struct OwnGuest {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    pub firmware: Option<PathBuf>,
    pub user: Option<String>,
    pub identity_file: PathBuf,
    pub port: Option<u16>,
}

/// Where a target may keep files: the run directory and a cache shared across runs.
#[derive(Debug, Clone)]
pub struct TargetContext {
    pub run_dir: PathBuf,
    /// `$ADAPTEST_CACHE` or `~/.cache/adaptest`: built images, base overlays.
    pub cache_dir: PathBuf,
}

impl TargetConfig {
    /// The kind as written in a plan (`local`, `ssh`, …).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            KindConfig::Local => "local",
            KindConfig::Ssh(_) => "ssh",
            KindConfig::QemuUser(_) => "qemu-user",
            KindConfig::QemuSystem(_) => "qemu-system",
        }
    }
}

impl TargetFields {
    /// Whether the plan set the kind-specific field `field`.
    fn is_set(&self, field: Field) -> bool {
        match field {
            Field::Kind => true,
            Field::Arch => self.arch.is_some(),
            Field::Host => self.host.is_some(),
            Field::Port => self.port.is_some(),
            Field::User => self.user.is_some(),
            Field::IdentityFile => self.identity_file.is_some(),
            Field::SshOptions => !self.ssh_options.is_empty(),
            Field::Rootfs => self.rootfs.is_some(),
            Field::Image => self.image.is_some(),
            Field::Kernel => self.kernel.is_some(),
            Field::Initrd => self.initrd.is_some(),
            Field::Disk => self.disk.is_some(),
            Field::Firmware => self.firmware.is_some(),
            Field::Append => self.append.is_some(),
            Field::MemoryMb => self.memory_mb.is_some(),
            Field::Cpus => self.cpus.is_some(),
            Field::Accel => self.accel.is_some(),
            Field::BootTimeout => self.boot_timeout.is_some(),
            Field::ForwardPorts => !self.forward_ports.is_empty(),
        }
    }

    /// A problem for each of `fields` the plan set, though it belongs to another target kind
    /// (`article` is `a` or `an`, for the message).
    pub(crate) fn foreign_fields(&self, article: &str, fields: &[Field]) -> Vec<ConfigProblem> {
        fields
            .iter()
            .filter(|f| self.is_set(**f))
            .map(|&f| {
                let message = format!("`{f}` does not apply to {article} `{}` target", self.kind);
                (f, message)
            })
            .collect()
    }
}

/// Check the kind-specific fields of a target (which are required, which make no sense) and
/// parse them: every problem, or the typed configuration.
pub fn parse(fields: &TargetFields) -> Result<TargetConfig, Vec<ConfigProblem>> {
    let kind = match fields.kind.as_str() {
        "local" => {
            let out = fields.foreign_fields(
                "a",
                &[Field::Host, Field::Rootfs, Field::Image, Field::Kernel],
            );
            if !out.is_empty() {
                return Err(out);
            }
            KindConfig::Local
        }
        "ssh" => KindConfig::Ssh(super::ssh::parse(fields)?),
        #[cfg(target_os = "linux")]
        "qemu-user" => KindConfig::QemuUser(super::qemu_user::parse(fields)?),
        #[cfg(target_os = "linux")]
        "qemu-system" => KindConfig::QemuSystem(super::qemu_system::parse(fields)?),
        other => {
            return Err(vec![(
                Field::Kind,
                format!("unknown or unsupported target kind `{other}`"),
            )]);
        }
    };
    Ok(TargetConfig {
        id: fields.id.clone(),
        env: fields.env.clone(),
        kind,
    })
}

/// The problems [`parse`] finds (none: the target is valid).
pub fn validate(fields: &TargetFields) -> Vec<ConfigProblem> {
    parse(fields).err().unwrap_or_default()
}

/// Build the adapter for a target configuration.
pub fn create(cfg: &TargetConfig, _ctx: &TargetContext) -> Result<Arc<dyn Target>, TargetError> {
    match &cfg.kind {
        KindConfig::Local => Ok(Arc::new(LocalTarget::new(cfg.id.clone()))),
        KindConfig::Ssh(ssh) => Ok(Arc::new(super::ssh::create(cfg, ssh)?)),
        #[cfg(target_os = "linux")]
        KindConfig::QemuUser(q) => Ok(Arc::new(super::qemu_user::create(cfg, q))),
        #[cfg(target_os = "linux")]
        KindConfig::QemuSystem(q) => Ok(Arc::new(super::qemu_system::create(cfg, q, _ctx)?)),
        #[cfg(not(target_os = "linux"))]
        _ => Err(TargetError::Unreachable {
            target: cfg.id.clone(),
            reason: format!(
                "target kind `{}` is not supported by this build",
                cfg.kind_name()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kind: &str, f: impl FnOnce(&mut TargetFields)) -> TargetFields {
        let mut t = TargetFields {
            id: "t".into(),
            kind: kind.into(),
            ..TargetFields::default()
        };
        f(&mut t);
        t
    }

    /// Arch aliases and the accelerator are parsed once, here: `create` gets them typed.
    #[cfg(target_os = "linux")]
    #[test]
    fn parsing_types_the_arch_and_the_accel_once() {
        let cfg = parse(&fields("qemu-system", |t| {
            t.arch = Some("arm64".into());
            t.image = Some("debian-bookworm-arm64".into());
            t.accel = Some("tcg".into());
        }))
        .expect("valid");
        let KindConfig::QemuSystem(q) = &cfg.kind else {
            panic!("{cfg:?}");
        };
        assert_eq!((q.arch, q.accel), (Arch::Aarch64, AccelChoice::Tcg));
        assert!(matches!(&q.guest, GuestSource::Image(i) if i == "debian-bookworm-arm64"));
        assert_eq!(cfg.kind_name(), "qemu-system");
        let KindConfig::QemuUser(u) = parse(&fields("qemu-user", |t| {
            t.arch = Some("loong64".into());
            t.rootfs = Some("/".into());
        }))
        .expect("valid")
        .kind
        else {
            panic!("not qemu-user");
        };
        assert_eq!(u.arch, Arch::Loongarch64);
    }

    #[test]
    fn problems_name_their_field() {
        let problems = parse(&fields("local", |t| t.host = Some("h".into()))).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, Field::Host);
        assert_eq!(problems[0].1, "`host` does not apply to a `local` target");
        let unknown = parse(&fields("vax", |_| {})).unwrap_err();
        assert_eq!(unknown[0].0.name(), "kind");
        let KindConfig::Ssh(s) = parse(&fields("ssh", |t| {
            t.host = Some("example.invalid".into());
            t.arch = Some("amd64".into());
        }))
        .expect("valid")
        .kind
        else {
            panic!("not ssh");
        };
        assert_eq!(
            (s.host.as_str(), s.arch),
            ("example.invalid", Some(Arch::X86_64))
        );
    }
}
