//! Operator commands (not part of the GitLab protocol): certificates, diagnosis,
//! garbage collection, benchmarks, local runs and manifests.

pub mod bench;
pub mod bench_isolation;
pub mod certs;
pub mod doctor;
pub mod gc;
pub mod local;
pub mod manifest;
