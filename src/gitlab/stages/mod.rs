//! The four executor stages gitlab-runner calls (config, prepare, run, cleanup), one
//! module each. Each is idempotent (gitlab-runner retries prepare, and always runs
//! cleanup) and cancellable.

pub(crate) mod cleanup;
pub(crate) mod config;
pub(crate) mod prepare;
pub(crate) mod run;
