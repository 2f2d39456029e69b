//! [`QemuSystemTarget`]: a guest booted under QEMU system emulation — x86_64 (`q35`, KVM when a
//! probe boot proves it works, else TCG), aarch64 (`virt`, cortex-a57) or loongarch64 (`virt`,
//! la464) — from an image of `adaptest image build` or from a kernel/initrd/disk of the center's
//! own.
//!
//! - **Boot**: kernel + initrd with the root on an ext4 disk (default) or on the image's
//!   read-only 9p export (`append = "adaptest.root=9p"`). A disk is always used through a qcow2
//!   overlay in the run directory, so base images never change. The serial console goes to
//!   `console.log` in the run directory; a boot that times out fails with its last lines.
//! - **Warm start** ([`warm`]): the first boot of a machine saves its state (QMP `migrate` to a
//!   file, guest paused) in the cache; later runs restore it with `-incoming` instead of booting.
//! - **Commands** go over SSH (the image's generated key, its host key pinned) through a
//!   `hostfwd` port, with the [`SshTarget`](super::SshTarget) machinery, so exec semantics are
//!   exactly those of `ssh` targets. Ports in `forward_ports` get a QEMU `hostfwd` too (the
//!   guest service must listen on 0.0.0.0); other ports reach the guest's loopback through SSH.
//! - **Stop**: QMP `quit`, then SIGKILL by PID as a last resort; the overlay is removed unless
//!   `ADAPTEST_QEMU_KEEP_OVERLAY=1`.
//!
//! Files of a run: `<run>/targets/<id>/` holds `console.log` (after a warm start: only what
//! came after the restore; the boot's is `console-boot.log`), `qemu.pid`, `qemu.cmdline`,
//! `qemu.stderr`, `overlay.qcow2`, `known_hosts`. The QMP socket lives in a short private
//! directory under the system temp dir (unix socket paths are limited to 108 bytes).

mod kvm;
mod machine;
mod qmp;
mod warm;

use super::{
    ConfigProblem, ExecOutput, ExecRequest, SshTarget, Target, TargetConfig, TargetContext,
    TargetError,
};
use crate::env_probe::{environment_from, probe_request};
use crate::image::{self, Arch};
use adaptest_reports::Environment;
use machine::{Accel, Launch, Machine, Root};
use qmp::Qmp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

const DEFAULT_MEMORY_MB: u32 = 512;
/// QEMU 7.2's loongarch64 `virt` machine refuses less than 1 GiB.
const LOONGARCH_MIN_MEMORY_MB: u32 = 1024;
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// A restore that takes longer than this is abandoned for a cold boot.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(90);
/// Saving a guest's state to the cache.
const SAVE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `quit` may take before the process is killed.
const QUIT_GRACE: Duration = Duration::from_secs(10);
const GUEST_SSH_PORT: u16 = 22;
/// Console lines quoted in boot errors, and in errors of commands on a guest that died.
const BOOT_TAIL_LINES: usize = 30;
const DEAD_TAIL_LINES: usize = 4;

/// `accel` in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccelChoice {
    /// KVM when the probe boot works (x86_64 guests on an x86_64 host), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// A target's configuration, resolved (image found, paths absolute).
#[derive(Debug, Clone)]
struct Setup {
    arch: Arch,
    accel: AccelChoice,
    memory_mb: u32,
    cpus: u32,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: String,
    firmware: Option<PathBuf>,
    root: Root,
    user: String,
    key: PathBuf,
    /// The guest's host key line; `None`: accept the first key seen (own disks).
    host_key: Option<String>,
    ssh_options: Vec<String>,
    ssh_port: u16,
    forward_ports: Vec<u16>,
    boot_timeout: Duration,
    /// `<name>-<hash>` of the image, when booted from one.
    image: Option<String>,
    env: Vec<(String, String)>,
}

/// A `qemu-system` guest.
pub struct QemuSystemTarget {
    id: String,
    setup: Setup,
    cache_dir: PathBuf,
    dir: PathBuf,
    state: Mutex<State>,
}

enum State {
    Idle,
    Running(Arc<Guest>),
    Failed(String),
    Stopped,
}

/// A running guest and the way into it.
struct Guest {
    qemu: Qemu,
    ssh: SshTarget,
    /// Guest port → host port of the `hostfwd` rules given at launch.
    hostfwd: HashMap<u16, u16>,
    /// Addresses handed out by `connect_addr` for other ports (a `hostfwd` added at run time,
    /// or an SSH forward). The lock also serializes QMP use (one client at a time).
    dynamic: Mutex<HashMap<u16, SocketAddr>>,
    start: StartInfo,
    sock_dir: PathBuf,
    overlay: Option<PathBuf>,
}

/// How the guest came up (reported in its environment).
#[derive(Debug, Clone)]
struct StartInfo {
    /// `cold` (booted) or `warm` (restored from a saved state).
    mode: &'static str,
    /// From start to the first command possible (SSH login done).
    seconds: f64,
    /// From launching QEMU to sshd answering: the boot, or the restore.
    boot_seconds: f64,
    /// The SSH login (master connection).
    login_seconds: f64,
    /// A warm start whose saved state was made by this start (a cold boot plus a save).
    created_snapshot: bool,
    accel: Accel,
    accel_detail: String,
    machine: Machine,
    /// Why a warm start was not used, if it was wanted.
    note: Option<String>,
    /// For a warm start: how the restored state was made.
    snapshot: Option<warm::WarmMeta>,
}

impl std::fmt::Debug for QemuSystemTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuSystemTarget")
            .field("id", &self.id)
            .field("arch", &self.setup.arch)
            .field("image", &self.setup.image)
            .finish_non_exhaustive()
    }
}

/// Problems with the fields of a `qemu-system` target (no file system access).
pub(super) fn validate(cfg: &TargetConfig) -> Vec<ConfigProblem> {
    let mut out: Vec<ConfigProblem> = Vec::new();
    let arch = match cfg.arch.as_deref() {
        None => {
            out.push((
                "arch",
                "a `qemu-system` target needs `arch` (x86_64, aarch64 or loongarch64)".into(),
            ));
            None
        }
        Some(a) => {
            let parsed = Arch::parse(a);
            if parsed.is_none() {
                out.push((
                    "arch",
                    format!("unknown arch `{a}`: expected x86_64, aarch64 or loongarch64"),
                ));
            }
            parsed
        }
    };
    out.extend(cfg.foreign_fields("a", &["host", "rootfs"]));
    match cfg.image.as_deref() {
        Some(img) => {
            if img.trim().is_empty() {
                out.push(("image", "`image` must name an image or a directory".into()));
            }
            for (field, set) in [
                ("kernel", cfg.kernel.is_some()),
                ("initrd", cfg.initrd.is_some()),
                ("disk", cfg.disk.is_some()),
                ("firmware", cfg.firmware.is_some()),
                ("user", cfg.user.is_some()),
                ("identity_file", cfg.identity_file.is_some()),
                ("port", cfg.port.is_some()),
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
        }
        None => {
            if cfg.kernel.is_none() && cfg.disk.is_none() {
                out.push((
                    "image",
                    "a `qemu-system` target needs `image` (from `adaptest image build`), or a \
                     `kernel` and/or `disk` of its own"
                        .into(),
                ));
            }
            if cfg.initrd.is_some() && cfg.kernel.is_none() {
                out.push(("initrd", "`initrd` needs a `kernel`".into()));
            }
            if cfg.append.is_some() && cfg.kernel.is_none() {
                out.push((
                    "append",
                    "`append` is the kernel command line: it needs a `kernel`".into(),
                ));
            }
            if cfg.identity_file.is_none() {
                out.push((
                    "identity_file",
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
                    "firmware",
                    format!(
                        "booting a disk without `kernel` on {a} needs UEFI `firmware` (a \
                         QEMU_EFI.fd built for {a})"
                    ),
                ));
            }
        }
    }
    if cfg.port == Some(0) {
        out.push(("port", "port 0 is not a port".into()));
    }
    match cfg.accel.as_deref() {
        None | Some("auto") | Some("tcg") => {}
        Some("kvm") => {
            if let Some(a) = arch
                && Some(a) != Arch::host()
            {
                out.push((
                    "accel",
                    format!(
                        "`kvm` runs only guests of this host's architecture ({}); use `tcg` or \
                         `auto` for {a}",
                        std::env::consts::ARCH
                    ),
                ));
            }
        }
        Some(other) => out.push((
            "accel",
            format!("unknown accel `{other}`: expected auto, kvm or tcg"),
        )),
    }
    if let Some(m) = cfg.memory_mb {
        if !(128..=65536).contains(&m) {
            out.push((
                "memory_mb",
                format!("memory_mb = {m}: expected 128 to 65536"),
            ));
        } else if arch == Some(Arch::Loongarch64) && m < LOONGARCH_MIN_MEMORY_MB {
            out.push((
                "memory_mb",
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
        out.push(("cpus", format!("cpus = {c}: expected 1 to 64")));
    }
    if cfg.boot_timeout == Some(Duration::ZERO) {
        out.push(("boot_timeout", "boot_timeout must be longer than 0s".into()));
    }
    if cfg.forward_ports.contains(&0) {
        out.push(("forward_ports", "port 0 cannot be forwarded".into()));
    }
    out
}

/// The adapter for a validated `qemu-system` target: finds its image (or files).
pub(super) fn create(
    cfg: &TargetConfig,
    ctx: &TargetContext,
) -> Result<QemuSystemTarget, TargetError> {
    let unreachable = |reason: String| TargetError::Unreachable {
        target: cfg.id.clone(),
        reason,
    };
    let arch = cfg
        .arch
        .as_deref()
        .and_then(Arch::parse)
        .ok_or_else(|| unreachable("`arch` is missing or unknown".into()))?;
    let user_append = cfg.append.clone().unwrap_or_default();
    let wants_9p = user_append
        .split_whitespace()
        .any(|w| w == "adaptest.root=9p");
    let (kernel, initrd, root, append, user, key, host_key, image_id, ssh_port) =
        if let Some(spec) = &cfg.image {
            let img =
                image::resolve(spec, &ctx.cache_dir).map_err(|e| unreachable(crate_chain(&e)))?;
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
            let host_key = img.host_key().map_err(|e| unreachable(crate_chain(&e)))?;
            (
                Some(img.kernel()),
                Some(img.initrd()),
                root,
                append,
                img.manifest.ssh_user.clone(),
                img.ssh_key(),
                Some(host_key),
                Some(img.id()),
                GUEST_SSH_PORT,
            )
        } else {
            let root = match &cfg.disk {
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
                cfg.kernel.clone(),
                cfg.initrd.clone(),
                root,
                append,
                cfg.user.clone().unwrap_or_else(|| "root".into()),
                cfg.identity_file.clone().unwrap_or_default(),
                None,
                None,
                cfg.port.unwrap_or(GUEST_SSH_PORT),
            )
        };
    let accel = match cfg.accel.as_deref() {
        Some("kvm") => AccelChoice::Kvm,
        Some("tcg") => AccelChoice::Tcg,
        _ => AccelChoice::Auto,
    };
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mut forward_ports: Vec<u16> = Vec::new();
    for p in std::iter::once(ssh_port).chain(cfg.forward_ports.iter().copied()) {
        if !forward_ports.contains(&p) {
            forward_ports.push(p);
        }
    }
    let setup = Setup {
        arch,
        accel,
        memory_mb: cfg.memory_mb.unwrap_or(if arch == Arch::Loongarch64 {
            LOONGARCH_MIN_MEMORY_MB
        } else {
            DEFAULT_MEMORY_MB
        }),
        cpus: cfg.cpus.unwrap_or(host_cpus.clamp(1, 2)),
        kernel: kernel.map(absolute),
        initrd: initrd.map(absolute),
        append,
        firmware: cfg.firmware.clone().map(absolute),
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
        ssh_options: cfg.ssh_options.clone(),
        ssh_port,
        forward_ports,
        boot_timeout: cfg.boot_timeout.unwrap_or(DEFAULT_BOOT_TIMEOUT),
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

fn crate_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A guest brought up from a saved state.
struct Restored {
    qemu: Qemu,
    hostfwd: HashMap<u16, u16>,
    overlay: Option<PathBuf>,
    meta: warm::WarmMeta,
    /// The state was saved by this start (a cold boot came first).
    created: bool,
    /// Launching QEMU to sshd answering.
    seconds: f64,
}

/// Why starting failed: a restore problem falls back to a cold boot, anything else is final.
enum StartError {
    Fallback(String),
    Fatal(String),
}

impl QemuSystemTarget {
    fn unreachable(&self, reason: String) -> TargetError {
        TargetError::Unreachable {
            target: self.id.clone(),
            reason,
        }
    }

    /// The running guest, starting it first if needed.
    async fn guest(&self) -> Result<Arc<Guest>, TargetError> {
        let mut state = self.state.lock().await;
        match &*state {
            State::Running(g) => return Ok(g.clone()),
            State::Failed(why) => return Err(self.unreachable(why.clone())),
            State::Stopped => {
                return Err(self.unreachable("the guest was stopped".into()));
            }
            State::Idle => {}
        }
        match self.boot().await {
            Ok(g) => {
                let g = Arc::new(g);
                *state = State::Running(g.clone());
                Ok(g)
            }
            Err(why) => {
                *state = State::Failed(why.clone());
                Err(self.unreachable(why))
            }
        }
    }

    /// Bring the guest up: warm (restore) when possible, else a cold boot.
    async fn boot(&self) -> Result<Guest, String> {
        let started = Instant::now();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let sock_dir = private_dir()?;
        let res = self.boot_in(&sock_dir, started).await;
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&sock_dir);
        }
        res
    }

    async fn boot_in(&self, sock_dir: &Path, started: Instant) -> Result<Guest, String> {
        let s = &self.setup;
        let qemu_version = qemu_version(s.arch).await?;
        let (accel, accel_detail) = self.choose_accel(&qemu_version).await;
        tracing::debug!(
            "{}: {accel_detail} (decided in {:.2}s)",
            self.id,
            started.elapsed().as_secs_f64()
        );
        let machine = Machine {
            arch: s.arch,
            accel,
            memory_mb: s.memory_mb,
            cpus: s.cpus,
            kernel: s.kernel.clone(),
            initrd: s.initrd.clone(),
            append: s.append.clone(),
            firmware: s.firmware.clone(),
            root: s.root.clone(),
            qemu_version,
        };
        let note;
        if matches!(s.root, Root::NineP(_)) {
            note = Some("9p root: QEMU cannot save a guest with a 9p export mounted".into());
        } else if warm::disabled() {
            note = Some("ADAPTEST_QEMU_WARM=off".into());
        } else {
            match self.warm_start(&machine, sock_dir).await {
                Ok(r) => {
                    let info = StartInfo {
                        mode: "warm",
                        seconds: 0.0,
                        boot_seconds: r.seconds,
                        login_seconds: 0.0,
                        created_snapshot: r.created,
                        accel,
                        accel_detail,
                        machine,
                        note: None,
                        snapshot: Some(r.meta),
                    };
                    return self
                        .finish(r.qemu, r.hostfwd, r.overlay, info, sock_dir, started)
                        .await;
                }
                Err(StartError::Fatal(why)) => return Err(why),
                Err(StartError::Fallback(why)) => {
                    tracing::warn!("{}: warm start not used: {why}", self.id);
                    note = Some(why);
                }
            }
        }
        let cold_started = Instant::now();
        let overlay = self.overlay_over_base(&machine).await?;
        let launch = self.launch(sock_dir, overlay.clone(), None);
        let qemu = spawn_qemu(&machine, &launch, &self.dir).await?;
        let hostfwd =
            match wait_ready(&qemu, self.setup.ssh_port, cold_started + s.boot_timeout).await {
                Ok(p) => p,
                Err(why) => {
                    qemu.kill_and_wait().await;
                    return Err(self.boot_error(&why, &launch));
                }
            };
        let info = StartInfo {
            mode: "cold",
            seconds: 0.0,
            boot_seconds: cold_started.elapsed().as_secs_f64(),
            login_seconds: 0.0,
            created_snapshot: false,
            accel,
            accel_detail,
            machine,
            note,
            snapshot: None,
        };
        self.finish(qemu, hostfwd, overlay, info, sock_dir, started)
            .await
    }

    /// Log in (and, after a restore, set the guest's clock and stir its entropy pool).
    async fn finish(
        &self,
        qemu: Qemu,
        hostfwd: HashMap<u16, u16>,
        overlay: Option<PathBuf>,
        mut start: StartInfo,
        sock_dir: &Path,
        started: Instant,
    ) -> Result<Guest, String> {
        let restored = start.mode == "warm";
        let port = hostfwd[&self.setup.ssh_port];
        let ssh = match self.ssh_channel(port) {
            Ok(s) => s,
            Err(e) => {
                qemu.kill_and_wait().await;
                return Err(e);
            }
        };
        let login_started = Instant::now();
        if let Err(e) = ssh.start().await {
            qemu.kill_and_wait().await;
            return Err(format!(
                "the guest booted but SSH login failed: {}",
                crate_chain(&e)
            ));
        }
        start.login_seconds = login_started.elapsed().as_secs_f64();
        if restored {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // One process beyond the login shell (`printf` is a builtin; busybox is static, so
            // no dynamic loader runs), and no exec wrapper: each process start costs 0.1-0.5 s
            // on a guest just restored (its translated code is gone), and this is on the path
            // to the first command.
            let seed: String = random_bytes(64)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let fixup = format!(
                "printf %s {seed} > /dev/urandom 2>/dev/null; \
                 if [ -x /bin/busybox ]; then exec /bin/busybox date -u -s @{now} >/dev/null 2>&1; fi; \
                 exec date -u -s @{now} >/dev/null 2>&1"
            );
            let fixup_started = Instant::now();
            let res = ssh.run_plain(&fixup, Duration::from_secs(30)).await;
            tracing::debug!(
                "{}: clock set in {:.2}s",
                self.id,
                fixup_started.elapsed().as_secs_f64()
            );
            match res {
                Ok(Some(0)) => {}
                Ok(status) => tracing::warn!(
                    "{}: setting the restored guest's clock failed: `date` exited with {status:?}",
                    self.id
                ),
                Err(e) => tracing::warn!(
                    "{}: setting the restored guest's clock failed: {}",
                    self.id,
                    crate_chain(&e)
                ),
            }
        }
        start.seconds = started.elapsed().as_secs_f64();
        tracing::debug!(
            "{}: {} start in {:.2}s (boot/restore {:.2}s, login {:.2}s)",
            self.id,
            start.mode,
            start.seconds,
            start.boot_seconds,
            start.login_seconds
        );
        Ok(Guest {
            qemu,
            ssh,
            hostfwd,
            dynamic: Mutex::new(HashMap::new()),
            start,
            sock_dir: sock_dir.to_path_buf(),
            overlay,
        })
    }

    fn ssh_channel(&self, port: u16) -> Result<SshTarget, String> {
        let known_hosts = self.dir.join("known_hosts");
        let mut options = vec![
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "LogLevel=ERROR".to_string(),
        ];
        match &self.setup.host_key {
            Some(k) => {
                std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {k}\n"))
                    .map_err(|e| format!("cannot write {}: {e}", known_hosts.display()))?;
                options.push("StrictHostKeyChecking=yes".into());
            }
            None => {
                // The center's own disk: its host key is not known in advance. The address is
                // a loopback port of a VM this run just started.
                let _ = std::fs::remove_file(&known_hosts);
                options.push("StrictHostKeyChecking=accept-new".into());
            }
        }
        options.extend(self.setup.ssh_options.iter().cloned());
        SshTarget::new(
            self.id.clone(),
            "127.0.0.1",
            Some(port),
            Some(self.setup.user.clone()),
            Some(self.setup.key.clone()),
            &options,
        )
        .map(|t| t.with_env(self.setup.env.clone()))
    }

    /// KVM or TCG, and why.
    async fn choose_accel(&self, qemu_version: &str) -> (Accel, String) {
        let s = &self.setup;
        let native = Arch::host() == Some(s.arch);
        match s.accel {
            AccelChoice::Tcg => (Accel::Tcg, "tcg requested".into()),
            AccelChoice::Kvm => (Accel::Kvm, "kvm requested".into()),
            AccelChoice::Auto if !native => (
                Accel::Tcg,
                format!("tcg: {} guest on a {} host", s.arch, std::env::consts::ARCH),
            ),
            AccelChoice::Auto => {
                let Some(kernel) = &s.kernel else {
                    return (
                        Accel::Tcg,
                        "tcg: no kernel to probe KVM with (firmware boot)".into(),
                    );
                };
                let p = kvm::probe(kernel, &self.cache_dir, qemu_version).await;
                if p.usable {
                    (Accel::Kvm, format!("kvm: {}", p.detail))
                } else {
                    (Accel::Tcg, format!("tcg: {}", p.detail))
                }
            }
        }
    }

    fn launch(
        &self,
        sock_dir: &Path,
        overlay: Option<PathBuf>,
        incoming: Option<PathBuf>,
    ) -> Launch {
        Launch {
            name: format!("adaptest-{}", self.id),
            console: self.dir.join("console.log"),
            qmp: sock_dir.join("qmp.sock"),
            pidfile: self.dir.join("qemu.pid"),
            overlay,
            forwards: self.setup.forward_ports.clone(),
            incoming,
            ram_file: None,
        }
    }

    /// A fresh overlay over the base disk (cold boot).
    async fn overlay_over_base(&self, machine: &Machine) -> Result<Option<PathBuf>, String> {
        let Root::Disk { base, format } = &machine.root else {
            return Ok(None);
        };
        let overlay = self.dir.join("overlay.qcow2");
        create_overlay(base, format, &overlay).await?;
        Ok(Some(overlay))
    }

    /// Restore the machine's saved state, saving one first if there is none.
    async fn warm_start(&self, machine: &Machine, sock_dir: &Path) -> Result<Restored, StartError> {
        let sdir = warm::dir(&self.cache_dir, machine);
        let mut created = false;
        let snapshot = match warm::find(&sdir) {
            Some(s) => s,
            None => {
                let lock = warm::lock(&sdir).await;
                let s = match warm::find(&sdir) {
                    Some(s) => s,
                    None => {
                        created = true;
                        self.save_snapshot(machine, &sdir, sock_dir).await?
                    }
                };
                drop(lock);
                s
            }
        };
        let restore_started = Instant::now();
        // The run's console shows only what happens after the restore: keep the boot's with it.
        let _ = std::fs::copy(
            snapshot.dir.join("console.log"),
            self.dir.join("console-boot.log"),
        );
        let overlay = if matches!(machine.root, Root::Disk { .. }) {
            let overlay = self.dir.join("overlay.qcow2");
            create_overlay(&snapshot.disk(), "qcow2", &overlay)
                .await
                .map_err(StartError::Fallback)?;
            Some(overlay)
        } else {
            None
        };
        let mut launch = self.launch(sock_dir, overlay.clone(), Some(snapshot.state()));
        launch.ram_file = Some((snapshot.ram(), false));
        let qemu = spawn_qemu(machine, &launch, &self.dir)
            .await
            .map_err(StartError::Fatal)?;
        let deadline = restore_started + RESTORE_TIMEOUT.min(self.setup.boot_timeout);
        let state = snapshot.state();
        let restored = async {
            resume_after_incoming(&qemu, &state, deadline).await?;
            wait_ready(&qemu, self.setup.ssh_port, deadline).await
        };
        match restored.await {
            Ok(hostfwd) => Ok(Restored {
                qemu,
                hostfwd,
                overlay,
                meta: snapshot.meta,
                created,
                seconds: restore_started.elapsed().as_secs_f64(),
            }),
            Err(why) => {
                qemu.kill_and_wait().await;
                let msg =
                    self.boot_error(&format!("restoring the saved guest failed: {why}"), &launch);
                let lock = warm::lock(&sdir).await;
                warm::discard(&sdir);
                drop(lock);
                if let Some(o) = &overlay {
                    let _ = std::fs::remove_file(o);
                }
                Err(StartError::Fallback(msg))
            }
        }
    }

    /// Boot the machine cold over a new overlay in the cache, pause it once sshd answers, save
    /// its state next to the overlay, and quit. The caller holds the snapshot's lock.
    async fn save_snapshot(
        &self,
        machine: &Machine,
        sdir: &Path,
        sock_dir: &Path,
    ) -> Result<warm::Snapshot, StartError> {
        warm::discard(sdir);
        std::fs::create_dir_all(sdir)
            .map_err(|e| StartError::Fallback(format!("cannot create {}: {e}", sdir.display())))?;
        let overlay = if let Root::Disk { base, format } = &machine.root {
            let o = warm::disk_path(sdir);
            create_overlay(base, format, &o)
                .await
                .map_err(StartError::Fallback)?;
            Some(o)
        } else {
            None
        };
        let launch = Launch {
            name: format!("adaptest-{}-snapshot", self.id),
            console: sdir.join("console.log"),
            qmp: sock_dir.join("qmp-snapshot.sock"),
            pidfile: sdir.join("qemu.pid"),
            overlay,
            forwards: vec![self.setup.ssh_port],
            incoming: None,
            ram_file: Some((warm::ram_path(sdir), true)),
        };
        let boot_started = Instant::now();
        let qemu = spawn_qemu(machine, &launch, sdir)
            .await
            .map_err(StartError::Fatal)?;
        if let Err(why) = wait_ready(
            &qemu,
            self.setup.ssh_port,
            boot_started + self.setup.boot_timeout,
        )
        .await
        {
            qemu.kill_and_wait().await;
            let msg = self.boot_error(&why, &launch);
            warm::discard(sdir);
            return Err(StartError::Fatal(msg));
        }
        let boot_seconds = boot_started.elapsed().as_secs_f64();
        let save_started = Instant::now();
        let tmp = sdir.join("state.bin.tmp");
        let saved = save_state(&launch.qmp, &tmp).await;
        match &saved {
            Ok(()) => {
                if let Ok(q) = Qmp::connect(&launch.qmp, Duration::from_secs(5)).await {
                    q.quit().await;
                }
                if !qemu.wait_exit(QUIT_GRACE).await {
                    qemu.kill_and_wait().await;
                }
            }
            Err(_) => qemu.kill_and_wait().await,
        }
        if let Err(why) = saved {
            warm::discard(sdir);
            return Err(StartError::Fallback(format!(
                "saving the booted guest failed: {why}"
            )));
        }
        let state = warm::state_path(sdir);
        let committed = std::fs::rename(&tmp, &state).and_then(|()| {
            let meta = warm::WarmMeta {
                format: warm::WARM_FORMAT,
                signature: machine.signature(),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                boot_seconds,
                save_seconds: save_started.elapsed().as_secs_f64(),
                state_bytes: std::fs::metadata(&state).map_or(0, |m| m.len()),
            };
            warm::commit(sdir, &meta)
        });
        if let Err(e) = committed {
            warm::discard(sdir);
            return Err(StartError::Fallback(format!(
                "cannot store the saved guest in {}: {e}",
                sdir.display()
            )));
        }
        warm::find(sdir).ok_or_else(|| {
            StartError::Fallback(format!(
                "the saved guest in {} is unreadable",
                sdir.display()
            ))
        })
    }

    /// A boot failure with the console's and QEMU's last words.
    fn boot_error(&self, why: &str, launch: &Launch) -> String {
        let mut s = why.to_string();
        let console = tail_lines(&launch.console, BOOT_TAIL_LINES);
        if console.trim().is_empty() {
            s.push_str(&format!(
                "; the serial console ({}) is empty",
                launch.console.display()
            ));
        } else {
            s.push_str(&format!(
                "; last lines of the serial console ({}):\n{console}",
                launch.console.display()
            ));
        }
        let stderr_path = launch
            .console
            .parent()
            .map(|d| d.join("qemu.stderr"))
            .unwrap_or_default();
        let stderr = tail_lines(&stderr_path, 10);
        if !stderr.trim().is_empty() {
            s.push_str(&format!("\nQEMU said:\n{stderr}"));
        }
        s
    }

    /// A command failed for want of a channel: say whether the guest itself is gone.
    async fn channel_error(&self, guest: &Guest, e: TargetError) -> TargetError {
        if let Some(exit) = guest.qemu.exited_within(Duration::from_secs(2)).await {
            let console = tail_lines(&guest.qemu.console, DEAD_TAIL_LINES);
            let mut reason = format!("the guest's QEMU process (pid {}) {exit}", guest.qemu.pid);
            if !console.trim().is_empty() {
                reason.push_str(&format!("; last console lines:\n{console}"));
            }
            return self.unreachable(reason);
        }
        e
    }
}

#[async_trait::async_trait]
impl Target for QemuSystemTarget {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "qemu-system"
    }

    async fn start(&self) -> Result<(), TargetError> {
        self.guest().await.map(drop)
    }

    async fn exec(
        &self,
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError> {
        let guest = self.guest().await?;
        if let Some(exit) = guest.qemu.exited() {
            let e = self.unreachable(format!("the guest's QEMU process {exit}"));
            return Err(self.channel_error(&guest, e).await);
        }
        match guest.ssh.exec(req, cancel).await {
            Ok(o) => Ok(o),
            Err(e) => Err(self.channel_error(&guest, e).await),
        }
    }

    /// Under KVM a guest runs at near native speed; under TCG every instruction is translated.
    async fn timeout_factor(&self) -> f64 {
        match &*self.state.lock().await {
            State::Running(g) if g.start.accel == Accel::Kvm => 1.0,
            _ => 4.0,
        }
    }

    async fn environment(&self) -> Result<Environment, TargetError> {
        let guest = self.guest().await?;
        let out = self
            .exec(probe_request(), &CancellationToken::new())
            .await?;
        let mut env = environment_from(&self.id, self.kind(), &out)?;
        let st = &guest.start;
        let m = &st.machine;
        let mut extra = |k: &str, v: String| {
            env.extra.insert(k.to_string(), v);
        };
        extra("qemu_start", st.mode.to_string());
        extra("qemu_start_seconds", format!("{:.2}", st.seconds));
        extra("qemu_boot_seconds", format!("{:.2}", st.boot_seconds));
        extra("qemu_login_seconds", format!("{:.2}", st.login_seconds));
        extra("qemu_accel", st.accel.name().to_string());
        extra("qemu_accel_detail", st.accel_detail.clone());
        extra(
            "qemu_machine",
            format!(
                "{} -machine {} -cpu {} -smp {} -m {}M",
                m.arch.qemu_system(),
                m.machine_type(),
                m.cpu_model(),
                m.cpus,
                m.memory_mb
            ),
        );
        extra("qemu_version", m.qemu_version.clone());
        if let Some(img) = &self.setup.image {
            extra("qemu_image", img.clone());
        }
        if let Some(m) = &st.snapshot {
            if st.created_snapshot {
                extra("qemu_snapshot_created", "yes".into());
            }
            extra(
                "qemu_snapshot_boot_seconds",
                format!("{:.2}", m.boot_seconds),
            );
            extra(
                "qemu_snapshot_save_seconds",
                format!("{:.2}", m.save_seconds),
            );
            extra("qemu_snapshot_bytes", m.state_bytes.to_string());
        }
        if let Some(n) = &st.note {
            extra(
                "qemu_start_note",
                n.lines().next().unwrap_or("").to_string(),
            );
        }
        if env.arch != self.setup.arch.name() {
            return Err(TargetError::Environment {
                target: self.id.clone(),
                reason: format!(
                    "the guest reports arch `{}`, the plan says `{}`",
                    env.arch, self.setup.arch
                ),
            });
        }
        Ok(env)
    }

    async fn stop(&self) -> Result<(), TargetError> {
        let prev = std::mem::replace(&mut *self.state.lock().await, State::Stopped);
        let State::Running(guest) = prev else {
            return Ok(());
        };
        let _ = guest.ssh.stop().await;
        if guest.qemu.exited().is_none() {
            if let Ok(q) = Qmp::connect(&guest.qemu.qmp, Duration::from_secs(5)).await {
                q.quit().await;
            }
            if !guest.qemu.wait_exit(QUIT_GRACE).await {
                tracing::warn!(
                    "{}: QEMU ignored `quit`; killing pid {}",
                    self.id,
                    guest.qemu.pid
                );
                guest.qemu.kill_and_wait().await;
            }
        }
        if let Some(o) = &guest.overlay
            && !std::env::var("ADAPTEST_QEMU_KEEP_OVERLAY").is_ok_and(|v| v == "1")
        {
            let _ = std::fs::remove_file(o);
        }
        let _ = std::fs::remove_dir_all(&guest.sock_dir);
        Ok(())
    }

    async fn connect_addr(&self, port: u16) -> Result<SocketAddr, TargetError> {
        let guest = self.guest().await?;
        if let Some(host) = guest.hostfwd.get(&port)
            && port != self.setup.ssh_port
        {
            return Ok(SocketAddr::from(([127, 0, 0, 1], *host)));
        }
        let mut dynamic = guest.dynamic.lock().await;
        if let Some(a) = dynamic.get(&port) {
            return Ok(*a);
        }
        // QEMU's user network is the fast path, but it reaches only services listening on the
        // guest's address (0.0.0.0 or 10.0.2.15): try a forward added at run time, and keep it
        // if something answers there. A service on the guest's loopback only (as component
        // lifecycles usually start them) is reached through SSH instead.
        if let Some(host) = add_hostfwd(&guest.qemu, port).await {
            if reachable(host).await {
                let a = SocketAddr::from(([127, 0, 0, 1], host));
                dynamic.insert(port, a);
                return Ok(a);
            }
            remove_hostfwd(&guest.qemu, host).await;
        }
        match guest.ssh.connect_addr(port).await {
            Ok(a) => {
                dynamic.insert(port, a);
                Ok(a)
            }
            Err(e) => Err(self.channel_error(&guest, e).await),
        }
    }
}

/// `hostfwd_add` from an ephemeral port on 127.0.0.1 to guest `port`; returns the host port.
async fn add_hostfwd(qemu: &Qemu, port: u16) -> Option<u16> {
    let mut q = Qmp::connect(&qemu.qmp, Duration::from_secs(5)).await.ok()?;
    let before: Vec<(u16, u16)> = qmp::parse_hostfwd(&q.hmp("info usernet").await.ok()?);
    let out = q
        .hmp(&format!(
            "hostfwd_add net0 tcp:127.0.0.1:0-10.0.2.15:{port}"
        ))
        .await
        .ok()?;
    if !out.trim().is_empty() {
        tracing::debug!("hostfwd_add for guest port {port}: {}", out.trim());
        return None;
    }
    let after = qmp::parse_hostfwd(&q.hmp("info usernet").await.ok()?);
    after
        .into_iter()
        .find(|(g, h)| *g == port && !before.iter().any(|(_, bh)| bh == h))
        .map(|(_, h)| h)
}

async fn remove_hostfwd(qemu: &Qemu, host: u16) {
    if let Ok(mut q) = Qmp::connect(&qemu.qmp, Duration::from_secs(5)).await {
        let _ = q
            .hmp(&format!("hostfwd_remove net0 tcp:127.0.0.1:{host}"))
            .await;
    }
}

/// Does a service answer behind a `hostfwd` port? QEMU accepts on the host side and closes at
/// once when the guest refuses; a listening service keeps the connection open (or greets).
async fn reachable(host: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", host)),
    )
    .await
    else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// The QEMU process of a guest, watched by a task that reaps it.
struct Qemu {
    pid: u32,
    qmp: PathBuf,
    console: PathBuf,
    exit: watch::Receiver<Option<String>>,
    kill: mpsc::UnboundedSender<()>,
}

impl Qemu {
    /// How the process ended, if it has.
    fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Wait up to `grace` for the process to end; `None` if it is still running.
    async fn exited_within(&self, grace: Duration) -> Option<String> {
        let mut rx = self.exit.clone();
        let ended = tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .map(|r| r.map(|v| v.clone()));
        match ended {
            Ok(Ok(v)) => v,
            _ => self.exited(),
        }
    }

    /// Resolves when the process has ended (never, if its watcher is gone).
    async fn ended(&self) -> String {
        let mut rx = self.exit.clone();
        let ended = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match ended {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    async fn wait_exit(&self, grace: Duration) -> bool {
        self.exited_within(grace).await.is_some()
    }

    async fn kill_and_wait(&self) {
        let _ = self.kill.send(());
        let _ = self.wait_exit(Duration::from_secs(10)).await;
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // A guest nobody holds any more must not outlive us.
        let _ = self.kill.send(());
    }
}

/// Start QEMU; a task reaps it and publishes how it ended.
async fn spawn_qemu(machine: &Machine, launch: &Launch, dir: &Path) -> Result<Qemu, String> {
    let bin = machine.arch.qemu_system();
    let args = machine.args(launch);
    let shown: Vec<String> = std::iter::once(bin.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let _ = std::fs::write(dir.join("qemu.cmdline"), shown.join(" ") + "\n");
    let _ = std::fs::remove_file(&launch.console);
    let _ = std::fs::remove_file(&launch.qmp);
    let stderr = std::fs::File::create(dir.join("qemu.stderr"))
        .map_err(|e| format!("cannot create {}: {e}", dir.join("qemu.stderr").display()))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours; it makes the kernel
    // kill QEMU if the harness dies without stopping it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{bin} is not installed (scripts/install-deps.sh installs the QEMU system emulators)"
            )
        } else {
            format!("cannot start {bin}: {e}")
        }
    })?;
    let pid = child.id().unwrap_or(0);
    let (tx, rx) = watch::channel(None);
    let (ktx, mut krx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                status = child.wait() => {
                    let _ = tx.send(Some(describe_exit(status)));
                    break;
                }
                Some(()) = krx.recv() => {
                    let _ = child.start_kill();
                }
            }
        }
    });
    Ok(Qemu {
        pid,
        qmp: launch.qmp.clone(),
        console: launch.console.clone(),
        exit: rx,
        kill: ktx,
    })
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
            _ => "ended".into(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// Wait until the guest's sshd answers through its forwarded port; returns the `hostfwd` map.
async fn wait_ready(
    qemu: &Qemu,
    ssh_port: u16,
    deadline: Instant,
) -> Result<HashMap<u16, u16>, String> {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let mut qmp = tokio::select! {
        q = Qmp::connect(&qemu.qmp, remaining().min(Duration::from_secs(30))) => q.map_err(|e| crate_chain(&e))?,
        exit = qemu.ended() => return Err(format!("QEMU {exit} while starting")),
    };
    let usernet = qmp.hmp("info usernet").await.map_err(|e| crate_chain(&e))?;
    drop(qmp);
    let hostfwd: HashMap<u16, u16> = qmp::parse_hostfwd(&usernet).into_iter().collect();
    let Some(&port) = hostfwd.get(&ssh_port) else {
        return Err(format!(
            "QEMU set up no forward for guest port {ssh_port}:\n{usernet}"
        ));
    };
    loop {
        if let Some(exit) = qemu.exited() {
            return Err(format!("QEMU {exit} before the guest's sshd answered"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the guest's sshd did not answer on 127.0.0.1:{port} within the boot timeout"
            ));
        }
        if ssh_banner(port).await {
            return Ok(hostfwd);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Does an SSH server greet on 127.0.0.1:`port`? (QEMU's user network accepts the connection
/// itself and closes it when nothing listens in the guest.)
async fn ssh_banner(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 4 {
            let n = s.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                return None;
            }
            got += n;
        }
        Some(buf.starts_with(b"SSH-"))
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Load the saved device state into a QEMU started with `-incoming defer` (its RAM is the
/// snapshot's file, so the stream skips it: `x-ignore-shared` on both sides), wait for the
/// load, then `cont` (the state was saved paused).
async fn resume_after_incoming(qemu: &Qemu, state: &Path, deadline: Instant) -> Result<(), String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut q = tokio::select! {
        q = Qmp::connect(&qemu.qmp, remaining.min(Duration::from_secs(30))) => q.map_err(|e| crate_chain(&e))?,
        exit = qemu.ended() => return Err(format!("QEMU {exit} while loading the saved state")),
    };
    q.execute("migrate-set-capabilities", Some(ignore_shared()))
        .await
        .map_err(|e| crate_chain(&e))?;
    let uri = format!("exec:cat {}", super::shell_quote(&state.to_string_lossy()));
    q.execute("migrate-incoming", Some(serde_json::json!({ "uri": uri })))
        .await
        .map_err(|e| crate_chain(&e))?;
    loop {
        let st = q
            .execute("query-status", None)
            .await
            .map_err(|e| crate_chain(&e))?;
        match st["status"].as_str().unwrap_or("") {
            "running" => return Ok(()),
            "inmigrate" => {}
            _ => {
                q.execute("cont", None).await.map_err(|e| crate_chain(&e))?;
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err("loading the saved state did not finish in time".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The migration capability that leaves shared RAM (the snapshot's `ram.bin`) out of the
/// stream. Experimental in QEMU (`x-`), present since 4.0.
fn ignore_shared() -> serde_json::Value {
    serde_json::json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })
}

/// Pause the guest and write its state to `file` through QMP `migrate`.
async fn save_state(qmp_path: &Path, file: &Path) -> Result<(), String> {
    let mut q = Qmp::connect(qmp_path, Duration::from_secs(10))
        .await
        .map_err(|e| crate_chain(&e))?;
    let e = |e: qmp::QmpError| crate_chain(&e);
    q.execute(
        "migrate-set-parameters",
        Some(serde_json::json!({ "max-bandwidth": 8u64 << 30 })),
    )
    .await
    .map_err(e)?;
    q.execute("migrate-set-capabilities", Some(ignore_shared()))
        .await
        .map_err(e)?;
    q.execute("stop", None).await.map_err(e)?;
    let uri = format!("exec:cat > {}", super::shell_quote(&file.to_string_lossy()));
    q.execute("migrate", Some(serde_json::json!({ "uri": uri })))
        .await
        .map_err(e)?;
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        let info = q.execute("query-migrate", None).await.map_err(e)?;
        match info["status"].as_str().unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(format!(
                    "migration {}: {}",
                    info["status"].as_str().unwrap_or(""),
                    info["error-desc"].as_str().unwrap_or("no detail")
                ));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "saving did not finish within {}s",
                SAVE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `qemu-img create -f qcow2 -b BASE -F FMT OVERLAY` (replacing an old overlay).
async fn create_overlay(base: &Path, format: &str, overlay: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(overlay);
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base)
        .arg(overlay)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "qemu-img is not installed (package qemu-utils; scripts/install-deps.sh)".into()
            } else {
                format!("cannot run qemu-img: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "qemu-img could not create an overlay over {}: {}",
            base.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The first line of `qemu-system-… --version`.
async fn qemu_version(arch: Arch) -> Result<String, String> {
    let bin = arch.qemu_system();
    let out = tokio::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{bin} is not installed (scripts/install-deps.sh installs the QEMU system emulators)"
                )
            } else {
                format!("cannot run {bin}: {e}")
            }
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A new private (0700) directory under the system temp dir, for unix sockets.
fn private_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = base.join(format!("adaptest-qs-{}-{nanos:x}{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "cannot create a directory in {}: {e}",
                    base.display()
                ));
            }
        }
    }
    Err("cannot create a private socket directory".into())
}

/// The last `n` lines of a text file (lossy, control characters other than tabs dropped).
fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(16 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let clean: String = text
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    let lines: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: impl FnOnce(&mut TargetConfig)) -> TargetConfig {
        let mut c = TargetConfig {
            id: "vm".into(),
            kind: "qemu-system".into(),
            arch: Some("aarch64".into()),
            image: Some("debian-bookworm-arm64".into()),
            ..TargetConfig::default()
        };
        f(&mut c);
        c
    }

    fn fields(c: &TargetConfig) -> Vec<&'static str> {
        validate(c).into_iter().map(|(f, _)| f).collect()
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
        let small = TargetConfig {
            memory_mb: Some(512),
            ..own_kernel
        };
        assert_eq!(fields(&small), ["memory_mb"]);
    }

    #[test]
    fn tail_keeps_the_last_lines_without_control_characters() {
        let p = std::env::temp_dir().join(format!("adaptest-tail-{}", std::process::id()));
        std::fs::write(&p, "one\n\x1b[0mtwo\n\nthree\nfour\n").unwrap();
        assert_eq!(tail_lines(&p, 2), "three\nfour");
        assert_eq!(tail_lines(&p, 10), "one\n[0mtwo\nthree\nfour");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(tail_lines(&p, 3), "");
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
