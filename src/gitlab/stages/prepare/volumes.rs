//! prepare's storage steps: the builder's `/var/lib/docker` (the job's own volume, or
//! a per-project cache slot chosen under the host lock), the project's `cache_dir`
//! volume, and the inner daemon's share of `cache.total`.
//!
//! Invariant: two running builders never mount the same cache slot (the slot is
//! chosen and claimed by the container's label while the host lock is held).

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::builder::engine::Engine;
use crate::builder::lifecycle::Held;
use crate::builder::{self, DataRoot};
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::host::lock::HostLock;
use crate::settings::{CacheMode, Settings};

/// The builder's /var/lib/docker: the job's own volume, or — with per-project caching —
/// the first of the project's cache volumes no other builder mounts (chosen under the
/// host lock, so two running builders never share one).
pub(super) async fn choose_volume(
    settings: &Settings,
    job: &Job,
    engine: &Engine,
    held: &Held,
    now: u64,
    isolation: &str,
) -> Result<DataRoot> {
    let own = || async {
        let name = builder::volume_name(&job.id);
        engine
            .create_volume(&name, builder::job_labels(&job.id, now))
            .await?;
        Ok::<_, Error>(DataRoot::Job(name))
    };
    let (CacheMode::PerProject, Some(project)) = (settings.cache.mode, job.project.as_deref())
    else {
        return own().await;
    };
    let existing = engine
        .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_PROJECT))
        .await?;
    for slot in 0..settings.cache.slots {
        let name = builder::cache_volume_name(project, slot);
        if held.caches.contains(&name) {
            continue;
        }
        let mut warm = false;
        if let Some(v) = existing.iter().find(|v| v.name == name) {
            // `cache.max_age` counts from the last use (the creation when none is recorded).
            let created = crate::host::cache_use::last_use(&settings.cache.state_dir, &name)
                .unwrap_or_else(|| builder::created_of(&v.labels));
            // Caches from before isolation labels were made by privileged builders.
            let made_by = v
                .labels
                .get(builder::LABEL_ISOLATION)
                .map_or("privileged", String::as_str);
            if now.saturating_sub(created) > settings.cache.max_age.as_secs() {
                tracing::info!("cache {name} is older than cache.max_age; starting it afresh");
                engine.remove_volume(&name).await?;
            } else if made_by != isolation {
                tracing::info!(
                    "cache {name} was filled by a {made_by} builder (its files belong to another uid map); starting it afresh for a {isolation} builder"
                );
                engine.remove_volume(&name).await?;
            } else {
                warm = true;
            }
        }
        if !warm {
            engine
                .create_volume(&name, builder::cache_labels(project, &name, now, isolation))
                .await?;
        }
        tracing::info!(
            "{} cache {name} for project {project}",
            if warm { "using warm" } else { "creating" }
        );
        return Ok(DataRoot::Cache { name, warm });
    }
    tracing::warn!(
        "all {} cache slots of project {project} are in use; this job builds without cache (raise cache.slots)",
        settings.cache.slots
    );
    own().await
}

/// A kept cache's share of `cache.total` (`total / slots`), for the inner daemon's
/// build cache GC; `None` without per-project caches or a total.
pub(super) fn gc_keep_storage(settings: &Settings, root_dir: &str) -> Option<u64> {
    let total = settings.cache.total?;
    if settings.cache.mode != CacheMode::PerProject {
        return None;
    }
    let disk = crate::host::cache_use::disk(Path::new(root_dir)).map_or(0, |(size, _)| size);
    Some(total.bytes(disk) / u64::from(settings.cache.slots.max(1)))
}

/// The project's `cache_dir` volume (created on first use), shared by the project's
/// jobs as the docker executor shares its cache volume: gitlab-runner's archiver
/// writes each archive to a temporary file and renames it. Jobs without a trusted
/// project id keep their cache inside the builder.
pub(super) async fn cache_dir(
    job: &Job,
    engine: &Engine,
    now: u64,
    isolation: &str,
) -> Result<Option<String>> {
    let Some(project) = job.project.as_deref() else {
        return Ok(None);
    };
    let name = builder::cache_dir_volume_name(project, isolation);
    let existing = engine
        .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_DIR))
        .await?;
    if !existing.iter().any(|v| v.name == name) {
        let labels = builder::cache_dir_labels(project, &name, now, isolation);
        // Two first jobs of a project may race here; the engine keeps one volume.
        if let Err(e) = engine.create_volume(&name, labels).await
            && !engine
                .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_DIR))
                .await?
                .iter()
                .any(|v| v.name == name)
        {
            return Err(e);
        }
    }
    Ok(Some(name))
}

pub(super) fn uses_cache(settings: &Settings, job: &Job) -> bool {
    settings.cache.mode == CacheMode::PerProject && job.project.is_some()
}

pub(super) async fn take_lock(settings: &Settings, cancel: &CancellationToken) -> Result<HostLock> {
    let b = &settings.builder;
    HostLock::acquire(
        &b.lock_file,
        b.boot_timeout * 3 + Duration::from_secs(30),
        cancel,
    )
    .await
}
