//! The one error type of runnerx.
//!
//! Every failure knows whose fault it is ([`Fault`]): the job's (its script failed, or
//! it passed a bad job variable) or ours (Docker, the builder, settings, I/O). `main`
//! maps that to `$BUILD_FAILURE_EXIT_CODE` or `$SYSTEM_FAILURE_EXIT_CODE`; nothing
//! else decides exit codes. Messages are one line, lowercase, and name the fix where
//! there is one. They never carry secrets: callers pass names, not values.

use std::path::PathBuf;

pub use crate::registry::error::RegistryError;

/// Whose failure it is; decides the exit code GitLab sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The job's own failure: shown as a failed job, not retried.
    Build,
    /// Infrastructure failure: "runner system failure"; prepare is retried.
    System,
}

/// Everything that can go wrong in runnerx: one variant per thing that failed, so the
/// exit code ([`Error::fault`]) follows from what failed, never from a message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job's script exited non-zero; `code` goes to `$BUILD_EXIT_CODE_FILE`.
    #[error("script failed with exit code {code}")]
    Script {
        /// The script's own exit code.
        code: i64,
    },

    /// A job variable (untrusted input) is invalid.
    #[error("job variable {name}: {message}")]
    JobInput {
        /// Variable name, without the `CUSTOM_ENV_` prefix.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// What gitlab-runner passed (its env, the job response file) is unusable.
    #[error("gitlab-runner input: {0}")]
    Protocol(String),

    /// A settings file or value is invalid.
    #[error("settings: {0}")]
    Settings(String),

    /// A call to the Docker engine failed.
    #[error("docker: failed to {action}: {source}")]
    Docker {
        /// What runnerx was doing, e.g. "create container runnerx-42".
        action: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },

    /// The Docker engine cannot be reached, or answered in a way runnerx cannot use.
    #[error("docker: {0}")]
    Engine(String),

    /// The builder image is not there and may not or could not be pulled.
    #[error("builder image: {0}")]
    BuilderImage(String),

    /// The host or the engine cannot give the isolation the settings ask for.
    #[error("isolation: {0}")]
    Isolation(String),

    /// The builder did not boot: its inner dockerd never answered, or it exited.
    #[error("builder boot: {0}")]
    BuilderBoot(String),

    /// A non-native platform has no working QEMU emulator.
    #[error("emulation: {0}")]
    Emulation(String),

    /// The job's `image:` could not be pulled or its container made: the job's
    /// failure, as GitLab classifies an image pull failure.
    #[error("job image: {0}")]
    JobImage(String),

    /// A job's service could not be pulled or started.
    #[error("service: {0}")]
    Service(String),

    /// The buildx builder for the job could not be set up.
    #[error("buildx: {0}")]
    Buildx(String),

    /// A `[[nodes]]` BuildKit node does not answer and its fallback is `fail`, or the
    /// job's buildx could not join it.
    #[error("buildkit node: {0}")]
    Node(String),

    /// No builder container for the job (exec target missing).
    #[error(
        "no builder {0}: prepare has not run for this job or cleanup already removed it; run `runnerx prepare` first"
    )]
    NoBuilder(String),

    /// The builder exists but its main process has exited.
    #[error("builder {0} is not running (its dockerd exited?); see `docker logs {0}`")]
    BuilderStopped(String),

    /// A stage failed because its builder or inner dockerd died under it: ours, not
    /// the job's (the script's exit code is not the job's verdict).
    #[error(
        "stage {stage} failed (exit {code}) because {what}; this is a runner failure, not the job's"
    )]
    BuilderDied {
        /// The stage name gitlab-runner passed.
        stage: String,
        /// The script's exit code as seen.
        code: i64,
        /// What died, and where its log is.
        what: String,
    },

    /// The disk holding Docker's data root is below `cache.min_free`.
    #[error("disk: {0}")]
    DiskFull(String),

    /// Part of a job's builder could not be removed.
    #[error("teardown: {0}")]
    Teardown(String),

    /// The host lock could not be taken.
    #[error("host lock: {0}")]
    HostLock(String),

    /// A registry refused or failed a request (the message names the fix).
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),

    /// A `.gitlab-ci.yml` that `runnerx local` cannot run.
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),

    /// Local file I/O failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What runnerx was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The stage was cancelled (SIGTERM/SIGINT) before it finished.
    #[error("cancelled by {0}")]
    Cancelled(&'static str),

    /// `runnerx doctor` found problems (already printed).
    #[error("{0} check(s) failed (see above)")]
    Checks(usize),

    /// A step of `runnerx bench` failed.
    #[error("bench: {0}")]
    Bench(String),

    /// A push could not be signed (`[signing] mode = "require"`), or `runnerx verify`
    /// found no valid signature.
    #[error("signing: {0}")]
    Signing(String),

    /// Command-line usage that cannot work (e.g. no job id outside GitLab, a bad
    /// `.gitlab-ci.yml` for `runnerx local`).
    #[error("{0}")]
    Usage(String),
}

/// A pipeline file runnerx cannot use: one line naming the file, the job or key, and
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PipelineError(String);

impl From<String> for PipelineError {
    fn from(message: String) -> PipelineError {
        PipelineError(message)
    }
}

/// A value that does not parse; the message says what a good one looks like, and the
/// caller puts the key or flag and its origin in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// From a fixed message.
    pub fn new(message: &str) -> Invalid {
        Invalid(message.to_string())
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Invalid {
        Invalid::new(message)
    }
}

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid(message)
    }
}

impl Error {
    /// Whose failure this is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Script { .. } | Error::JobInput { .. } | Error::JobImage(_) => Fault::Build,
            // No wildcard: a new variant must be given its fault here.
            Error::Settings(_)
            | Error::Protocol(_)
            | Error::Docker { .. }
            | Error::Engine(_)
            | Error::BuilderImage(_)
            | Error::Isolation(_)
            | Error::BuilderBoot(_)
            | Error::Emulation(_)
            | Error::Buildx(_)
            | Error::Node(_)
            | Error::Service(_)
            | Error::NoBuilder(_)
            | Error::BuilderStopped(_)
            | Error::BuilderDied { .. }
            | Error::Teardown(_)
            | Error::DiskFull(_)
            | Error::HostLock(_)
            | Error::Registry(_)
            | Error::Pipeline(_)
            | Error::Io { .. }
            | Error::Cancelled(_)
            | Error::Checks(_)
            | Error::Bench(_)
            | Error::Signing(_)
            | Error::Usage(_) => Fault::System,
        }
    }

    /// Wraps a bollard error with what we were doing.
    pub fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        Error::Docker {
            action: action.into(),
            source,
        }
    }

    /// Wraps an I/O error with the action and the path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// One test per variant: its fault, and a message on one line.
    macro_rules! fault_of {
        ($($test:ident: $error:expr => $fault:ident;)+) => {$(
            #[test]
            fn $test() {
                let e: Error = $error;
                assert_eq!(e.fault(), Fault::$fault, "{e}");
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        )+};
    }

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "gone")
    }

    fault_of! {
        script_is_the_jobs: Error::Script { code: 3 } => Build;
        job_input_is_the_jobs: Error::JobInput { name: "CI_JOB_IMAGE".into(), message: "not allowed".into() } => Build;
        protocol_is_ours: Error::Protocol("x".into()) => System;
        settings_are_ours: Error::Settings("x".into()) => System;
        docker_is_ours: Error::docker("start", bollard::errors::Error::RequestTimeoutError) => System;
        engine_is_ours: Error::Engine("x".into()) => System;
        builder_image_is_ours: Error::BuilderImage("x".into()) => System;
        isolation_is_ours: Error::Isolation("x".into()) => System;
        builder_boot_is_ours: Error::BuilderBoot("x".into()) => System;
        emulation_is_ours: Error::Emulation("x".into()) => System;
        buildx_is_ours: Error::Buildx("x".into()) => System;
        node_is_ours: Error::Node("x".into()) => System;
        service_is_ours: Error::Service("x".into()) => System;
        no_builder_is_ours: Error::NoBuilder("runnerx-1".into()) => System;
        builder_stopped_is_ours: Error::BuilderStopped("runnerx-1".into()) => System;
        builder_died_is_ours: Error::BuilderDied { stage: "build_script".into(), code: 1, what: "the builder runnerx-1 stopped".into() } => System;
        teardown_is_ours: Error::Teardown("x".into()) => System;
        disk_full_is_ours: Error::DiskFull("x".into()) => System;
        host_lock_is_ours: Error::HostLock("x".into()) => System;
        registry_is_ours: Error::from(RegistryError::Refused("HTTP 401".into())) => System;
        pipeline_is_ours: Error::from(PipelineError::from("no job \"x\"".to_string())) => System;
        io_is_ours: Error::io("read", "/etc/x", io()) => System;
        cancelled_is_ours: Error::Cancelled("SIGTERM") => System;
        checks_are_ours: Error::Checks(2) => System;
        bench_is_ours: Error::Bench("x".into()) => System;
        usage_is_ours: Error::Usage("x".into()) => System;
    }

    #[test]
    fn builder_died_says_it_is_not_the_jobs() {
        let died = Error::BuilderDied {
            stage: "build_script".into(),
            code: 1,
            what: "the builder runnerx-1 stopped".into(),
        };
        assert!(died.to_string().contains("runner failure"), "{died}");
    }

    #[test]
    fn messages_are_one_line() {
        let e = Error::io("read", "/etc/x", io());
        assert_eq!(e.to_string(), "failed to read /etc/x: gone");
    }
}
