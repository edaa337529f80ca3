//! Stage one: the settings exactly as written — the TOML file, then `RUNNERX_*`
//! variables on top. Every field is optional (defaults are applied in stage two),
//! unknown keys are rejected, and choices are already typed: serde reads them, so a
//! wrong one fails here with the list of valid values.
//!
//! Environment overrides use one mechanism for every section that has them
//! (`[builder]`, `[binfmt]`, `[cache]`): `RUNNERX_<SECTION>_<KEY>` is read by envy into
//! the same struct the file fills, one variable at a time (so an error names the
//! variable), and laid over the file's value. [`Origins`] remembers which keys came
//! from the environment, so every later message says where a value came from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::choices::{
    BinfmtMode, CacheMode, Driver, Egress, Isolation, NodeFallback, Privileged, PublishPorts,
    PullPolicy, SigningMode,
};
use super::values;
use crate::env::Env;
use crate::error::{Error, Result};

/// The settings file as written (stage one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    /// `[builder]`
    #[serde(default)]
    pub builder: RawBuilder,
    /// `[[registries]]`
    #[serde(default)]
    pub registries: Vec<RawRegistry>,
    /// `[proxy]`
    #[serde(default)]
    pub proxy: RawProxy,
    /// `[binfmt]`
    #[serde(default)]
    pub binfmt: RawBinfmt,
    /// `[cache]`
    #[serde(default)]
    pub cache: RawCache,
    /// `[[nodes]]`
    #[serde(default)]
    pub nodes: Vec<RawNode>,
    /// `[network]`
    #[serde(default)]
    pub network: RawNetwork,
    /// `[signing]`
    #[serde(default)]
    pub signing: RawSigning,
}

/// `[signing]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigning {
    /// What a signing failure is: a warning, or a system failure.
    pub mode: Option<SigningMode>,
}

/// `[network]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    /// Whether prepare insists on the installed egress policy.
    pub egress: Option<Egress>,
    /// CIDRs, addresses or `host:port` reachable despite the defaults.
    pub allow: Option<Vec<String>>,
    /// CIDRs, addresses or `host:port` denied on top of the defaults.
    pub deny: Option<Vec<String>>,
    /// Also deny the private ranges (RFC 1918, fc00::/7).
    pub deny_private: Option<bool>,
}

/// `[builder]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuilder {
    /// DinD image every job runs in.
    pub image: Option<String>,
    /// When to pull `image`.
    pub pull_policy: Option<PullPolicy>,
    /// How a builder is isolated.
    pub isolation: Option<Isolation>,
    /// Rootless: let the builder's namespace reach the host's loopback.
    pub host_loopback: Option<bool>,
    /// Where ports a job publishes listen.
    pub publish_ports: Option<PublishPorts>,
    /// How a privileged builder gets its rights.
    pub privileged: Option<Privileged>,
    /// `host:ip` entries added to the builder's /etc/hosts.
    pub extra_hosts: Option<Vec<String>>,
    /// Platforms jobs build for, `os/arch[/variant]`.
    pub platforms: Option<Vec<String>>,
    /// How long the inner dockerd may take to answer.
    pub boot_timeout: Option<String>,
    /// IPv4 pool whose first two /24s are every builder's inner networks.
    pub subnet_pool: Option<String>,
    /// Host-wide lock file.
    pub lock_file: Option<PathBuf>,
    /// The old name of `builder_images` (its meaning changed: one error naming it).
    pub allowed_images: Option<Vec<String>>,
    /// Images a job's `image:` may select as its builder instead of `image`.
    pub builder_images: Option<Vec<String>>,
    /// Job images whose scripts run in the builder itself (globs), besides Docker's
    /// own `docker` images.
    pub images_in_builder: Option<Vec<String>>,
    /// Service images that are Docker-in-Docker besides `…/docker:*dind*`.
    pub dind_images: Option<Vec<String>>,
    /// Memory limit of a builder (jobs and their containers), e.g. `8GiB`.
    pub memory: Option<String>,
    /// CPU limit of a builder, e.g. `2.5`.
    pub cpus: Option<f64>,
    /// Process limit of a builder.
    pub pids_limit: Option<i64>,
    /// buildx driver jobs build with.
    pub driver: Option<Driver>,
    /// Pinned BuildKit image for the docker-container driver.
    pub buildkit_image: Option<String>,
    /// gitlab-runner's binary on the host, mounted into builders as the job's helper
    /// (default: the process that runs runnerx, else `gitlab-runner` on `$PATH`).
    pub helper_binary: Option<PathBuf>,
    /// How long a job's services may take to answer on their exposed ports.
    pub wait_for_services_timeout: Option<String>,
}

/// `[binfmt]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinfmt {
    /// How emulators get registered.
    pub mode: Option<BinfmtMode>,
    /// Pinned tonistiigi/binfmt image for `image` mode.
    pub image: Option<String>,
}

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    /// Where a builder's /var/lib/docker lives.
    pub mode: Option<CacheMode>,
    /// Concurrent cache volumes per project (jobs beyond that build cold).
    pub slots: Option<u32>,
    /// A cache volume older than this is dropped and rebuilt (bounds staleness).
    pub max_age: Option<String>,
    /// `runnerx gc` drops unused cache volumes larger than this (`20GB`, `500MB`).
    pub max_size: Option<String>,
    /// All caches together: a size (`200GiB`) or a share of the data root's disk (`40%`).
    pub total: Option<String>,
    /// Free space prepare insists on, on the disk of Docker's data root (`10%`, `20GB`).
    pub min_free: Option<String>,
    /// Where runnerx records when each cache was last used (survives restarts).
    pub state_dir: Option<PathBuf>,
}

/// One `[[registries]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    /// `host[:port]` exactly as written in image references.
    pub host: Option<String>,
    /// PEM CA bundle that signed the registry's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mTLS.
    pub client_cert_file: Option<PathBuf>,
    /// Client key for mTLS.
    pub client_key_file: Option<PathBuf>,
    /// Login name (e.g. a Harbor robot account).
    pub username: Option<String>,
    /// Name of an environment variable of runnerx's own (not the job's) holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// HTTPS without certificate verification.
    #[serde(default)]
    pub insecure: bool,
    /// Plain HTTP.
    #[serde(default)]
    pub http: bool,
    /// Registries this one mirrors (pull-through), e.g. `["docker.io"]`.
    #[serde(default)]
    pub mirror_for: Vec<String>,
    /// Repository `runnerx doctor` uses to check push permission, e.g. `ci/app`.
    pub check_repository: Option<String>,
    /// Repository jobs keep their build cache in (with the top-level login).
    pub cache_repository: Option<String>,
    /// ECDSA P-256 key (PEM) runnerx signs every project's pushes with.
    pub signing_key_file: Option<PathBuf>,
    /// `[[registries.credentials]]`: logins per GitLab project.
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
}

/// One `[[registries.credentials]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    /// GitLab project paths (globs: `*` within one path segment, `**` across).
    #[serde(default)]
    pub projects: Vec<String>,
    /// GitLab project ids.
    #[serde(default)]
    pub project_ids: Vec<u64>,
    /// Login name (e.g. a Harbor robot account of that project).
    pub username: Option<String>,
    /// Variable of runnerx's own environment holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Repository these projects keep their build cache in (with this login).
    pub cache_repository: Option<String>,
    /// ECDSA P-256 key (PEM) runnerx signs these projects' pushes with.
    pub signing_key_file: Option<PathBuf>,
}

/// One `[[nodes]]` entry as written: a remote BuildKit daemon (mTLS) for some platforms.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    /// Name of the node in buildx and in messages (default: from the endpoint's host).
    pub name: Option<String>,
    /// `tcp://host:port` of its buildkitd.
    pub endpoint: Option<String>,
    /// Platforms built there, `os/arch[/variant]`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// CA that signed the node's server certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate runnerx's jobs present.
    pub client_cert_file: Option<PathBuf>,
    /// Its key.
    pub client_key_file: Option<PathBuf>,
    /// Name to verify in the node's certificate, when not the endpoint's host.
    pub server_name: Option<String>,
    /// When the node does not answer: `qemu` (default) or `fail`.
    pub fallback: Option<NodeFallback>,
    /// GitLab project paths (globs) whose jobs may use it (default: every project).
    #[serde(default)]
    pub projects: Vec<String>,
    /// GitLab project ids whose jobs may use it.
    #[serde(default)]
    pub project_ids: Vec<u64>,
}

/// `[proxy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    /// `http://proxy:3128`
    pub http_proxy: Option<String>,
    /// `http://proxy:3128`
    pub https_proxy: Option<String>,
    /// `localhost,.internal`
    pub no_proxy: Option<String>,
}

/// Where each value came from, for messages: `builder.memory (in /etc/runnerx/runnerx.toml)`
/// or `builder.memory (from RUNNERX_BUILDER_MEMORY)`.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    /// The settings file, or `defaults`.
    pub file: String,
    /// Dotted keys (`builder.memory`) whose value came from the environment.
    from_env: BTreeSet<String>,
}

impl Origins {
    /// Values from `file` only.
    pub(super) fn file(file: String) -> Origins {
        Origins {
            file,
            from_env: BTreeSet::new(),
        }
    }

    /// `section.key` with where its value came from.
    pub(super) fn of(&self, section: &str, key: &str) -> String {
        let dotted = format!("{section}.{key}");
        if self.from_env.contains(&dotted) {
            format!("{dotted} (from {})", env_name(section, key))
        } else {
            format!("{dotted} (in {})", self.file)
        }
    }
}

fn env_name(section: &str, key: &str) -> String {
    format!("RUNNERX_{}_{}", section.to_uppercase(), key.to_uppercase())
}

/// `{key} = "x" is not valid; use a, b or c` when `message` is serde's unknown-variant
/// error; `None` for any other message.
pub(crate) fn choice_error(key: &str, message: &str) -> Option<String> {
    let (value, names) = values::unknown_variant(message)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Some(format!(
        "{key} = {value:?} is not valid; use {}",
        values::either(&names)
    ))
}

/// Lays `RUNNERX_<SECTION>_*` over one section read from the file.
fn overlay<T>(section: &str, file: T, env: &Env, origins: &mut Origins) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default,
{
    let prefix = format!("RUNNERX_{}_", section.to_uppercase());
    let mut merged = serde_json::to_value(file).expect("settings serialize");
    for (name, value) in env.with_prefix(&prefix) {
        let key = name[prefix.len()..].to_ascii_lowercase();
        let one: T = match envy::prefixed(prefix.as_str()).from_iter([(name.clone(), value)]) {
            Ok(one) => one,
            Err(e) if e.to_string().contains("unknown field") => {
                tracing::warn!("{name} is not a setting ({section}.{key} does not exist); ignored");
                continue;
            }
            Err(e) => {
                let origin = format!("{section}.{key} (from {name})");
                let message = e.to_string();
                return Err(Error::Settings(
                    choice_error(&origin, &message)
                        .unwrap_or_else(|| format!("{origin}: {message}")),
                ));
            }
        };
        let one = serde_json::to_value(one).expect("settings serialize");
        if let (Some(v), Some(obj)) = (one.get(&key), merged.as_object_mut()) {
            obj.insert(key.clone(), v.clone());
            origins.from_env.insert(format!("{section}.{key}"));
        }
    }
    Ok(serde_json::from_value(merged).expect("a merged section deserializes"))
}

impl RawSettings {
    /// Lays the `RUNNERX_*` overrides over the file's values.
    pub(super) fn with_env(mut self, env: &Env, origins: &mut Origins) -> Result<RawSettings> {
        self.builder = overlay("builder", self.builder, env, origins)?;
        self.binfmt = overlay("binfmt", self.binfmt, env, origins)?;
        self.cache = overlay("cache", self.cache, env, origins)?;
        Ok(self)
    }
}
