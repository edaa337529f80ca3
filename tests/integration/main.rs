//! The one integration-test binary: drives `runnerx` like gitlab-runner does, against
//! the real Docker engine and the real DinD builder image (no mocks).

mod policy;
mod registry;
mod support;

mod build_cache;
mod cache;
mod conformance;
mod docs;
mod executor;
mod faults;
mod gitlab;
mod hosts;
mod isolation;
mod job_images;
mod local;
mod multiarch;
mod network;
mod nodes;
mod pipelines;
mod protocol;
mod signing;
mod structure;
mod templates;
mod trust;
