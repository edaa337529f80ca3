//! `cleanup`: remove everything labelled for the job.
//!
//! Tolerates "nothing there" (a failed prepare, a second cleanup), tries every object
//! even when one fails, and never touches another job's objects (label filter on the
//! exact id). It needs only what identifies the job's objects: settings are loaded
//! leniently, so a rotated secret or a missing CA file never leaks a builder.

use crate::builder::engine::Engine;
use crate::builder::lifecycle::teardown_job;
use crate::error::Result;
use crate::gitlab::job::Job;
use crate::settings::Settings;

/// Runs the cleanup stage.
pub(crate) async fn cleanup(settings: &Settings, job: &Job, engine: &Engine) -> Result<()> {
    teardown_job(engine, &job.id, &settings.builder.image).await
}
