//! Advisory file locks (`flock(2)`) that serialize work on shared cache entries across
//! processes: one image build per recipe, one warm-start snapshot per machine, one KVM probe.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
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
            // SAFETY: flock(2) on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_across_descriptors() {
        let path = std::env::temp_dir().join(format!("adaptest-lock-{}", std::process::id()));
        let held = FileLock::exclusive(&path).expect("lock");
        let other = File::open(&path).expect("open");
        // SAFETY: flock(2) on a descriptor we own.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second exclusive lock must not be granted");
        drop(held);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
        std::fs::remove_file(&path).expect("rm");
    }
}
