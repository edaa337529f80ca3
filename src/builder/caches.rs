//! The host's cache volumes as a whole (layer caches and `cache_dir` volumes, all
//! labelled `runnerx.cache`), kept within `cache.total` and above `cache.min_free`:
//! idle caches are evicted least recently *used* first; a cache a builder mounts is
//! never touched. Sizes come from the last-use records (measured at the cleanup that
//! last used each cache), so eviction measures only caches it has no record of.
//! Deciding and removing happen under the host lock, like choosing a cache slot.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::lifecycle::Held;
use super::{LABEL_CACHE, created_of};
use crate::error::{Error, Result};
use crate::host::cache_use;
use crate::host::lock::HostLock;
use crate::settings::Settings;

/// One cache volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cache {
    /// Volume name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Unix seconds of its last use (its creation when never recorded).
    pub last_use: u64,
    /// Mounted by a builder right now.
    pub held: bool,
    /// Whether `size` was measured (a listing without the host lock does not measure).
    pub measured: bool,
}

impl Cache {
    /// `NAME: 12 MiB, last used 30s ago[, in use]`.
    pub(crate) fn describe(&self, now: u64) -> String {
        let size = if self.measured {
            format!("{} MiB", self.size >> 20)
        } else {
            "size not recorded yet".to_string()
        };
        format!(
            "{}: {size}, last used {}s ago{}",
            self.name,
            now.saturating_sub(self.last_use),
            if self.held { ", in use" } else { "" }
        )
    }
}

/// `N MiB in total; cache.total = …` (or the hint to set one).
pub(crate) fn summary(caches: &[Cache], settings: &Settings) -> String {
    let total: u64 = caches.iter().map(|c| c.size).sum();
    match settings.cache.total {
        Some(b) => format!("{} MiB in total; cache.total = {b}", total >> 20),
        None => format!(
            "{} MiB in total; no cache.total (set one so cleanup evicts idle caches)",
            total >> 20
        ),
    }
}

/// The caches to evict, least recently used first, until `total` bytes are left (pure).
pub(crate) fn to_fit(caches: &[Cache], total: u64) -> Vec<&Cache> {
    let mut sum: u64 = caches.iter().map(|c| c.size).sum();
    let mut idle: Vec<&Cache> = caches.iter().filter(|c| !c.held).collect();
    idle.sort_by_key(|c| (c.last_use, c.name.clone()));
    let mut out = vec![];
    for c in idle {
        if sum <= total {
            break;
        }
        sum -= c.size;
        out.push(c);
    }
    out
}

/// The host's caches, with sizes. `measure`: measure caches with no recorded size —
/// only under the host lock, since measuring mounts the volume and would make a
/// concurrent removal fail.
pub(crate) async fn inventory(
    engine: &Engine,
    settings: &Settings,
    measure: bool,
) -> Result<Vec<Cache>> {
    let state = &settings.cache.state_dir;
    let held = Held::list(engine).await?;
    let mut out = vec![];
    for v in engine.volumes_with_label(LABEL_CACHE).await? {
        let last_use = cache_use::last_use(state, &v.name).unwrap_or_else(|| created_of(&v.labels));
        let (size, measured) = match cache_use::size(state, &v.name) {
            Some(s) => (s, true),
            None if measure => {
                let s = engine.volume_size(&v.name, &settings.builder.image).await?;
                cache_use::record_size(state, &v.name, s, last_use);
                (s, true)
            }
            None => (0, false),
        };
        out.push(Cache {
            last_use,
            held: held.caches.contains(&v.name),
            name: v.name,
            size,
            measured,
        });
    }
    Ok(out)
}

async fn evict(engine: &Engine, settings: &Settings, victims: &[&Cache], why: &str) {
    for c in victims {
        tracing::info!(
            "evicting cache {} ({} MiB, idle {}s): {why}",
            c.name,
            c.size >> 20,
            crate::host::unix_now().saturating_sub(c.last_use)
        );
        match engine.remove_volume(&c.name).await {
            Ok(()) => cache_use::forget(&settings.cache.state_dir, &c.name),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

async fn lock(settings: &Settings, cancel: &CancellationToken) -> Result<HostLock> {
    let wait = settings.builder.boot_timeout * 3 + std::time::Duration::from_secs(30);
    HostLock::acquire(&settings.builder.lock_file, wait, cancel).await
}

/// Keeps all caches within `cache.total` (run after each cleanup).
pub(crate) async fn enforce_total(
    engine: &Engine,
    settings: &Settings,
    root_dir: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some(total) = settings.cache.total else {
        return Ok(());
    };
    let disk = cache_use::disk(Path::new(root_dir)).map_or(0, |(size, _)| size);
    let budget = total.bytes(disk);
    let _lock = lock(settings, cancel).await?;
    let caches = inventory(engine, settings, true).await?;
    let victims = to_fit(&caches, budget);
    if !victims.is_empty() {
        let why = format!(
            "caches total more than cache.total ({total} = {} MiB)",
            budget >> 20
        );
        evict(engine, settings, &victims, &why).await;
    }
    Ok(())
}

/// Makes sure the disk holding Docker's data root has `cache.min_free` free before a
/// builder is made: evicts idle caches (least recently used first) when that is
/// enough, else fails as a system failure naming free space, the floor and the
/// biggest caches — and evicts nothing it could not use.
pub(crate) async fn ensure_free(
    engine: &Engine,
    settings: &Settings,
    root_dir: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some((size, free)) = cache_use::disk(Path::new(root_dir)) else {
        return Ok(());
    };
    let floor = settings.cache.min_free.bytes(size);
    if free >= floor {
        return Ok(());
    }
    let _lock = lock(settings, cancel).await?;
    let mut caches = inventory(engine, settings, true).await?;
    let idle: u64 = caches.iter().filter(|c| !c.held).map(|c| c.size).sum();
    if free + idle >= floor {
        let total: u64 = caches.iter().map(|c| c.size).sum();
        let victims = to_fit(&caches, total.saturating_sub(floor - free));
        let why = format!(
            "free space below cache.min_free ({})",
            settings.cache.min_free
        );
        evict(engine, settings, &victims, &why).await;
        if cache_use::disk(Path::new(root_dir)).is_some_and(|(_, f)| f >= floor) {
            return Ok(());
        }
    }
    caches.sort_by_key(|c| std::cmp::Reverse(c.size));
    let biggest: Vec<String> = caches
        .iter()
        .take(3)
        .map(|c| format!("{} {} MiB", c.name, c.size >> 20))
        .collect();
    Err(Error::DiskFull(format!(
        "{} MiB free on the disk of {root_dir}, below cache.min_free ({} = {} MiB); biggest caches: {}; free disk space or lower cache.min_free",
        free >> 20,
        settings.cache.min_free,
        floor >> 20,
        if biggest.is_empty() {
            "none".to_string()
        } else {
            biggest.join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(name: &str, size: u64, last_use: u64, held: bool) -> Cache {
        Cache {
            name: name.into(),
            size,
            last_use,
            held,
            measured: true,
        }
    }

    #[test]
    fn the_least_recently_used_idle_caches_go_first() {
        let caches = [
            cache("old", 40, 100, false),
            cache("held-oldest", 40, 50, true),
            cache("mid", 40, 200, false),
            cache("new", 40, 300, false),
        ];
        let names = |v: Vec<&Cache>| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(to_fit(&caches, 160)), Vec::<String>::new());
        assert_eq!(names(to_fit(&caches, 120)), ["old"]);
        assert_eq!(names(to_fit(&caches, 80)), ["old", "mid"]);
        // The held cache is never evicted, even if the budget cannot be met.
        assert_eq!(names(to_fit(&caches, 10)), ["old", "mid", "new"]);
    }
}
