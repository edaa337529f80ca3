//! The executor stages and operator commands, one module each. Each stage is
//! idempotent (gitlab-runner retries prepare, and always runs cleanup) and cancellable.

pub mod cleanup;
pub mod config;
pub mod gc;
pub mod prepare;
pub mod run;
