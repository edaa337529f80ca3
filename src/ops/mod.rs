//! Operator commands (not part of the GitLab protocol): certificates, diagnosis,
//! garbage collection, benchmarks, local runs, manifests and BuildKit nodes.

pub(crate) mod bench;
pub(crate) mod certs;
pub(crate) mod doctor;
pub(crate) mod gc;
pub(crate) mod local;
pub(crate) mod manifest;
pub(crate) mod node;
