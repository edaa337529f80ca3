//! Every choice a setting offers, as an enum serde reads in `kebab-case`: a wrong value
//! fails while the file (or the variable) is read, listing the valid ones. A leaf:
//! the raw and the validated settings both use these types.

use serde::{Deserialize, Serialize};

/// When to pull the builder image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PullPolicy {
    /// Pull before every job.
    Always,
    /// Pull only when the image is not in the engine.
    IfNotPresent,
    /// Never pull; a missing image is a system failure.
    Never,
}

impl PullPolicy {
    /// GitLab's spelling (a job's `image: pull_policy`); `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<PullPolicy> {
        match text {
            "always" => Some(PullPolicy::Always),
            "if-not-present" => Some(PullPolicy::IfNotPresent),
            "never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// GitLab's spelling, as in the settings.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }

    /// Whether to pull an image that is (`present`) or is not in the engine; `None`
    /// when it is missing and the policy forbids pulling (the caller names the fix).
    pub(crate) fn wants_pull(self, present: bool) -> Option<bool> {
        match self {
            PullPolicy::Always => Some(true),
            PullPolicy::IfNotPresent => Some(!present),
            PullPolicy::Never => present.then_some(false),
        }
    }
}

/// Where the ports a job publishes (`docker run -p`) listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PublishPorts {
    /// Only inside the job's own namespace: the job reaches them at 127.0.0.1, nothing
    /// else does (the default).
    None,
    /// Rootless builders: also on every address of the runner host (RootlessKit's
    /// port driver), open to the network and to every other job.
    All,
}

/// How a builder is isolated from the runner host and other jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Isolation {
    /// Inner daemons under RootlessKit in their own user, mount and network
    /// namespace; jobs as an unprivileged user (the default).
    Rootless,
    /// A privileged builder (hosts without user namespaces).
    Privileged,
    /// Rootless where the host allows it, else privileged with a warning.
    Auto,
}

/// How a privileged builder gets the rights an inner dockerd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Privileged {
    /// `--privileged`, falling back to explicit capabilities when the engine refuses it.
    Auto,
    /// `--privileged` only.
    Always,
    /// Explicit capabilities only (where the engine refuses `--privileged`).
    Never,
}

/// The buildx driver jobs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Driver {
    /// The inner dockerd's own BuildKit (containerd image store): the default.
    Docker,
    /// A named docker-container builder with the rendered buildkitd.toml.
    DockerContainer,
}

/// Where the builder's /var/lib/docker lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CacheMode {
    /// A fresh volume per job, removed at cleanup.
    None,
    /// A kept volume per project and slot: warm layer cache for the next job.
    PerProject,
}

/// How QEMU emulators get registered for non-native platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BinfmtMode {
    /// `builtin` when the builder image has the handlers, else `image`.
    Auto,
    /// Register `/usr/lib/binfmt.d/qemu-*.conf` from the builder image.
    Builtin,
    /// Run the pinned binfmt image inside the builder.
    Image,
    /// Leave it to the operator (no registration, no check).
    None,
}

/// What a job does when a `[[nodes]]` entry does not answer at prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NodeFallback {
    /// Build that node's platforms under QEMU in the job's builder, with a warning.
    Qemu,
    /// Fail the job (a system failure naming the node).
    Fail,
}

/// Whether builders' traffic must pass the host's egress policy (`runnerx host network`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Egress {
    /// The operator's opt-out: jobs reach whatever the runner host reaches (each job's
    /// log says so).
    Open,
    /// Prepare fails unless the policy for these settings is installed on the host
    /// (the default).
    #[default]
    Policy,
}

/// What a failure to sign a job's push is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SigningMode {
    /// One warning in the job log; the job goes on (the default).
    #[default]
    Warn,
    /// A system failure of the stage that pushed.
    Require,
}
