//! `cleanup`: remove everything labelled for the job.
//!
//! Tolerates "nothing there" (a failed prepare, a second cleanup), tries every object
//! even when one fails, and never touches another job's objects (label filter on the
//! exact id). It needs only what identifies the job's objects: settings are loaded
//! leniently, so a rotated secret or a missing CA file never leaks a builder.
//!
//! Then it records when the job's caches were used (and, with `cache.total`, their
//! size) and keeps all caches within `cache.total`: no operator has to run gc for
//! the disk. That part never fails the stage.

use tokio_util::sync::CancellationToken;

use crate::builder;
use crate::builder::engine::Engine;
use crate::builder::lifecycle::teardown_job_caches;
use crate::error::Result;
use crate::gitlab::job::Job;
use crate::host::cache_use;
use crate::settings::Settings;

/// Runs the cleanup stage.
pub(crate) async fn cleanup(settings: &Settings, job: &Job, engine: &Engine) -> Result<()> {
    let mut used = vec![];
    let removed = teardown_job_caches(engine, &job.id, &settings.builder.image, &mut used).await;
    let state = &settings.cache.state_dir;
    for volume in &used {
        let size = match settings.cache.total {
            Some(_) => engine
                .volume_size(volume, &settings.builder.image)
                .await
                .map_err(|e| tracing::warn!("{e}"))
                .ok(),
            None => None,
        };
        cache_use::touch(state, volume, size);
    }
    if settings.cache.total.is_some() {
        let budget = async {
            let info = engine.info().await?;
            builder::caches::enforce_total(
                engine,
                settings,
                &info.root_dir,
                &CancellationToken::new(),
            )
            .await
        };
        if let Err(e) = budget.await {
            tracing::warn!("could not keep the caches within cache.total: {e}");
        }
    }
    removed
}
