//! The plan's fields of a `qemu-system` target: checked and parsed without touching the world
//! ([`parse`]), then resolved (image found, paths absolute) into a [`Setup`] ([`create`]).

use super::machine::Root;
use super::{QemuSystemTarget, State};
use crate::image::{self, Arch};
use crate::target::{
    AccelChoice, ConfigProblem, Field, GuestSource, OwnGuest, QemuSystemConfig, TargetConfig,
    TargetContext, TargetError, TargetFields,
};
use crate::text::error_chain;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;

const DEFAULT_MEMORY_MB: u32 = 512;
/// QEMU 7.2's loongarch64 `virt` machine refuses less than 1 GiB.
const LOONGARCH_MIN_MEMORY_MB: u32 = 1024;
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const GUEST_SSH_PORT: u16 = 22;

/// A target's configuration, resolved (image found, paths absolute).
#[derive(Debug, Clone)]
pub(super) struct Setup {
    pub(super) arch: Arch,
    pub(super) accel: AccelChoice,
    pub(super) memory_mb: u32,
    pub(super) cpus: u32,
    pub(super) kernel: Option<PathBuf>,
    pub(super) initrd: Option<PathBuf>,
    pub(super) append: String,
    pub(super) firmware: Option<PathBuf>,
    pub(super) root: Root,
    pub(super) user: String,
    pub(super) key: PathBuf,
    /// The guest's host key line; `None`: accept the first key seen (own disks).
    pub(super) host_key: Option<String>,
    pub(super) ssh_options: Vec<String>,
    pub(super) ssh_port: u16,
    pub(super) forward_ports: Vec<u16>,
    pub(super) boot_timeout: Duration,
    /// `<name>-<hash>` of the image, when booted from one.
    pub(super) image: Option<String>,
    pub(super) env: Vec<(String, String)>,
}

/// Check and parse the fields of a `qemu-system` target (no file system access).
pub(in crate::target) fn parse(cfg: &TargetFields) -> Result<QemuSystemConfig, Vec<ConfigProblem>> {
    let mut out: Vec<ConfigProblem> = Vec::new();
    let arch = match cfg.arch.as_deref() {
        None => {
            out.push((
                Field::Arch,
                "a `qemu-system` target needs `arch` (x86_64, aarch64 or loongarch64)".into(),
            ));
            None
        }
        Some(a) => {
            let parsed = Arch::parse(a);
            if parsed.is_none() {
                out.push((
                    Field::Arch,
                    format!("unknown arch `{a}`: expected x86_64, aarch64 or loongarch64"),
                ));
            }
            parsed
        }
    };
    out.extend(cfg.foreign_fields("a", &[Field::Host, Field::Rootfs]));
    let guest = match cfg.image.as_deref() {
        Some(img) => {
            if img.trim().is_empty() {
                out.push((
                    Field::Image,
                    "`image` must name an image or a directory".into(),
                ));
            }
            for (field, set) in [
                (Field::Kernel, cfg.kernel.is_some()),
                (Field::Initrd, cfg.initrd.is_some()),
                (Field::Disk, cfg.disk.is_some()),
                (Field::Firmware, cfg.firmware.is_some()),
                (Field::User, cfg.user.is_some()),
                (Field::IdentityFile, cfg.identity_file.is_some()),
                (Field::Port, cfg.port.is_some()),
            ] {
                if set {
                    out.push((
                        field,
                        format!(
                            "`{field}` comes from the image; remove it, or drop `image` to boot \
                             a kernel/disk of your own"
                        ),
                    ));
                }
            }
            Some(GuestSource::Image(img.to_owned()))
        }
        None => {
            if cfg.kernel.is_none() && cfg.disk.is_none() {
                out.push((
                    Field::Image,
                    "a `qemu-system` target needs `image` (from `adaptest image build`), or a \
                     `kernel` and/or `disk` of its own"
                        .into(),
                ));
            }
            if cfg.initrd.is_some() && cfg.kernel.is_none() {
                out.push((Field::Initrd, "`initrd` needs a `kernel`".into()));
            }
            if cfg.append.is_some() && cfg.kernel.is_none() {
                out.push((
                    Field::Append,
                    "`append` is the kernel command line: it needs a `kernel`".into(),
                ));
            }
            if cfg.identity_file.is_none() {
                out.push((
                    Field::IdentityFile,
                    "a `qemu-system` target without `image` needs `identity_file`: the SSH key \
                     that logs in to the guest"
                        .into(),
                ));
            }
            if let Some(a) = arch
                && a != Arch::X86_64
                && cfg.kernel.is_none()
                && cfg.disk.is_some()
                && cfg.firmware.is_none()
            {
                out.push((
                    Field::Firmware,
                    format!(
                        "booting a disk without `kernel` on {a} needs UEFI `firmware` (a \
                         QEMU_EFI.fd built for {a})"
                    ),
                ));
            }
            cfg.identity_file.as_ref().map(|key| {
                GuestSource::Own(OwnGuest {
                    kernel: cfg.kernel.clone(),
                    initrd: cfg.initrd.clone(),
                    disk: cfg.disk.clone(),
                    firmware: cfg.firmware.clone(),
                    user: cfg.user.clone(),
                    identity_file: key.clone(),
                    port: cfg.port,
                })
            })
        }
    };
    if cfg.port == Some(0) {
        out.push((Field::Port, "port 0 is not a port".into()));
    }
    let accel = match cfg.accel.as_deref() {
        None | Some("auto") => Some(AccelChoice::Auto),
        Some("tcg") => Some(AccelChoice::Tcg),
        Some("kvm") => {
            if let Some(a) = arch
                && Some(a) != Arch::host()
            {
                out.push((
                    Field::Accel,
                    format!(
                        "`kvm` runs only guests of this host's architecture ({}); use `tcg` or \
                         `auto` for {a}",
                        std::env::consts::ARCH
                    ),
                ));
            }
            Some(AccelChoice::Kvm)
        }
        Some(other) => {
            out.push((
                Field::Accel,
                format!("unknown accel `{other}`: expected auto, kvm or tcg"),
            ));
            None
        }
    };
    if let Some(m) = cfg.memory_mb {
        if !(128..=65536).contains(&m) {
            out.push((
                Field::MemoryMb,
                format!("memory_mb = {m}: expected 128 to 65536"),
            ));
        } else if arch == Some(Arch::Loongarch64) && m < LOONGARCH_MIN_MEMORY_MB {
            out.push((
                Field::MemoryMb,
                format!(
                    "memory_mb = {m}: QEMU's loongarch64 `virt` machine needs at least \
                     {LOONGARCH_MIN_MEMORY_MB}"
                ),
            ));
        }
    }
    if let Some(c) = cfg.cpus
        && !(1..=64).contains(&c)
    {
        out.push((Field::Cpus, format!("cpus = {c}: expected 1 to 64")));
    }
    if cfg.boot_timeout == Some(Duration::ZERO) {
        out.push((
            Field::BootTimeout,
            "boot_timeout must be longer than 0s".into(),
        ));
    }
    if cfg.forward_ports.contains(&0) {
        out.push((Field::ForwardPorts, "port 0 cannot be forwarded".into()));
    }
    match (arch, accel, guest) {
        (Some(arch), Some(accel), Some(guest)) if out.is_empty() => Ok(QemuSystemConfig {
            arch,
            accel,
            guest,
            append: cfg.append.clone(),
            memory_mb: cfg.memory_mb,
            cpus: cfg.cpus,
            boot_timeout: cfg.boot_timeout,
            forward_ports: cfg.forward_ports.clone(),
            ssh_options: cfg.ssh_options.clone(),
        }),
        _ => Err(out),
    }
}

/// The adapter for a `qemu-system` target: finds its image (or files).
pub(in crate::target) fn create(
    cfg: &TargetConfig,
    q: &QemuSystemConfig,
    ctx: &TargetContext,
) -> Result<QemuSystemTarget, TargetError> {
    let unreachable = |reason: String| TargetError::Unreachable {
        target: cfg.id.clone(),
        reason,
    };
    let arch = q.arch;
    let user_append = q.append.clone().unwrap_or_default();
    let wants_9p = user_append
        .split_whitespace()
        .any(|w| w == "adaptest.root=9p");
    let (kernel, initrd, firmware, root, append, user, key, host_key, image_id, ssh_port) =
        match &q.guest {
            GuestSource::Image(spec) => {
                let img = image::resolve(spec, &ctx.cache_dir)
                    .map_err(|e| unreachable(error_chain(&e)))?;
                if img.manifest.arch != arch {
                    return Err(unreachable(format!(
                        "image {} is {}, but the target's arch is {arch}",
                        img.id(),
                        img.manifest.arch
                    )));
                }
                let root = if wants_9p {
                    Root::NineP(img.rootfs())
                } else {
                    Root::Disk {
                        base: img.disk(),
                        format: img.manifest.disk_format.clone(),
                    }
                };
                let mut append = format!("console={} panic=-1", img.manifest.console);
                if !user_append.contains("adaptest.root=") {
                    append.push_str(" adaptest.root=disk");
                }
                if !user_append.is_empty() {
                    append.push(' ');
                    append.push_str(&user_append);
                }
                let host_key = img.host_key().map_err(|e| unreachable(error_chain(&e)))?;
                (
                    Some(img.kernel()),
                    Some(img.initrd()),
                    None,
                    root,
                    append,
                    img.manifest.ssh_user.clone(),
                    img.ssh_key(),
                    Some(host_key),
                    Some(img.id()),
                    GUEST_SSH_PORT,
                )
            }
            GuestSource::Own(own) => {
                let root = match &own.disk {
                    Some(d) => Root::Disk {
                        base: d.clone(),
                        format: disk_format(d),
                    },
                    None => Root::None,
                };
                let append = if user_append.is_empty() {
                    format!("console={} panic=-1", arch.console())
                } else {
                    user_append.clone()
                };
                (
                    own.kernel.clone(),
                    own.initrd.clone(),
                    own.firmware.clone(),
                    root,
                    append,
                    own.user.clone().unwrap_or_else(|| "root".into()),
                    own.identity_file.clone(),
                    None,
                    None,
                    own.port.unwrap_or(GUEST_SSH_PORT),
                )
            }
        };
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mut forward_ports: Vec<u16> = Vec::new();
    for p in std::iter::once(ssh_port).chain(q.forward_ports.iter().copied()) {
        if !forward_ports.contains(&p) {
            forward_ports.push(p);
        }
    }
    let setup = Setup {
        arch,
        accel: q.accel,
        memory_mb: q.memory_mb.unwrap_or(if arch == Arch::Loongarch64 {
            LOONGARCH_MIN_MEMORY_MB
        } else {
            DEFAULT_MEMORY_MB
        }),
        cpus: q.cpus.unwrap_or(host_cpus.clamp(1, 2)),
        kernel: kernel.map(absolute),
        initrd: initrd.map(absolute),
        append,
        firmware: firmware.map(absolute),
        root: match root {
            Root::Disk { base, format } => Root::Disk {
                base: absolute(base),
                format,
            },
            Root::NineP(d) => Root::NineP(absolute(d)),
            Root::None => Root::None,
        },
        user,
        key: absolute(key),
        host_key,
        ssh_options: q.ssh_options.clone(),
        ssh_port,
        forward_ports,
        boot_timeout: q.boot_timeout.unwrap_or(DEFAULT_BOOT_TIMEOUT),
        image: image_id,
        env: cfg
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    Ok(QemuSystemTarget {
        id: cfg.id.clone(),
        setup,
        cache_dir: ctx.cache_dir.clone(),
        dir: absolute(ctx.run_dir.join("targets").join(&cfg.id)),
        state: Mutex::new(State::Idle),
    })
}

/// `qcow2` when the file starts with the qcow2 magic, else `raw`.
fn disk_format(p: &Path) -> String {
    let mut magic = [0u8; 4];
    let is_qcow2 = std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"QFI\xfb";
    if is_qcow2 { "qcow2" } else { "raw" }.into()
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() || p.as_os_str().is_empty() {
        p
    } else {
        std::env::current_dir().map_or_else(|_| p.clone(), |d| d.join(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: impl FnOnce(&mut TargetFields)) -> TargetFields {
        let mut c = TargetFields {
            id: "vm".into(),
            kind: "qemu-system".into(),
            arch: Some("aarch64".into()),
            image: Some("debian-bookworm-arm64".into()),
            ..TargetFields::default()
        };
        f(&mut c);
        c
    }

    fn validate(c: &TargetFields) -> Vec<ConfigProblem> {
        parse(c).err().unwrap_or_default()
    }

    fn fields(c: &TargetFields) -> Vec<&'static str> {
        validate(c).into_iter().map(|(f, _)| f.name()).collect()
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            validate(&cfg(|_| {})).is_empty(),
            "{:?}",
            validate(&cfg(|_| {}))
        );
        assert_eq!(fields(&cfg(|c| c.arch = None)), ["arch"]);
        assert_eq!(fields(&cfg(|c| c.arch = Some("riscv64".into()))), ["arch"]);
        assert_eq!(fields(&cfg(|c| c.image = None)), ["image", "identity_file"]);
        assert_eq!(fields(&cfg(|c| c.kernel = Some("/k".into()))), ["kernel"]);
        assert_eq!(fields(&cfg(|c| c.accel = Some("hvf".into()))), ["accel"]);
        assert_eq!(fields(&cfg(|c| c.accel = Some("kvm".into()))), ["accel"]);
        assert_eq!(fields(&cfg(|c| c.memory_mb = Some(64))), ["memory_mb"]);
        assert_eq!(fields(&cfg(|c| c.cpus = Some(0))), ["cpus"]);
        assert_eq!(
            fields(&cfg(|c| c.forward_ports = vec![0])),
            ["forward_ports"]
        );
        assert_eq!(fields(&cfg(|c| c.host = Some("h".into()))), ["host"]);
        let own = cfg(|c| {
            c.arch = Some("loongarch64".into());
            c.image = None;
            c.disk = Some("/d.qcow2".into());
            c.identity_file = Some("/k".into());
        });
        assert_eq!(fields(&own), ["firmware"]);
        let own_kernel = cfg(|c| {
            c.arch = Some("loong64".into());
            c.image = None;
            c.kernel = Some("/vmlinuz".into());
            c.initrd = Some("/initrd".into());
            c.disk = Some("/d.qcow2".into());
            c.identity_file = Some("/k".into());
        });
        assert!(validate(&own_kernel).is_empty());
        let small = TargetFields {
            memory_mb: Some(512),
            ..own_kernel
        };
        assert_eq!(fields(&small), ["memory_mb"]);
    }

    #[test]
    fn disk_format_by_magic() {
        let p = std::env::temp_dir().join(format!("adaptest-fmt-{}", std::process::id()));
        std::fs::write(&p, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(disk_format(&p), "qcow2");
        std::fs::write(&p, b"\0\0\0\0").unwrap();
        assert_eq!(disk_format(&p), "raw");
        std::fs::remove_file(&p).unwrap();
    }
}
