//! [`QemuUserTarget`]: foreign-architecture programs from a root file system (or sysroot)
//! directory, run on this host under QEMU's user-mode emulation. The emulated processes are
//! ordinary host processes, so they share the host's kernel, network namespace (a port on the
//! target is `127.0.0.1:port` here) and process table, and a timeout kills their tree exactly
//! like the local target's ([`super::local::run_command`]).
//!
//! Two ways to run a command, chosen at `start` and recorded in the environment
//! (`extra.qemu_user_mode`):
//!
//! - **`chroot`** (the normal case): binfmt_misc has an enabled `qemu-<arch>` entry (or the
//!   architecture is the host's), the root has a `/bin/sh`, and the harness is root. Each
//!   command is `/bin/sh -c …` chrooted into the root (`chroot(2)` + `chdir(2)` between fork and
//!   exec), so the shell and every tool are the target architecture's, found through binfmt.
//!   `/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm` and `/tmp` are mounted inside on start
//!   where nothing is mounted yet, and exactly those are unmounted on stop (counted per root
//!   across targets of this process). The `adaptest` binary runs in a mount namespace of its own
//!   ([`private_mount_namespace`]), so these mounts are its own: two runs on one root do not
//!   share them (one finishing would otherwise unmount the `/tmp` holding the other's scratch
//!   directories), and they vanish with the process even when it is killed.
//! - **`host-shell`** (fallback: no binfmt, no shell in the sysroot, or not root): the host's
//!   `/bin/sh` runs the command with `PATH` starting at a directory of wrapper scripts, one per
//!   program of the root's architecture found in its `bin`/`sbin` directories, each calling
//!   `qemu-<arch>-static -L ROOT`. Limits: the shell and anything the root lacks are the host's
//!   (so `os.basic`'s `arch` case rightly fails: `/bin/sh` is not a target binary); a target
//!   program that execs another by absolute path gets the host's (or fails); paths that exist
//!   under ROOT shadow the host's for emulated programs (`-L`). The environment is still honest:
//!   `uname -m` runs emulated when the root has a `uname`, and OS identity comes from the root's
//!   `os-release`.
//!
//! `ADAPTEST_QEMU_USER_MODE=chroot|host-shell` in the harness's environment forces a mode.
//!
//! (long because one `Target` with the helpers only it uses: root-file-system resolution, binfmt/ELF checks, interpreter wrappers, the private mount namespace)

use super::local::run_command;
use super::{
    ConfigProblem, ExecOutput, ExecRequest, Field, KNOWN_ARCHES, QemuUserConfig, Target,
    TargetConfig, TargetError, TargetFields, canonical_arch, shell_quote,
};
use crate::env_probe::{environment_from, probe_request};
use crate::image::Arch;
use adaptest_schema::Environment;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex as StdMutex;
use tokio::process::Command;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// `PATH` inside the root.
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables passed from the harness's environment into the root (a login would set these).
const PASSED_VARS: &[&str] = &["LANG", "LC_ALL", "TZ", "TERM"];
/// Program directories of a root, in `PATH` order.
const BIN_DIRS: &[&str] = &[
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// How commands are run; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Chroot,
    HostShell { wrappers: PathBuf },
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Chroot => "chroot",
            Mode::HostShell { .. } => "host-shell",
        }
    }
}

#[derive(Debug)]
struct Running {
    mode: Mode,
    /// The root, canonical.
    root: PathBuf,
}

/// A root file system of another architecture, run under qemu-user.
#[derive(Debug)]
pub struct QemuUserTarget {
    id: String,
    /// Canonical (`uname -m`) name.
    arch: String,
    rootfs: PathBuf,
    env: Vec<(String, String)>,
    state: Mutex<Option<Running>>,
}

/// Check and parse the fields of a `qemu-user` target.
pub(super) fn parse(cfg: &TargetFields) -> Result<QemuUserConfig, Vec<ConfigProblem>> {
    let mut out = Vec::new();
    let arch = match cfg.arch.as_deref() {
        None => {
            out.push((
                Field::Arch,
                format!(
                    "a qemu-user target needs `arch` ({})",
                    KNOWN_ARCHES.join(", ")
                ),
            ));
            None
        }
        Some(a) => {
            let parsed = Arch::parse(canonical_arch(a));
            if parsed.is_none() {
                out.push((
                    Field::Arch,
                    format!("unknown arch `{a}` (known: {})", KNOWN_ARCHES.join(", ")),
                ));
            }
            parsed
        }
    };
    let rootfs = match &cfg.rootfs {
        None => {
            out.push((
                Field::Rootfs,
                "a qemu-user target needs `rootfs` (a root file system or sysroot directory)"
                    .to_owned(),
            ));
            None
        }
        Some(p) if !p.is_dir() => {
            out.push((
                Field::Rootfs,
                format!("{} does not exist or is not a directory", p.display()),
            ));
            None
        }
        Some(p) => Some(p.clone()),
    };
    out.extend(cfg.foreign_fields(
        "a",
        &[
            Field::Host,
            Field::Port,
            Field::User,
            Field::IdentityFile,
            Field::SshOptions,
            Field::Image,
            Field::Kernel,
            Field::Initrd,
            Field::Disk,
        ],
    ));
    match (arch, rootfs) {
        (Some(arch), Some(rootfs)) if out.is_empty() => Ok(QemuUserConfig { arch, rootfs }),
        _ => Err(out),
    }
}

/// The adapter for a `qemu-user` target.
pub(super) fn create(cfg: &TargetConfig, q: &QemuUserConfig) -> QemuUserTarget {
    QemuUserTarget::new(cfg.id.clone(), q.arch.name(), q.rootfs.clone()).with_env(cfg.env.clone())
}

impl QemuUserTarget {
    /// `rootfs` (a root file system or sysroot directory) of architecture `arch`, known in the
    /// plan as `id`.
    pub fn new(id: impl Into<String>, arch: &str, rootfs: impl Into<PathBuf>) -> Self {
        QemuUserTarget {
            id: id.into(),
            arch: canonical_arch(arch).to_owned(),
            rootfs: rootfs.into(),
            env: Vec::new(),
            state: Mutex::new(None),
        }
    }

    /// Environment variables set for every command.
    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = env.into_iter().collect();
        self
    }

    fn unreachable(&self, reason: String) -> TargetError {
        TargetError::Unreachable {
            target: self.id.clone(),
            reason,
        }
    }

    /// Is this the host's own architecture (no emulation needed)?
    fn native(&self) -> bool {
        self.arch == std::env::consts::ARCH
    }

    /// Decide how to run commands; `Err` says why neither way works.
    fn choose_mode(&self, root: &Path) -> Result<Mode, String> {
        let forced = std::env::var("ADAPTEST_QEMU_USER_MODE").ok();
        let binfmt = self.native() || binfmt_enabled(&self.arch);
        let shell = root.join("bin/sh").symlink_metadata().is_ok();
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        let root_user = unsafe { libc::geteuid() } == 0;
        let chroot_ok = binfmt && shell && root_user;
        let why_not_chroot = || {
            let mut why = Vec::new();
            if !binfmt {
                why.push(format!(
                    "binfmt_misc has no enabled qemu-{} entry (/proc/sys/fs/binfmt_misc/qemu-{})",
                    self.arch, self.arch
                ));
            }
            if !shell {
                why.push(format!("{} has no /bin/sh", root.display()));
            }
            if !root_user {
                why.push("chroot needs root".to_owned());
            }
            why.join("; ")
        };
        match forced.as_deref() {
            Some("chroot") if !chroot_ok => {
                return Err(format!(
                    "chroot mode is forced but impossible: {}",
                    why_not_chroot()
                ));
            }
            Some("chroot") => return Ok(Mode::Chroot),
            Some("host-shell") => {}
            Some(other) => {
                return Err(format!(
                    "ADAPTEST_QEMU_USER_MODE is `{other}`; expected `chroot` or `host-shell`"
                ));
            }
            None if chroot_ok => return Ok(Mode::Chroot),
            None => {}
        }
        if self.native() {
            return Err(format!(
                "cannot run in {}: {}",
                root.display(),
                why_not_chroot()
            ));
        }
        if qemu_static(&self.arch).is_none() {
            return Err(format!(
                "cannot run {} programs: {} and qemu-{}-static is not installed \
                 (Debian: apt-get install qemu-user-static binfmt-support)",
                self.arch,
                why_not_chroot(),
                self.arch
            ));
        }
        Ok(Mode::HostShell {
            wrappers: std::env::temp_dir().join(format!(
                "adaptest-qemu-user-{}-{}",
                std::process::id(),
                self.id
            )),
        })
    }

    /// Run `req` in mode `mode` under `root`.
    async fn run(
        &self,
        running: (&Mode, &Path),
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError> {
        let (mode, root) = running;
        let ExecRequest {
            command,
            stdin,
            env,
            env_remove,
            cwd,
            timeout,
            capture_limit,
            keep_background,
            grace,
        } = req;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&command);
        if !self.native() {
            // QEMU 7.2 intermittently breaks the heap (brk) of static binaries when the address
            // space is randomised (~1% of LoongArch busybox/musl processes died with "out of
            // memory"): emulated commands run with ASLR off, inherited by all they start.
            // SAFETY: personality(2) is a plain syscall, async-signal-safe, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
                    Ok(())
                });
            }
        }
        match mode {
            Mode::Chroot => {
                cmd.env_clear().env("PATH", ROOT_PATH).env("HOME", "/root");
                for var in PASSED_VARS {
                    if let Some(v) = std::env::var_os(var) {
                        cmd.env(var, v);
                    }
                }
                let c_root = cstring(root.as_os_str().as_bytes(), &self.id, &command)?;
                let c_dir = cstring(cwd.as_deref().unwrap_or("/").as_bytes(), &self.id, &command)?;
                // SAFETY: between fork and exec only async-signal-safe calls are made: chroot(2)
                // and chdir(2) on strings allocated before the fork.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::chroot(c_root.as_ptr()) != 0 || libc::chdir(c_dir.as_ptr()) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            Mode::HostShell { wrappers } => {
                let host_path = std::env::var("PATH").unwrap_or_else(|_| ROOT_PATH.to_owned());
                cmd.env("PATH", format!("{}:{host_path}", wrappers.display()))
                    .env("QEMU_LD_PREFIX", root);
                if let Some(dir) = &cwd {
                    cmd.current_dir(dir);
                }
            }
        }
        for var in &env_remove {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().cloned()).envs(env);
        run_command(
            &self.id,
            cmd,
            &command,
            stdin,
            timeout,
            super::local::Policy {
                capture_limit,
                keep_background,
                grace,
            },
            cancel,
        )
        .await
    }

    /// The mode and root once started.
    async fn running(&self) -> Result<(Mode, PathBuf), TargetError> {
        self.start().await?;
        let state = self.state.lock().await;
        let r = state.as_ref().expect("started");
        Ok((r.mode.clone(), r.root.clone()))
    }
}

fn cstring(bytes: &[u8], target: &str, command: &str) -> Result<CString, TargetError> {
    CString::new(bytes).map_err(|_| TargetError::Spawn {
        target: target.to_owned(),
        command: super::short_command(command),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })
}

/// Is there an enabled binfmt_misc entry for `qemu-<arch>`?
fn binfmt_enabled(arch: &str) -> bool {
    let first = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
    };
    first("/proc/sys/fs/binfmt_misc/status").as_deref() == Some("enabled")
        && first(&format!("/proc/sys/fs/binfmt_misc/qemu-{arch}")).as_deref() == Some("enabled")
}

/// `qemu-<arch>-static` (or `qemu-<arch>`) on `PATH` or in `/usr/bin`.
fn qemu_static(arch: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]);
    dirs.flat_map(|d| {
        [
            d.join(format!("qemu-{arch}-static")),
            d.join(format!("qemu-{arch}")),
        ]
    })
    .find(|p| p.is_file())
}

/// The ELF `e_machine` of an architecture.
fn elf_machine(arch: &str) -> Option<u16> {
    match arch {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "loongarch64" => Some(258),
        _ => None,
    }
}

/// `e_machine` of a 64-bit little-endian ELF file, if `path` is one.
fn elf_machine_of(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"\x7fELF" && head[4] == 2 && head[5] == 1)
        .then(|| u16::from_le_bytes([head[18], head[19]]))
}

/// Resolve `path` (inside `root`) following symlinks as if `root` were `/`.
fn resolve_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let meta = p.symlink_metadata().ok()?;
        if !meta.file_type().is_symlink() {
            return Some(p);
        }
        let target = std::fs::read_link(&p).ok()?;
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(target)
        };
    }
    None
}

/// Write one wrapper script per program of `arch` in the root's program directories.
fn write_wrappers(root: &Path, arch: &str, dir: &Path) -> std::io::Result<usize> {
    let machine =
        elf_machine(arch).ok_or_else(|| std::io::Error::other(format!("unknown arch {arch}")))?;
    let qemu = qemu_static(arch)
        .ok_or_else(|| std::io::Error::other(format!("qemu-{arch}-static not found")))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let mut seen = std::collections::HashSet::new();
    for sub in BIN_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let Some(name_str) = name.to_str() else {
                continue;
            };
            if seen.contains(name_str) || name_str.contains('/') {
                continue;
            }
            let Some(real) = resolve_in_root(root, &root.join(sub).join(&name)) else {
                continue;
            };
            if elf_machine_of(&real) != Some(machine) {
                continue;
            }
            let script = format!(
                "#!/bin/sh\nexec {} -L {} -0 {} {} \"$@\"\n",
                shell_quote(&qemu.to_string_lossy()),
                shell_quote(&root.to_string_lossy()),
                shell_quote(name_str),
                shell_quote(&real.to_string_lossy()),
            );
            let path = dir.join(name_str);
            std::fs::write(&path, script)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            seen.insert(name_str.to_owned());
        }
    }
    Ok(seen.len())
}

#[async_trait::async_trait]
impl Target for QemuUserTarget {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "qemu-user"
    }

    async fn start(&self) -> Result<(), TargetError> {
        let mut state = self.state.lock().await;
        if state.is_some() {
            return Ok(());
        }
        let root = std::fs::canonicalize(&self.rootfs).map_err(|e| {
            self.unreachable(format!(
                "rootfs {} is not usable: {e}",
                self.rootfs.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(self.unreachable(format!("rootfs {} is not a directory", root.display())));
        }
        let mode = self.choose_mode(&root).map_err(|r| self.unreachable(r))?;
        match &mode {
            Mode::Chroot => mounts::acquire(&root).map_err(|e| {
                self.unreachable(format!(
                    "preparing {} for chroot failed: {e}",
                    root.display()
                ))
            })?,
            Mode::HostShell { wrappers } => {
                let n = write_wrappers(&root, &self.arch, wrappers).map_err(|e| {
                    self.unreachable(format!(
                        "writing program wrappers in {} failed: {e}",
                        wrappers.display()
                    ))
                })?;
                if n == 0 {
                    return Err(self.unreachable(format!(
                        "{} has no {} programs in {}",
                        root.display(),
                        self.arch,
                        BIN_DIRS.join(", ")
                    )));
                }
            }
        }
        *state = Some(Running { mode, root });
        Ok(())
    }

    async fn exec(
        &self,
        req: ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, TargetError> {
        if cancel.is_cancelled() {
            return Ok(ExecOutput {
                cancelled: true,
                ..ExecOutput::default()
            });
        }
        let (mode, root) = self.running().await?;
        self.run((&mode, &root), req, cancel).await
    }

    /// Every instruction is translated: commands run several times slower than natively.
    async fn timeout_factor(&self) -> f64 {
        3.0
    }

    async fn environment(&self) -> Result<Environment, TargetError> {
        let (mode, root) = self.running().await?;
        let out = self
            .run((&mode, &root), probe_request(), &CancellationToken::new())
            .await?;
        let mut env = environment_from(&self.id, self.kind(), &out)?;
        env.extra
            .insert("qemu_user_mode".into(), mode.name().into());
        env.extra
            .insert("rootfs".into(), root.display().to_string());
        if let Some(hw) = env.hardware.as_mut() {
            crate::hardware::mark_emulated(
                hw,
                "qemu-user: /sys and /proc are the host's, the CPU is translated",
            );
        }
        if let Mode::HostShell { wrappers } = &mode {
            // The shell and the probe's tools are partly the host's: keep only what is the
            // root's own.
            env.extra.insert(
                "userland".into(),
                "host /bin/sh; the root's programs through qemu -L wrappers".into(),
            );
            if !wrappers.join("uname").exists() {
                env.extra.insert(
                    "arch_source".into(),
                    "declared (the root has no uname)".into(),
                );
                env.arch = self.arch.clone();
            }
            let release = std::fs::read_to_string(root.join("etc/os-release")).unwrap_or_default();
            let field = |k: &str| {
                release
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
                    .unwrap_or_default()
            };
            env.os_id = field("ID");
            env.os_version = field("VERSION_ID");
            env.os_name = field("PRETTY_NAME");
            env.libc = root_libc(&root);
        }
        if env.libc.is_empty() {
            // No getconf, ldd or shared libc in the root (a static busybox sysroot).
            env.libc = root_libc(&root);
        }
        if !self.native() {
            if let Some(qemu) = qemu_static(&self.arch) {
                // tokio's process API: the emulator's start-up does not block a worker.
                let version = tokio::process::Command::new(&qemu)
                    .arg("--version")
                    .kill_on_drop(true)
                    .output()
                    .await
                    .ok()
                    .and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .next()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                env.extra.insert("emulator".into(), version);
            }
            // QEMU shows the guest the host's /proc/cpuinfo (7.2 emulates it for few
            // architectures): say that the CPU is emulated rather than pass the host's off as
            // the target's.
            let host_cpu = std::mem::take(&mut env.cpu_model);
            env.cpu_vendor = "QEMU".into();
            env.cpu_model = if host_cpu.is_empty() {
                format!("qemu-user {} emulation", self.arch)
            } else {
                format!("qemu-user {} emulation (host CPU: {host_cpu})", self.arch)
            };
            env.extra.insert("virt".into(), "qemu-user".into());
        }
        Ok(env)
    }

    async fn stop(&self) -> Result<(), TargetError> {
        let Some(running) = self.state.lock().await.take() else {
            return Ok(());
        };
        match running.mode {
            Mode::Chroot => mounts::release(&running.root).map_err(|e| {
                self.unreachable(format!(
                    "unmounting under {} failed: {e}",
                    running.root.display()
                ))
            }),
            Mode::HostShell { wrappers } => {
                let _ = std::fs::remove_dir_all(wrappers);
                Ok(())
            }
        }
    }
}

/// `musl`, `glibc` or `static` from the files of a root (for host-shell mode, where the probe's
/// `getconf`/`ldd` would be the host's).
fn root_libc(root: &Path) -> String {
    let any = |dir: &str, pred: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(root.join(dir))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_str().is_some_and(pred))
            })
            .unwrap_or(false)
    };
    if any("lib", &|n| n.starts_with("ld-musl-")) {
        "musl".into()
    } else if ["lib", "lib64", "usr/lib"].iter().any(|d| {
        any(d, &|n| n == "libc.so.6")
            || std::fs::read_dir(root.join(d))
                .map(|rd| rd.flatten().any(|e| e.path().join("libc.so.6").exists()))
                .unwrap_or(false)
    }) {
        "glibc".into()
    } else {
        "static (no shared C library)".into()
    }
}

/// Put the calling process in a mount namespace of its own whose mounts propagate nowhere (when
/// root; otherwise nothing to do: chroot mode needs root anyway). Returns whether it did.
///
/// Must run before the process starts a thread: `unshare(CLONE_NEWNS)` moves only the calling
/// thread, and children inherit the namespace of the thread that forks them.
pub fn private_mount_namespace() -> std::io::Result<bool> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(false);
    }
    // SAFETY: plain system calls on static, NUL-terminated strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Private, not just slave: a mount made or removed in the host's namespace (say by
        // another process using the same root) must not reach ours either.
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(true)
}

/// The file systems a chroot needs, mounted once per root for all targets of this process that
/// use it, and unmounted when the last of them stops. Only what we mounted is unmounted.
mod mounts {
    use super::*;

    struct Use {
        users: usize,
        /// Mount points we created, in mount order.
        mounted: Vec<PathBuf>,
    }

    static MOUNTS: StdMutex<Option<HashMap<PathBuf, Use>>> = StdMutex::new(None);

    /// What goes where: (target below the root, source, fstype, flags, data).
    fn table() -> Vec<(
        &'static str,
        &'static str,
        &'static str,
        libc::c_ulong,
        &'static str,
    )> {
        let nodev = libc::MS_NOSUID | libc::MS_NODEV;
        vec![
            ("proc", "proc", "proc", nodev | libc::MS_NOEXEC, ""),
            // Recursive, so that /sys/fs/cgroup (and its /proc/mounts lines) are there too.
            ("sys", "/sys", "", libc::MS_BIND | libc::MS_REC, ""),
            ("dev", "/dev", "", libc::MS_BIND, ""),
            ("dev/pts", "/dev/pts", "", libc::MS_BIND, ""),
            ("dev/shm", "tmpfs", "tmpfs", nodev, "mode=1777"),
            ("tmp", "tmpfs", "tmpfs", nodev, "mode=1777"),
        ]
    }

    pub(super) fn acquire(root: &Path) -> std::io::Result<()> {
        let mut guard = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let all = guard.get_or_insert_with(HashMap::new);
        if let Some(u) = all.get_mut(root) {
            u.users += 1;
            return Ok(());
        }
        let mut mounted: Vec<PathBuf> = Vec::new();
        for (rel, src, fstype, flags, data) in table() {
            let at = root.join(rel);
            if is_mountpoint(&at) {
                continue;
            }
            if let Err(e) =
                std::fs::create_dir_all(&at).and_then(|()| mount(src, &at, fstype, flags, data))
            {
                for m in mounted.iter().rev() {
                    let _ = unmount(m);
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("mounting {}: {e}", at.display()),
                ));
            }
            mounted.push(at);
        }
        all.insert(root.to_path_buf(), Use { users: 1, mounted });
        Ok(())
    }

    pub(super) fn release(root: &Path) -> std::io::Result<()> {
        let mut guard = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(all) = guard.as_mut() else {
            return Ok(());
        };
        let Some(u) = all.get_mut(root) else {
            return Ok(());
        };
        u.users -= 1;
        if u.users > 0 {
            return Ok(());
        }
        let u = all.remove(root).expect("present");
        let mut first_err = None;
        for m in u.mounted.iter().rev() {
            if let Err(e) = unmount(m) {
                first_err.get_or_insert(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", m.display()),
                ));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Is `path` exactly a mount point (listed in /proc/self/mountinfo)?
    fn is_mountpoint(path: &Path) -> bool {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return false;
        };
        let want = path.to_string_lossy();
        info.lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn c(s: &[u8]) -> std::io::Result<CString> {
        CString::new(s)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
    }

    fn mount(
        src: &str,
        at: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> std::io::Result<()> {
        let (src, at, fstype, data) = (
            c(src.as_bytes())?,
            c(at.as_os_str().as_bytes())?,
            c(fstype.as_bytes())?,
            c(data.as_bytes())?,
        );
        let is_bind = flags & libc::MS_BIND != 0;
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                at.as_ptr(),
                if is_bind {
                    std::ptr::null()
                } else {
                    fstype.as_ptr()
                },
                flags,
                if data.as_bytes().is_empty() {
                    std::ptr::null()
                } else {
                    data.as_ptr().cast()
                },
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if is_bind {
            // A bind mount of a shared mount would propagate mounts made below it back to the
            // host's tree (and unmounts, too): keep ours private.
            // SAFETY: as above; only the propagation type of our own new mount changes.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    at.as_ptr(),
                    std::ptr::null(),
                    libc::MS_PRIVATE | (flags & libc::MS_REC),
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                // SAFETY: undo the bind mount we just made.
                unsafe { libc::umount2(at.as_ptr(), libc::MNT_DETACH) };
                return Err(e);
            }
        }
        Ok(())
    }

    /// Unmount; a busy file system (a process still in the chroot, or mounts below a recursive
    /// bind) is detached lazily, with everything below it.
    fn unmount(at: &Path) -> std::io::Result<()> {
        let at = c(at.as_os_str().as_bytes())?;
        // SAFETY: umount2(2) with a NUL-terminated path.
        if unsafe { libc::umount2(at.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(at.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        Err(std::io::Error::last_os_error())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mountinfo_unescapes() {
            assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
            assert_eq!(unescape("/plain"), "/plain");
            assert_eq!(unescape(r"/x\04"), r"/x\04");
        }

        #[test]
        fn proc_is_a_mountpoint_and_root_subdir_is_not() {
            assert!(is_mountpoint(Path::new("/proc")));
            assert!(!is_mountpoint(Path::new("/proc/self")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Option<&str>, rootfs: Option<&str>) -> TargetFields {
        TargetFields {
            id: "q".into(),
            kind: "qemu-user".into(),
            arch: arch.map(Into::into),
            rootfs: rootfs.map(PathBuf::from),
            ..TargetFields::default()
        }
    }

    fn validate(c: &TargetFields) -> Vec<(&'static str, String)> {
        parse(c)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|(f, m)| (f.name(), m))
            .collect()
    }

    #[test]
    fn validation_names_the_field() {
        let fields = |c: &TargetFields| validate(c).into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert_eq!(fields(&cfg(Some("aarch64"), Some("/"))), Vec::<&str>::new());
        assert_eq!(fields(&cfg(Some("arm64"), Some("/"))), Vec::<&str>::new());
        assert_eq!(fields(&cfg(None, Some("/"))), vec!["arch"]);
        assert_eq!(fields(&cfg(Some("sparc"), Some("/"))), vec!["arch"]);
        assert_eq!(fields(&cfg(Some("aarch64"), None)), vec!["rootfs"]);
        let missing = validate(&cfg(Some("aarch64"), Some("/nonexistent/adaptest-rootfs")));
        assert_eq!(missing[0].0, "rootfs");
        assert!(missing[0].1.contains("does not exist"), "{}", missing[0].1);
        let mut c = cfg(Some("aarch64"), Some("/"));
        c.host = Some("h".into());
        assert_eq!(fields(&c), vec!["host"]);
    }

    #[test]
    fn resolves_absolute_links_inside_the_root() {
        let root = std::env::temp_dir().join(format!("adaptest-qu-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
        std::fs::write(
            root.join("usr/bin/mawk"),
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/alternatives/awk", root.join("usr/bin/awk")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/mawk", root.join("etc/alternatives/awk")).unwrap();
        let real = resolve_in_root(&root, &root.join("usr/bin/awk")).unwrap();
        assert_eq!(real, root.join("usr/bin/mawk"));
        assert_eq!(elf_machine_of(&real), Some(183));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
