//! `gc --older-than D`: remove what jobs of a dead runner left behind.
//!
//! gitlab-runner always runs cleanup, unless the runner itself died (SIGKILL, crash,
//! reboot). Then builders keep running and volumes and bridges stay. gc removes, per
//! job, everything older than the given age whose runner is gone — each builder
//! carries a lease (pid and start time of the process that prepared it), and a live
//! lease keeps the job whatever its age — and host bridges named `runnerx<N>` that no
//! kept builder claims. Every decision and its reason is printed on stdout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::builder::{LABEL_BRIDGE, LABEL_CACHE, LABEL_JOB, LABEL_LEASE, created_of};
use crate::host;
use tokio_util::sync::CancellationToken;

use crate::builder::engine::Engine;
use crate::builder::lifecycle::{Held, delete_bridge, teardown_job};
use crate::error::Result;
use crate::host::lock::HostLock;
use crate::settings::Settings;

/// Runs gc.
pub(crate) async fn gc(
    settings: &Settings,
    engine: &Engine,
    older_than: Duration,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let now = crate::host::unix_now();
    let cutoff = now.saturating_sub(older_than.as_secs());
    let old = |created: Option<u64>| created.is_some_and(|c| c <= cutoff);

    // Job id -> newest creation time of any of its objects.
    let mut jobs: BTreeMap<String, u64> = BTreeMap::new();
    // Job id -> the lease of its builder (the process that prepared it).
    let mut leases: BTreeMap<String, String> = BTreeMap::new();
    let mut claimed_bridges = BTreeSet::new();
    for c in engine.containers_with_label(LABEL_JOB).await? {
        let labels = c.labels.unwrap_or_default();
        let Some(job) = labels.get(LABEL_JOB) else {
            continue;
        };
        // The label, else the engine's creation time.
        let created = Some(created_of(&labels))
            .filter(|c| *c > 0)
            .or(c.created.and_then(|v| u64::try_from(v).ok()))
            .unwrap_or(0);
        if let Some(b) = labels.get(LABEL_BRIDGE) {
            claimed_bridges.insert((b.clone(), job.clone()));
        }
        if let Some(l) = labels.get(LABEL_LEASE) {
            leases.insert(job.clone(), l.clone());
        }
        let e = jobs.entry(job.clone()).or_insert(0);
        *e = (*e).max(created);
    }
    for v in engine.volumes_with_label(LABEL_JOB).await? {
        let Some(job) = v.labels.get(LABEL_JOB) else {
            continue;
        };
        let created = created_of(&v.labels);
        let e = jobs.entry(job.clone()).or_insert(0);
        *e = (*e).max(created);
    }

    // A job is over when its objects are older than --older-than AND the process that
    // prepared it (gitlab-runner) is gone: a live runner always runs cleanup itself.
    let mut removed = 0;
    let mut kept = BTreeSet::new();
    for (job, created) in &jobs {
        let age = now.saturating_sub(*created);
        if !old(Some(*created)) {
            println!("job {job}: kept, created {age}s ago (younger than --older-than)");
            kept.insert(job.clone());
            continue;
        }
        let why = match leases.get(job) {
            Some(lease) if host::lease_alive(lease) => {
                println!(
                    "job {job}: kept, created {age}s ago but its runner (pid {}) still runs",
                    host::lease_pid(lease)
                );
                kept.insert(job.clone());
                continue;
            }
            Some(lease) => format!("its runner (pid {}) is gone", host::lease_pid(lease)),
            None => "no runner holds it".to_string(),
        };
        println!(
            "job {job}: created {age}s ago and {why}{}",
            if dry_run {
                " (would remove)"
            } else {
                "; removing"
            }
        );
        if !dry_run && let Err(e) = teardown_job(engine, job, &settings.builder.image).await {
            tracing::warn!("job {job}: {e}");
        }
        removed += 1;
    }

    // Bridges no remaining builder claims (their builder was removed by hand).
    let live: BTreeSet<String> = claimed_bridges
        .iter()
        .filter(|(_, job)| kept.contains(job))
        .map(|(b, _)| b.clone())
        .collect();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let is_ours = name
                .strip_prefix("runnerx")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !is_ours || live.contains(&name) {
                continue;
            }
            println!(
                "bridge {name}: no builder claims it{}",
                if dry_run {
                    " (would delete)"
                } else {
                    "; deleting"
                }
            );
            if !dry_run
                && let Err(e) = delete_bridge(engine, "gc", &name, &settings.builder.image).await
            {
                tracing::warn!("{e}");
            }
        }
    }
    prune_caches(settings, engine, now, dry_run, cancel).await?;
    if dry_run {
        list_caches(settings, engine).await?;
    }
    println!(
        "gc: {removed} job(s) older than {}s{}",
        older_than.as_secs(),
        if dry_run {
            " would be removed"
        } else {
            " removed"
        }
    );
    Ok(())
}

/// Prints every cache's size, last use and whether a builder mounts it, and the total
/// against `cache.total`.
async fn list_caches(settings: &Settings, engine: &Engine) -> Result<()> {
    let caches = crate::builder::caches::inventory(engine, settings, false).await?;
    let now = crate::host::unix_now();
    for c in &caches {
        println!("cache {}", c.describe(now));
    }
    println!(
        "caches: {}",
        crate::builder::caches::summary(&caches, settings)
    );
    Ok(())
}

/// Drops project cache volumes no builder mounts that are older than `cache.max_age`
/// or larger than `cache.max_size`.
///
/// Prepare picks cache volumes under the host lock, so each volume is checked, measured
/// and removed under it too: a prepare never mounts a volume being measured or deleted,
/// and two gc runs never trip over each other's `du` helper. The lock is held per
/// volume, so a prepare waits for at most one measurement.
async fn prune_caches(
    settings: &Settings,
    engine: &Engine,
    now: u64,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let caches = engine.volumes_with_label(LABEL_CACHE).await?;
    let lock_wait = settings.builder.boot_timeout * 3 + Duration::from_secs(30);
    for v in caches {
        let _lock = HostLock::acquire(&settings.builder.lock_file, lock_wait, cancel).await?;
        if Held::list(engine).await?.caches.contains(&v.name) {
            continue;
        }
        // From its last use (its creation when no use was recorded).
        let last_use = crate::host::cache_use::last_use(&settings.cache.state_dir, &v.name)
            .unwrap_or_else(|| created_of(&v.labels));
        let age = now.saturating_sub(last_use);
        let why = if age > settings.cache.max_age.as_secs() {
            format!("{age}s old > cache.max_age")
        } else {
            match engine.volume_size(&v.name, &settings.builder.image).await {
                Ok(size) if size > settings.cache.max_size => {
                    format!("{size} bytes > cache.max_size")
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            }
        };
        println!(
            "cache {}: {why}{}",
            v.name,
            if dry_run {
                " (would remove)"
            } else {
                "; removing"
            }
        );
        if !dry_run {
            match engine.remove_volume(&v.name).await {
                Ok(()) => crate::host::cache_use::forget(&settings.cache.state_dir, &v.name),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
    Ok(())
}
