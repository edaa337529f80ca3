//! When each cache volume was last used and how big it was then, as files on the
//! runner host (`<state_dir>/cache-use/<volume>`): the mtime is the last prepare or
//! cleanup that used it, the content its size measured at that cleanup. It survives
//! runner restarts, and is what eviction and `cache.max_age` count from; eviction
//! never has to measure every cache again.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

fn record(state_dir: &Path, volume: &str) -> PathBuf {
    state_dir.join("cache-use").join(volume)
}

/// Records that `volume` is used now, and its size when known (best effort: a
/// warning, never a failure).
pub(crate) fn touch(state_dir: &Path, volume: &str, size: Option<u64>) {
    let path = record(state_dir, volume);
    let done = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| match size {
            Some(s) => std::fs::write(&path, s.to_string()),
            None => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now())),
        });
    if let Err(e) = done {
        tracing::warn!(
            "cannot record the use of cache {volume} in {}: {e}; set cache.state_dir to a writable directory",
            path.display()
        );
    }
}

/// Unix seconds of the last recorded use of `volume`.
pub(crate) fn last_use(state_dir: &Path, volume: &str) -> Option<u64> {
    std::fs::metadata(record(state_dir, volume))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// Records the size of a cache measured without being used, keeping `last_use`
/// (Unix seconds) as its last use: measuring is not using.
pub(crate) fn record_size(state_dir: &Path, volume: &str, size: u64, last_use: u64) {
    touch(state_dir, volume, Some(size));
    let when = UNIX_EPOCH + std::time::Duration::from_secs(last_use);
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open(record(state_dir, volume))
        .and_then(|f| f.set_modified(when));
}

/// The size recorded at the last cleanup that measured `volume`.
pub(crate) fn size(state_dir: &Path, volume: &str) -> Option<u64> {
    std::fs::read_to_string(record(state_dir, volume))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Drops the record of a removed volume.
pub(crate) fn forget(state_dir: &Path, volume: &str) {
    let _ = std::fs::remove_file(record(state_dir, volume));
}

/// `(size, free)` bytes of the filesystem holding `path`.
pub(crate) fn disk(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some((s.f_blocks as u64 * frsize, s.f_bavail as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_is_a_last_use() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_use(dir.path(), "v"), None);
        touch(dir.path(), "v", Some(42));
        let t = last_use(dir.path(), "v").unwrap();
        assert!(crate::host::unix_now().abs_diff(t) < 5);
        touch(dir.path(), "v", None);
        assert_eq!(
            size(dir.path(), "v"),
            Some(42),
            "a plain touch keeps the size"
        );
        record_size(dir.path(), "w", 7, 1_000);
        assert_eq!(size(dir.path(), "w"), Some(7));
        assert_eq!(
            last_use(dir.path(), "w"),
            Some(1_000),
            "measuring is not using"
        );
        forget(dir.path(), "v");
        assert_eq!(last_use(dir.path(), "v"), None);
        let (size, free) = disk(dir.path()).unwrap();
        assert!(size > 0 && free <= size);
    }
}
