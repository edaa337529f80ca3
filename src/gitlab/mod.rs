//! GitLab's side: the job as gitlab-runner describes it, the four executor stages it
//! calls, and `.gitlab-ci.yml` as `runnerx local` reads it. Nothing here talks to
//! Docker directly; the stages drive [`crate::builder`].

pub(crate) mod job;
pub mod pipeline;
pub(crate) mod services;
pub(crate) mod stages;
