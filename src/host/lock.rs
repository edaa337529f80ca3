//! A host-wide lock for the little state builders really share.
//!
//! Held while a project cache slot is chosen (two running builders must never mount
//! one cache) and by gc per cache volume. Nothing else is shared: every builder's
//! daemons have their own network namespace, so prepares without a cache never take
//! it.
//!
//! It is an advisory `flock` on `builder.lock_file` (default `/run/runnerx/lock`); the
//! kernel drops it if we die. Its directory is created 0700 and the file 0600, so no
//! other local user can hold it and stall every prepare.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct HostLock {
    file: File,
}

impl HostLock {
    /// Waits for the lock (polling, so cancellation is honoured) up to `timeout`.
    pub(crate) async fn acquire(
        path: &Path,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<HostLock> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    Error::HostLock(format!(
                        "cannot create the lock directory {} ({e}); run runnerx as root or set builder.lock_file to a path in a directory only this user may write",
                        dir.display()
                    ))
                })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(HostLock { file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
            }
            if start.elapsed() > timeout {
                return Err(Error::HostLock(format!(
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

    #[tokio::test]
    async fn lock_lives_in_a_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/runnerx/lock");
        let _l = HostLock::acquire(&path, Duration::from_secs(1), &CancellationToken::new())
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}
