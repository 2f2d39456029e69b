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
//!
//! This file holds the target, its state and the [`Target`] methods; the rest is by concept:
//! [`config`] (the plan's fields, validated and resolved), [`boot`] (accelerator, cold boot,
//! login), [`process`] (the QEMU child and its console), [`ports`] (`hostfwd` and readiness),
//! [`warm`] (saved states: making, restoring, caching), [`machine`] (the command line),
//! [`qmp`] and [`kvm`].

mod boot;
mod config;
mod kvm;
mod machine;
mod ports;
mod process;
mod qmp;
mod warm;

pub(super) use config::{create, parse};

use super::{ExecOutput, ExecRequest, SshTarget, Target, TargetError};
use crate::env_probe::{environment_from, probe_request};
use adaptest_schema::Environment;
use config::Setup;
use machine::{Accel, Machine};
use ports::{add_hostfwd, reachable, remove_hostfwd};
use process::{Qemu, tail_lines};
use qmp::Qmp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How long `quit` may take before the process is killed.
const QUIT_GRACE: Duration = Duration::from_secs(10);
/// Console lines quoted in errors of commands on a guest that died.
const DEAD_TAIL_LINES: usize = 4;

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

    /// A command failed for want of a channel: say whether the guest itself is gone.
    async fn channel_error(&self, guest: &Guest, e: TargetError) -> TargetError {
        if let Some(exit) = guest.qemu.exited_within(Duration::from_secs(2)).await {
            let console = tail_lines(&guest.qemu.console, DEAD_TAIL_LINES).await;
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
