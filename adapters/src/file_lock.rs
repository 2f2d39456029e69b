//! Advisory file locks (`flock(2)`, through std's `File::lock`) that serialize work on shared
//! cache entries across processes: one image build per recipe, one warm-start snapshot per
//! machine, one KVM probe.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// An exclusive lock, held until dropped (closing the file releases it, also when the process
/// dies, so a crash never leaves a stale lock behind).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Block until `path` (created if missing, with its parents) is locked exclusively.
    pub(crate) fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            match file.lock() {
                Ok(()) => break,
                // A signal woke the wait up: keep waiting.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::TryLockError;

    #[test]
    fn lock_is_exclusive_across_descriptors() {
        let path = std::env::temp_dir().join(format!("adaptest-lock-{}", std::process::id()));
        let held = FileLock::exclusive(&path).expect("lock");
        let other = File::open(&path).expect("open");
        assert!(
            matches!(other.try_lock(), Err(TryLockError::WouldBlock)),
            "a second exclusive lock must not be granted"
        );
        drop(held);
        other.try_lock().expect("free once the holder is dropped");
        std::fs::remove_file(&path).expect("rm");
    }
}
