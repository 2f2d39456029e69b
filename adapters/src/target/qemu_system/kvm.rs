//! Is KVM usable for x86_64 guests on this host? `/dev/kvm` opening is not enough (nested
//! virtualization can accept the device and then hang every Linux guest), so the probe boots
//! a real kernel under KVM with no root file system and waits for it to reach its panic. The
//! answer is cached per host kernel and QEMU version in `<cache>/qemu-system/kvm-probe.json`.

use crate::file_lock::FileLock;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A working KVM boots to the root-mount panic in a few seconds; a broken one never does.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The cached outcome of a probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KvmProbe {
    /// `<host kernel release>|<QEMU version>`: the probe is redone when either changes.
    pub key: String,
    pub usable: bool,
    pub detail: String,
    pub seconds: f64,
}

/// Probe (or recall) whether KVM boots Linux here, using `kernel` (an x86_64 kernel image).
pub(crate) async fn probe(kernel: &Path, cache_dir: &Path, qemu_version: &str) -> KvmProbe {
    let key = format!("{}|{qemu_version}", host_kernel());
    let dir = cache_dir.join("qemu-system");
    let path = dir.join("kvm-probe.json");
    if let Some(p) = read_cached(&path, &key) {
        return p;
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        // Not cached: a device that appears later (module loaded) is noticed next time.
        return KvmProbe {
            key,
            usable: false,
            detail: format!("/dev/kvm cannot be opened: {e}"),
            seconds: 0.0,
        };
    }
    let lock_path = dir.join("kvm-probe.lock");
    let lock = tokio::task::spawn_blocking(move || FileLock::exclusive(&lock_path))
        .await
        .ok()
        .and_then(Result::ok);
    if let Some(p) = read_cached(&path, &key) {
        return p;
    }
    let result = boot(kernel, &dir, key).await;
    if let Ok(text) = serde_json::to_string_pretty(&result) {
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    drop(lock);
    result
}

fn read_cached(path: &Path, key: &str) -> Option<KvmProbe> {
    let text = std::fs::read_to_string(path).ok()?;
    let p: KvmProbe = serde_json::from_str(&text).ok()?;
    (p.key == key).then_some(p)
}

async fn boot(kernel: &Path, dir: &Path, key: String) -> KvmProbe {
    let started = Instant::now();
    let log: PathBuf = dir.join("kvm-probe-console.log");
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::remove_file(&log);
    let mut cmd = tokio::process::Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
        "q35",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256M",
        "-serial",
    ])
    .arg(format!("file:{}", log.display()))
    .arg("-kernel")
    .arg(kernel)
    .args([
        "-append",
        "console=ttyS0 panic=-1 root=/dev/adaptest-kvm-probe rootwait=0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return KvmProbe {
                key,
                usable: false,
                detail: format!("cannot start qemu-system-x86_64: {e}"),
                seconds: 0.0,
            };
        }
    };
    let stderr = child.stderr.take();
    let waited = tokio::time::timeout(PROBE_TIMEOUT, child.wait()).await;
    let mut err_text = String::new();
    if waited.is_err() {
        // Hung: the nested-virtualization failure mode.
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if let Some(mut s) = stderr {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut err_text)).await;
    }
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    let reached = ["Kernel panic", "VFS: Unable to mount root", "Rebooting in"]
        .iter()
        .any(|m| console.contains(m));
    let seconds = started.elapsed().as_secs_f64();
    let detail = if reached {
        format!("a Linux guest booted under KVM in {seconds:.1}s")
    } else if waited.is_err() {
        format!(
            "a Linux guest under KVM did not reach userspace within {}s (nested virtualization?)",
            PROBE_TIMEOUT.as_secs()
        )
    } else {
        let e = err_text.trim();
        let e = e.lines().last().unwrap_or("no output");
        format!("QEMU with KVM failed: {e}")
    };
    KvmProbe {
        key,
        usable: reached,
        detail,
        seconds,
    }
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
