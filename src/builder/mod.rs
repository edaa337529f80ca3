//! The per-job builder: its spec as data ([`spec`], pure), its lifecycle — create,
//! start, wait ready, tear down — in [`lifecycle`], the one place that creates or
//! removes a builder, and the Docker engine client ([`engine`]), the one module that
//! talks to Docker.

pub(crate) mod engine;
pub(crate) mod lifecycle;
pub(crate) mod spec;

pub(crate) use spec::*;
