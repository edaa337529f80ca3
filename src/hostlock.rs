//! A host-wide lock serializing builder network set-up.
//!
//! Two inner dockerds starting at the same moment on the host network fight over
//! iptables (`failed to create NAT chain`, test-environment.md §6), and two prepares
//! could pick the same network slot. Prepare therefore holds this lock from slot choice
//! until the inner dockerd answers. It is an advisory `flock` on a file every runnerx
//! on the host agrees on (`builder.lock_file`); the kernel drops it if we die.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct HostLock {
    file: File,
}

impl HostLock {
    /// Waits for the lock (polling, so cancellation is honoured) up to `timeout`.
    pub async fn acquire(
        path: &Path,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<HostLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        // Other users' runnerx must be able to take it too.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(HostLock { file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
            }
            if start.elapsed() > timeout {
                return Err(Error::Builder(format!(
                    "waited {}s for the host lock {}; another prepare holds it (is one stuck?)",
                    timeout.as_secs(),
                    path.display()
                )));
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let cancel = CancellationToken::new();
        let a = HostLock::acquire(&path, Duration::from_secs(5), &cancel)
            .await
            .unwrap();
        let e = HostLock::acquire(&path, Duration::from_millis(200), &cancel)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("another prepare holds it"), "{e}");
        drop(a);
        HostLock::acquire(&path, Duration::from_millis(200), &cancel)
            .await
            .unwrap();
    }
}
