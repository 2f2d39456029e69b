//! Warm start: the state of a freshly booted guest (RAM and devices, saved by a QMP `migrate`
//! to a file while the guest is paused, plus the qcow2 overlay its disk writes went to), cached
//! under `<cache>/qemu-system/warm/<arch>-<key>/`, where the key hashes the machine's
//! [`Machine::signature`](super::machine::Machine::signature) (QEMU version, machine, CPU,
//! memory, kernel, command line, base disk identity …). Later targets with the same machine
//! restore it with `-incoming` over a new overlay backed by the frozen one instead of booting.
//!
//! Architecture invariant: a snapshot directory counts only once `warm.json` exists (written
//! last); its `disk.qcow2` is never written again after the save, since per-run overlays use it
//! as a read-only backing file.

use super::machine::Machine;
use crate::file_lock::FileLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
