//! Bringing a guest up: the accelerator, the launch files, a cold boot over a fresh overlay
//! (or a warm start, [`super::warm`]), the SSH login, and boot errors quoting the console.

use super::machine::{Accel, Launch, Machine, Root};
use super::ports::wait_ready;
use super::process::{Qemu, spawn_qemu, tail_lines};
use super::warm::{self, StartError};
use super::{Guest, QemuSystemTarget, StartInfo, kvm};
use crate::image::Arch;
use crate::target::{AccelChoice, SshTarget, Target};
use crate::text::error_chain;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Console lines quoted in boot errors.
const BOOT_TAIL_LINES: usize = 30;

impl QemuSystemTarget {
    /// Bring the guest up: warm (restore) when possible, else a cold boot.
    pub(super) async fn boot(&self) -> Result<Guest, String> {
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
                    return Err(self.boot_error(&why, &launch).await);
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
                error_chain(&e)
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
            // A restored guest shares its entropy pool with every other restore of the
            // snapshot: it must get fresh bytes, never a fixed fallback.
            let seed: String = match random_bytes(64) {
                Ok(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
                Err(e) => {
                    qemu.kill_and_wait().await;
                    return Err(format!(
                        "cannot reseed the restored guest: no random bytes from the host: {e}"
                    ));
                }
            };
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
                    error_chain(&e)
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

    pub(super) fn launch(
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

    /// A boot failure with the console's and QEMU's last words.
    pub(super) async fn boot_error(&self, why: &str, launch: &Launch) -> String {
        let mut s = why.to_string();
        let console = tail_lines(&launch.console, BOOT_TAIL_LINES).await;
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
        let stderr = tail_lines(&stderr_path, 10).await;
        if !stderr.trim().is_empty() {
            s.push_str(&format!("\nQEMU said:\n{stderr}"));
        }
        s
    }
}

/// `qemu-img create -f qcow2 -b BASE -F FMT OVERLAY` (replacing an old overlay).
pub(super) async fn create_overlay(
    base: &Path,
    format: &str,
    overlay: &Path,
) -> Result<(), String> {
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

/// `n` bytes from the operating system's generator.
fn random_bytes(n: usize) -> Result<Vec<u8>, getrandom::Error> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}
