//! The four executor stages gitlab-runner calls (config, prepare, run, cleanup), one
//! module each. Each is idempotent (gitlab-runner retries prepare, and always runs
//! cleanup) and cancellable.

pub mod cleanup;
pub mod config;
pub mod prepare;
pub mod run;
