//! The per-job builder: its spec as data ([`spec`], pure: container body, daemon.json,
//! boot bundle, labels), the commands runnerx runs in it ([`commands`], pure), its
//! lifecycle — pull, create, start, wait ready, tear down — in [`lifecycle`], the one
//! place that creates or removes a builder, and the Docker engine client ([`engine`]),
//! the one module that talks to Docker. [`buildx`] makes the job's buildx builder
//! (docker-container, or multi-node with `[[nodes]]`).

pub(crate) mod build_cache;
pub(crate) mod buildx;
pub(crate) mod caches;
pub(crate) mod commands;
pub(crate) mod engine;
pub(crate) mod job_image;
pub(crate) mod labels;
pub(crate) mod lifecycle;
pub(crate) mod services;
pub(crate) mod spec;
pub(crate) mod tarball;

#[cfg(test)]
mod build_report_tests;
#[cfg(test)]
mod snapshots;

pub(crate) use commands::*;
pub(crate) use labels::*;
pub(crate) use spec::*;
pub(crate) use tarball::*;
