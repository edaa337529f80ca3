//! `config`: the one JSON object gitlab-runner reads from stdout.
//!
//! Paths are as seen *inside* the builder, where every stage script runs. Nothing else
//! may reach stdout: a stray line makes gitlab-runner fail and retry the whole prepare.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::settings::Settings;

pub(crate) use crate::builder::{BUILDS_DIR, CACHE_DIR};

/// `api.ConfigExecOutput`.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigOutput {
    /// Root of project checkouts.
    pub builds_dir: &'static str,
    /// Root of local cache archives.
    pub cache_dir: &'static str,
    /// Each job has its own builder, so builds are not shared.
    pub builds_dir_is_shared: bool,
    /// Shown in "Running on … via …".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Shown as "Using Custom executor with driver …".
    pub driver: Driver,
    /// The shell gitlab-runner writes stage scripts for: the builder runs them with
    /// bash, whatever the runner's `shell` setting says.
    pub shell: &'static str,
}

/// Driver name and version.
#[derive(Debug, Serialize)]
pub(crate) struct Driver {
    /// `runnerx`.
    pub name: &'static str,
    /// Crate version.
    pub version: &'static str,
}

/// Builds the config output (pure).
pub(crate) fn output(job: Option<&Job>) -> ConfigOutput {
    ConfigOutput {
        builds_dir: BUILDS_DIR,
        cache_dir: CACHE_DIR,
        builds_dir_is_shared: false,
        hostname: job.map(Job::builder_name),
        driver: Driver {
            name: "runnerx",
            version: env!("CARGO_PKG_VERSION"),
        },
        shell: "bash",
    }
}

/// Prints the config JSON on stdout.
pub(crate) fn config(settings: &Settings, job: Option<&Job>) -> Result<()> {
    tracing::debug!("settings from {:?}", settings.source);
    let json = serde_json::to_string(&output(job)).expect("config output serializes");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write config JSON to", "stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_shape() {
        let v = serde_json::to_value(output(None)).unwrap();
        assert_eq!(v["builds_dir"], "/builds");
        assert_eq!(v["cache_dir"], "/cache");
        assert_eq!(v["builds_dir_is_shared"], false);
        assert_eq!(v["driver"]["name"], "runnerx");
        assert!(v.get("hostname").is_none());
    }
}
