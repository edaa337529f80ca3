//! The one error type of runnerx.
//!
//! Every failure knows whose fault it is ([`Fault`]): the job's (its script failed, or
//! it passed a bad job variable) or ours (Docker, the builder, settings, I/O). `main`
//! maps that to `$BUILD_FAILURE_EXIT_CODE` or `$SYSTEM_FAILURE_EXIT_CODE`; nothing
//! else decides exit codes. Messages are one line, lowercase, and name the fix where
//! there is one. They never carry secrets: callers pass names, not values.

use std::path::PathBuf;

/// Whose failure it is; decides the exit code GitLab sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The job's own failure: shown as a failed job, not retried.
    Build,
    /// Infrastructure failure: "runner system failure"; prepare is retried.
    System,
}

/// Everything that can go wrong in runnerx.
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

    /// No builder container for the job (exec target missing).
    #[error(
        "no builder {0}: prepare has not run for this job or cleanup already removed it; run `runnerx prepare` first"
    )]
    NoBuilder(String),

    /// The builder exists but its main process has exited.
    #[error("builder {0} is not running (its dockerd exited?); see `docker logs {0}`")]
    BuilderStopped(String),

    /// A registry refused or failed a request (message names the fix where known).
    #[error("registry: {0}")]
    Registry(String),

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

    /// The builder container misbehaved (did not boot, vanished, …).
    #[error("builder: {0}")]
    Builder(String),

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

    /// Command-line usage that cannot work (e.g. no job id outside GitLab).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whose failure this is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Script { .. } | Error::JobInput { .. } => Fault::Build,
            Error::Settings(_)
            | Error::Protocol(_)
            | Error::Docker { .. }
            | Error::Builder(_)
            | Error::NoBuilder(_)
            | Error::BuilderStopped(_)
            | Error::BuilderDied { .. }
            | Error::Registry(_)
            | Error::Io { .. }
            | Error::Cancelled(_)
            | Error::Checks(_)
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

    #[test]
    fn script_and_job_input_are_build_failures() {
        assert_eq!(Error::Script { code: 3 }.fault(), Fault::Build);
        let e = Error::JobInput {
            name: "CI_JOB_IMAGE".into(),
            message: "not allowed".into(),
        };
        assert_eq!(e.fault(), Fault::Build);
    }

    #[test]
    fn infrastructure_errors_are_system_failures() {
        assert_eq!(Error::Settings("x".into()).fault(), Fault::System);
        assert_eq!(Error::Builder("x".into()).fault(), Fault::System);
        assert_eq!(Error::Cancelled("SIGTERM").fault(), Fault::System);
        let died = Error::BuilderDied {
            stage: "build_script".into(),
            code: 1,
            what: "the builder runnerx-1 stopped".into(),
        };
        assert_eq!(died.fault(), Fault::System);
        assert!(died.to_string().contains("runner failure"), "{died}");
    }

    #[test]
    fn messages_are_one_line() {
        let e = Error::io(
            "read",
            "/etc/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "failed to read /etc/x: gone");
        assert!(!e.to_string().contains('\n'));
    }
}
