//! Warm start: the state of a freshly booted guest (RAM and devices, saved by a QMP `migrate`
//! to a file while the guest is paused, plus the qcow2 overlay its disk writes went to), cached
//! under `<cache>/qemu-system/warm/<arch>-<key>/`, where the key hashes the machine's
//! [`Machine::signature`](super::machine::Machine::signature) (QEMU version, machine, CPU,
//! memory, kernel, command line, base disk identity …). Later targets with the same machine
//! restore it with `-incoming` over a new overlay backed by the frozen one instead of booting.
//! This module holds both the cache and the two QMP procedures: [`QemuSystemTarget::warm_start`]
//! (restore, saving first when there is no snapshot; any restore problem falls back to a cold
//! boot) and the save itself.
//!
//! Architecture invariant: a snapshot directory counts only once `warm.json` exists (written
//! last); its `disk.qcow2` is never written again after the save, since per-run overlays use it
//! as a read-only backing file.

use super::QUIT_GRACE;
use super::QemuSystemTarget;
use super::boot::create_overlay;
use super::machine::{Launch, Machine, Root};
use super::ports::wait_ready;
use super::process::{Qemu, spawn_qemu};
use super::qmp::{self, Qmp};
use crate::file_lock::FileLock;
use crate::text::error_chain;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A restore that takes longer than this is abandoned for a cold boot.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(90);
/// Saving a guest's state to the cache.
const SAVE_TIMEOUT: Duration = Duration::from_secs(180);

/// Bump when the way snapshots are made changes. 2: the guest's RAM is a file of its own
/// (`ram.bin`, mapped privately on restore) and the state holds only the devices.
pub(crate) const WARM_FORMAT: u32 = 2;

/// `warm.json`: how a snapshot was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WarmMeta {
    pub format: u32,
    pub signature: String,
    pub created_at: u64,
    pub boot_seconds: f64,
    pub save_seconds: f64,
    pub state_bytes: u64,
}

/// A saved guest.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub dir: PathBuf,
    pub meta: WarmMeta,
}

impl Snapshot {
    /// The frozen overlay holding the guest's disk writes up to the save.
    pub(crate) fn disk(&self) -> PathBuf {
        disk_path(&self.dir)
    }

    /// The saved device state.
    pub(crate) fn state(&self) -> PathBuf {
        state_path(&self.dir)
    }

    /// The saved RAM.
    pub(crate) fn ram(&self) -> PathBuf {
        ram_path(&self.dir)
    }
}

pub(crate) fn disk_path(dir: &Path) -> PathBuf {
    dir.join("disk.qcow2")
}

pub(crate) fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.bin")
}

/// The saved guest's RAM: written by the guest itself while it runs (shared mapping), so the
/// migration stream skips it (`x-ignore-shared`); a restore maps it privately and faults pages
/// in as the guest touches them instead of copying all of them through the stream first.
pub(crate) fn ram_path(dir: &Path) -> PathBuf {
    dir.join("ram.bin")
}

/// The snapshot directory of `machine`.
pub(crate) fn dir(cache_dir: &Path, machine: &Machine) -> PathBuf {
    let digest = Sha256::digest(format!("warm={WARM_FORMAT}\n{}", machine.signature()).as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache_dir
        .join("qemu-system")
        .join("warm")
        .join(format!("{}-{key}", machine.arch.name()))
}

/// The complete snapshot in `dir`, if there is one.
pub(crate) fn find(dir: &Path) -> Option<Snapshot> {
    let text = std::fs::read_to_string(dir.join("warm.json")).ok()?;
    let meta: WarmMeta = serde_json::from_str(&text).ok()?;
    let ok = meta.format == WARM_FORMAT && state_path(dir).is_file() && ram_path(dir).is_file();
    ok.then(|| Snapshot {
        dir: dir.to_path_buf(),
        meta,
    })
}

/// Lock a snapshot directory against concurrent creation (blocks, off the async workers).
pub(crate) async fn lock(dir: &Path) -> Option<FileLock> {
    let path = dir.with_extension("lock");
    tokio::task::spawn_blocking(move || FileLock::exclusive(&path))
        .await
        .ok()
        .and_then(Result::ok)
}

/// Record a finished snapshot (the state file must already be in place).
pub(crate) fn commit(dir: &Path, meta: &WarmMeta) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(meta).map_err(std::io::Error::other)?;
    let tmp = dir.join("warm.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("warm.json"))
}

/// Forget a snapshot (it failed to restore, or a creation was interrupted).
pub(crate) fn discard(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("warm.json"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Is warm start switched off (`ADAPTEST_QEMU_WARM=off`)?
pub(crate) fn disabled() -> bool {
    std::env::var("ADAPTEST_QEMU_WARM")
        .is_ok_and(|v| matches!(v.trim(), "off" | "0" | "no" | "false"))
}

/// A guest brought up from a saved state.
pub(super) struct Restored {
    pub(super) qemu: Qemu,
    pub(super) hostfwd: HashMap<u16, u16>,
    pub(super) overlay: Option<PathBuf>,
    pub(super) meta: WarmMeta,
    /// The state was saved by this start (a cold boot came first).
    pub(super) created: bool,
    /// Launching QEMU to sshd answering.
    pub(super) seconds: f64,
}

/// Why starting failed: a restore problem falls back to a cold boot, anything else is final.
pub(super) enum StartError {
    Fallback(String),
    Fatal(String),
}

impl QemuSystemTarget {
    /// Restore the machine's saved state, saving one first if there is none.
    pub(super) async fn warm_start(
        &self,
        machine: &Machine,
        sock_dir: &Path,
    ) -> Result<Restored, StartError> {
        let sdir = dir(&self.cache_dir, machine);
        let mut created = false;
        let snapshot = match find(&sdir) {
            Some(s) => s,
            None => {
                let lock = lock(&sdir).await;
                let s = match find(&sdir) {
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
        let _ = tokio::fs::copy(
            snapshot.dir.join("console.log"),
            self.dir.join("console-boot.log"),
        )
        .await;
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
                let msg = self
                    .boot_error(&format!("restoring the saved guest failed: {why}"), &launch)
                    .await;
                let lock = lock(&sdir).await;
                discard(&sdir);
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
    ) -> Result<Snapshot, StartError> {
        discard(sdir);
        std::fs::create_dir_all(sdir)
            .map_err(|e| StartError::Fallback(format!("cannot create {}: {e}", sdir.display())))?;
        let overlay = if let Root::Disk { base, format } = &machine.root {
            let o = disk_path(sdir);
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
            ram_file: Some((ram_path(sdir), true)),
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
            let msg = self.boot_error(&why, &launch).await;
            discard(sdir);
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
            discard(sdir);
            return Err(StartError::Fallback(format!(
                "saving the booted guest failed: {why}"
            )));
        }
        let state = state_path(sdir);
        let committed = std::fs::rename(&tmp, &state).and_then(|()| {
            let meta = WarmMeta {
                format: WARM_FORMAT,
                signature: machine.signature(),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                boot_seconds,
                save_seconds: save_started.elapsed().as_secs_f64(),
                state_bytes: std::fs::metadata(&state).map_or(0, |m| m.len()),
            };
            commit(sdir, &meta)
        });
        if let Err(e) = committed {
            discard(sdir);
            return Err(StartError::Fallback(format!(
                "cannot store the saved guest in {}: {e}",
                sdir.display()
            )));
        }
        find(sdir).ok_or_else(|| {
            StartError::Fallback(format!(
                "the saved guest in {} is unreadable",
                sdir.display()
            ))
        })
    }
}

/// Load the saved device state into a QEMU started with `-incoming defer` (its RAM is the
/// snapshot's file, so the stream skips it: `x-ignore-shared` on both sides), wait for the
/// load, then `cont` (the state was saved paused).
async fn resume_after_incoming(qemu: &Qemu, state: &Path, deadline: Instant) -> Result<(), String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut q = tokio::select! {
        q = Qmp::connect(&qemu.qmp, remaining.min(Duration::from_secs(30))) => q.map_err(|e| error_chain(&e))?,
        exit = qemu.ended() => return Err(format!("QEMU {exit} while loading the saved state")),
    };
    q.execute("migrate-set-capabilities", Some(ignore_shared()))
        .await
        .map_err(|e| error_chain(&e))?;
    let uri = format!(
        "exec:cat {}",
        crate::target::shell_quote(&state.to_string_lossy())
    );
    q.execute("migrate-incoming", Some(serde_json::json!({ "uri": uri })))
        .await
        .map_err(|e| error_chain(&e))?;
    loop {
        let st = q
            .execute("query-status", None)
            .await
            .map_err(|e| error_chain(&e))?;
        match st["status"].as_str().unwrap_or("") {
            "running" => return Ok(()),
            "inmigrate" => {}
            _ => {
                q.execute("cont", None).await.map_err(|e| error_chain(&e))?;
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
        .map_err(|e| error_chain(&e))?;
    let e = |e: qmp::QmpError| error_chain(&e);
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
    let uri = format!(
        "exec:cat > {}",
        crate::target::shell_quote(&file.to_string_lossy())
    );
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
