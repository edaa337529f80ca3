//! Operator commands (not part of the GitLab protocol): certificates and diagnosis.

pub mod bench;
pub mod bench_isolation;
pub mod certs;
pub mod doctor;
pub mod local;
pub mod manifest;
