//! The runner host's settings: what the operator wrote, validated once.
//!
//! Two stages, as in ripgrep's low/high args: [`RawSettings`] is exactly what the TOML
//! file and the `RUNNERX_*` overrides say (all optional, unknown keys rejected), and
//! [`Settings`] is the validated, typed result the rest of the program uses. Every
//! validation error is one line that names the key, where it came from, and the fix.
//!
//! Job variables are *not* read here: they are untrusted and only reach the settings
//! through the allow-list in `job` (e.g. `builder.allowed_images`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration;
use crate::env::Env;
use crate::error::{Error, Result};

/// Where settings are read from when neither `--config` nor `RUNNERX_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/runnerx/runnerx.toml";

/// The settings file as written (stage one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
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
}

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `none | per-project`.
    pub mode: Option<String>,
    /// Concurrent cache volumes per project (jobs beyond that build cold).
    pub slots: Option<u32>,
    /// A cache volume older than this is dropped and rebuilt (bounds staleness).
    pub max_age: Option<String>,
    /// `runnerx gc` drops unused cache volumes larger than this (`20GB`, `500MB`).
    pub max_size: Option<String>,
}

/// `[binfmt]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinfmt {
    /// `auto | builtin | image | none`.
    pub mode: Option<String>,
    /// Pinned tonistiigi/binfmt image for `image` mode.
    pub image: Option<String>,
}

/// One `[[registries]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
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
}

/// `[proxy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// `http://proxy:3128`
    pub http_proxy: Option<String>,
    /// `http://proxy:3128`
    pub https_proxy: Option<String>,
    /// `localhost,.internal`
    pub no_proxy: Option<String>,
}

/// `[builder]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuilder {
    /// DinD image every job runs in.
    pub image: Option<String>,
    /// `always | if-not-present | never`.
    pub pull_policy: Option<String>,
    /// `rootless | privileged | auto`.
    pub isolation: Option<String>,
    /// Rootless: let the builder's namespace reach the host's loopback.
    pub host_loopback: Option<bool>,
    /// `auto | always | never`.
    pub privileged: Option<String>,
    /// `host:ip` entries added to the builder's /etc/hosts.
    pub extra_hosts: Option<Vec<String>>,
    /// Platforms jobs build for, `os/arch[/variant]`.
    pub platforms: Option<Vec<String>>,
    /// How long the inner dockerd may take to answer.
    pub boot_timeout: Option<String>,
    /// IPv4 pool carved into one bridge subnet and one address pool per builder.
    pub subnet_pool: Option<String>,
    /// Host-wide lock file serializing inner-dockerd network set-up.
    pub lock_file: Option<PathBuf>,
    /// Images a job's `image:` may select instead of `image`.
    pub allowed_images: Option<Vec<String>>,
    /// Memory limit of a builder (jobs and their containers), e.g. `8GiB`.
    pub memory: Option<String>,
    /// CPU limit of a builder, e.g. `2.5`.
    pub cpus: Option<f64>,
    /// Process limit of a builder.
    pub pids_limit: Option<i64>,
    /// buildx driver jobs build with: `docker` or `docker-container`.
    pub driver: Option<String>,
    /// Pinned BuildKit image for the docker-container driver.
    pub buildkit_image: Option<String>,
}

/// `RUNNERX_*` overrides (flat: envy has no nesting).
#[derive(Debug, Default, Deserialize)]
struct EnvOverrides {
    builder_image: Option<String>,
    builder_pull_policy: Option<String>,
    builder_isolation: Option<String>,
    builder_host_loopback: Option<bool>,
    builder_privileged: Option<String>,
    builder_extra_hosts: Option<Vec<String>>,
    builder_platforms: Option<Vec<String>>,
    builder_boot_timeout: Option<String>,
    builder_subnet_pool: Option<String>,
    builder_lock_file: Option<PathBuf>,
    builder_allowed_images: Option<Vec<String>>,
    builder_memory: Option<String>,
    builder_cpus: Option<f64>,
    builder_pids_limit: Option<i64>,
    builder_driver: Option<String>,
    builder_buildkit_image: Option<String>,
    binfmt_mode: Option<String>,
    binfmt_image: Option<String>,
    cache_mode: Option<String>,
}

/// Where the builder's /var/lib/docker lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// A fresh volume per job, removed at cleanup.
    None,
    /// A kept volume per project and slot: warm layer cache for the next job.
    PerProject,
}

/// `[cache]`, validated.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Mode.
    pub mode: CacheMode,
    /// Volumes per project.
    pub slots: u32,
    /// Maximum age of a cache volume.
    pub max_age: Duration,
    /// Size above which gc drops an unused cache volume (bytes).
    pub max_size: u64,
}

/// Parses `20GB`, `512MB`, `1.5GiB`, or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as \"20GB\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}; use MB, GB, MiB or GiB"
            ));
        }
    };
    Ok((n * mult) as u64)
}

/// How QEMU emulators get registered for non-native platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinfmtMode {
    /// `builtin` when the builder image has the handlers, else `image`.
    Auto,
    /// Register `/usr/lib/binfmt.d/qemu-*.conf` from the builder image.
    Builtin,
    /// Run the pinned binfmt image inside the builder.
    Image,
    /// Leave it to the operator (no registration, no check).
    None,
}

/// `[binfmt]`, validated.
#[derive(Debug, Clone)]
pub struct BinfmtSettings {
    /// Mode.
    pub mode: BinfmtMode,
    /// Image for `image` mode.
    pub image: String,
}

/// The buildx driver jobs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The inner dockerd's own BuildKit (containerd image store): the default.
    Docker,
    /// A named docker-container builder with the rendered buildkitd.toml.
    DockerContainer,
}

/// Default pins: known-good tags (QEMU releases have broken emulated builds before).
pub const DEFAULT_BINFMT_IMAGE: &str = "tonistiigi/binfmt:qemu-v7.0.0-28";
/// `value` (or `default`) as one of `choices`; otherwise an error naming the key (from
/// `key`, with its origin) and listing the valid values.
fn one_of<T: Copy>(
    value: Option<&str>,
    default: &str,
    choices: &[(&str, T)],
    key: impl FnOnce() -> String,
) -> Result<T> {
    let value = value.unwrap_or(default);
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value) {
        return Ok(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let valid = match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(Error::Settings(format!(
        "{} = {value:?} is not valid; use {valid}",
        key()
    )))
}

/// The dotted key (`builder.host_loopback`) written on the line holding byte `at`,
/// with the table it sits in; `None` when that line is not `key = value`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// Resource limits of a builder container (jobs, dockerd and inner containers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory (0: none); no swap on top.
    pub memory: u64,
    /// CPUs (`None`: all of the host's).
    pub cpus: Option<f64>,
    /// Processes.
    pub pids: i64,
}

/// A builder's memory by default: room for a large compile plus its dockerd.
pub const DEFAULT_MEMORY: &str = "8GiB";
/// A builder's processes by default: far above any build, far below the host's.
pub const DEFAULT_PIDS_LIMIT: i64 = 16384;
/// The host lock: in a root-only directory, so no other local user can hold it.
pub const DEFAULT_LOCK_FILE: &str = "/run/runnerx/lock";
/// Default BuildKit image for the docker-container driver.
pub const DEFAULT_BUILDKIT_IMAGE: &str = "moby/buildkit:v0.23.2";

/// When to pull the builder image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull before every job.
    Always,
    /// Pull only when the image is not in the engine.
    IfNotPresent,
    /// Never pull; a missing image is a system failure.
    Never,
}

/// How a builder is isolated from the runner host and other jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Inner daemons under RootlessKit in their own user, mount and network
    /// namespace; jobs as an unprivileged user (the default).
    Rootless,
    /// A privileged builder with a host bridge (hosts without user namespaces).
    Privileged,
    /// Rootless where the host allows it, else privileged with a warning.
    Auto,
}

/// How a privileged builder gets the rights an inner dockerd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileged {
    /// `--privileged`, falling back to explicit capabilities when the engine refuses it.
    Auto,
    /// `--privileged` only.
    Always,
    /// Explicit capabilities only (where the engine refuses `--privileged`).
    Never,
}

/// A platform such as `linux/arm64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH value: `amd64`, `arm64`, …
    pub arch: String,
    /// `v7`, `v8`, … if given.
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An IPv4 network, e.g. `10.213.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// Network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// Validated builder settings.
#[derive(Debug, Clone)]
pub struct BuilderSettings {
    /// DinD image.
    pub image: String,
    /// Pull policy for `image`.
    pub pull_policy: PullPolicy,
    /// Isolation mode.
    pub isolation: Isolation,
    /// Rootless: the namespace reaches the host's loopback (as 10.0.2.2).
    pub host_loopback: bool,
    /// Privilege mode (privileged isolation).
    pub privileged: Privileged,
    /// `host:ip` entries, validated.
    pub extra_hosts: Vec<String>,
    /// Target platforms.
    pub platforms: Vec<Platform>,
    /// Inner dockerd boot deadline.
    pub boot_timeout: Duration,
    /// Pool for per-builder subnets (prefix ≤ 23).
    pub subnet_pool: Ipv4Net,
    /// Host-wide lock file.
    pub lock_file: PathBuf,
    /// Images a job may select.
    pub allowed_images: Vec<String>,
    /// `memory`, `cpus`, `pids_limit`: what one builder may use.
    pub limits: Limits,
    /// buildx driver.
    pub driver: Driver,
    /// BuildKit image for the docker-container driver.
    pub buildkit_image: String,
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the few places that must send or write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Login for a registry.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
}

/// PEM material read at validation time, so a bad file fails before any job runs.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Client certificate PEM.
    pub cert_pem: String,
    /// Client key PEM.
    pub key_pem: Secret,
}

/// A validated registry entry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// `host[:port]`.
    pub host: String,
    /// CA bundle PEM, if any.
    pub ca_pem: Option<String>,
    /// Where the CA came from.
    pub ca_file: Option<PathBuf>,
    /// mTLS identity, if any.
    pub client: Option<ClientIdentity>,
    /// Login, if any.
    pub credentials: Option<Credentials>,
    /// HTTPS without verification.
    pub insecure: bool,
    /// Plain HTTP.
    pub http: bool,
    /// Registries this one mirrors.
    pub mirror_for: Vec<String>,
    /// Repository doctor checks push permission on.
    pub check_repository: Option<String>,
}

impl Registry {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.http { "http" } else { "https" }
    }
}

/// Validated proxy settings (all optional). Proxy URLs may carry `user:password@`, so
/// `Debug` masks that part.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP proxy URL.
    pub http_proxy: Option<String>,
    /// HTTPS proxy URL.
    pub https_proxy: Option<String>,
    /// Comma-separated exclusions.
    pub no_proxy: Option<String>,
}

/// `http://user:pass@proxy:3128` → `http://***@proxy:3128`.
pub fn mask_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = |v: &Option<String>| v.as_deref().map(mask_userinfo);
        f.debug_struct("Proxy")
            .field("http_proxy", &m(&self.http_proxy))
            .field("https_proxy", &m(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxy {
    /// Whether any proxy is set.
    pub fn is_set(&self) -> bool {
        self.http_proxy.is_some() || self.https_proxy.is_some()
    }
}

/// The validated settings (stage two).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file they came from, if any.
    pub source: Option<PathBuf>,
    /// `[builder]`.
    pub builder: BuilderSettings,
    /// `[[registries]]`, hosts unique.
    pub registries: Vec<Registry>,
    /// `[proxy]`.
    pub proxy: Proxy,
    /// `[binfmt]`.
    pub binfmt: BinfmtSettings,
    /// `[cache]`.
    pub cache: CacheSettings,
}

const KNOWN_ARCHES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "riscv64", "ppc64le", "s390x", "mips64le", "mips64", "loong64",
];

impl Settings {
    /// Reads the settings file (`--config`, else `RUNNERX_CONFIG`, else the default
    /// path if it exists) and applies `RUNNERX_*` overrides.
    pub fn load(flag: Option<&Path>, env: &Env) -> Result<Settings> {
        let (raw, source) = Self::read(flag, env)?;
        Self::validate(raw, source, env)
    }

    /// Settings for `cleanup` and `gc`, which need only what identifies builders
    /// (labels, names, the lock): a rotated secret, a missing CA file or even a broken
    /// settings file must never leave a builder behind. Falls back to the file without
    /// `[[registries]]` and `[proxy]`, then to the defaults, with a warning.
    pub fn load_lenient(flag: Option<&Path>, env: &Env) -> Settings {
        let first = match Self::load(flag, env) {
            Ok(s) => return s,
            Err(e) => e,
        };
        tracing::warn!(
            "{first}; going on without registries and proxy (removing builders needs neither)"
        );
        let trimmed = Self::read(flag, env).and_then(|(mut raw, source)| {
            raw.registries.clear();
            raw.proxy = RawProxy::default();
            Self::validate(raw, source, env)
        });
        trimmed.unwrap_or_else(|e| {
            tracing::warn!("{e}; going on with the default settings");
            Self::validate(RawSettings::default(), None, &Env::default())
                .expect("the defaults are valid")
        })
    }

    /// The raw settings file (or the defaults when none exists at the default path).
    fn read(flag: Option<&Path>, env: &Env) -> Result<(RawSettings, Option<PathBuf>)> {
        let (path, explicit) = match (flag, env.non_empty("RUNNERX_CONFIG")) {
            (Some(p), _) => (PathBuf::from(p), Some("--config")),
            (None, Some(p)) => (PathBuf::from(p), Some("RUNNERX_CONFIG")),
            (None, None) => (PathBuf::from(DEFAULT_PATH), None),
        };
        let (raw, source) = match std::fs::read_to_string(&path) {
            Ok(text) => (Self::parse_toml(&text, &path)?, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                (RawSettings::default(), None)
            }
            Err(e) => {
                let via = explicit.unwrap_or("default path");
                return Err(Error::Settings(format!(
                    "cannot read {} (from {via}): {e}; create it or point {via} at an existing file",
                    path.display()
                )));
            }
        };
        Ok((raw, source))
    }

    /// Parses TOML text into raw settings; errors are condensed to one line naming
    /// the file, line, key and what to do.
    pub fn parse_toml(text: &str, path: &Path) -> Result<RawSettings> {
        toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start.min(text.len()));
            let message = e.message().replace('\n', " ");
            let Some(at) = at else {
                return Error::Settings(format!("{}: {message}", path.display()));
            };
            let line = text[..at].matches('\n').count() + 1;
            let key = key_at(text, at);
            let fix = if message.contains("invalid type") || message.contains("invalid value") {
                "give it a value of that type (strings in quotes, lists in [ ])"
            } else if message.contains("unknown field") {
                "remove or correct the key (README.md lists every setting)"
            } else {
                "fix the TOML syntax on that line (strings in quotes, tables as [name])"
            };
            Error::Settings(match key {
                Some(k) => format!("{}:{line}: {k}: {message}; {fix}", path.display()),
                None => format!("{}:{line}: {message}; {fix}", path.display()),
            })
        })
    }

    /// Applies env overrides to `raw` and validates everything.
    pub fn validate(raw: RawSettings, source: Option<PathBuf>, env: &Env) -> Result<Settings> {
        let overrides: EnvOverrides = envy::prefixed("RUNNERX_")
            .from_iter(env.with_prefix("RUNNERX_"))
            .map_err(|e| Error::Settings(format!("RUNNERX_* environment: {e}")))?;
        let file = source
            .as_ref()
            .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        // Names a key and where its value came from, for error messages.
        let origin_in = |section: &str, key: &str, from_env: bool| {
            if from_env {
                format!(
                    "{section}.{key} (from RUNNERX_{}_{})",
                    section.to_uppercase(),
                    key.to_uppercase()
                )
            } else {
                format!("{section}.{key} (in {file})")
            }
        };
        let origin = |key: &str, from_env: bool| origin_in("builder", key, from_env);
        let b = raw.builder;
        macro_rules! pick {
            ($field:ident, $env:ident) => {{
                let from_env = overrides.$env.is_some();
                (overrides.$env.or(b.$field), from_env)
            }};
        }

        let (image, image_env) = pick!(image, builder_image);
        let image = image.unwrap_or_else(|| "docker:28-dind".into());
        validate_image(&image)
            .map_err(|m| Error::Settings(format!("{} {m}", origin("image", image_env))))?;

        let (pp, pp_env) = pick!(pull_policy, builder_pull_policy);
        let pull_policy = one_of(
            pp.as_deref(),
            "if-not-present",
            &[
                ("always", PullPolicy::Always),
                ("if-not-present", PullPolicy::IfNotPresent),
                ("never", PullPolicy::Never),
            ],
            || origin("pull_policy", pp_env),
        )?;

        let (iso, iso_env) = pick!(isolation, builder_isolation);
        let isolation = one_of(
            iso.as_deref(),
            "rootless",
            &[
                ("rootless", Isolation::Rootless),
                ("privileged", Isolation::Privileged),
                ("auto", Isolation::Auto),
            ],
            || origin("isolation", iso_env),
        )?;
        let (lo, _) = pick!(host_loopback, builder_host_loopback);
        let host_loopback = lo.unwrap_or(false);

        let (pr, pr_env) = pick!(privileged, builder_privileged);
        let privileged = one_of(
            pr.as_deref(),
            "auto",
            &[
                ("auto", Privileged::Auto),
                ("always", Privileged::Always),
                ("never", Privileged::Never),
            ],
            || origin("privileged", pr_env),
        )?;

        let (hosts, hosts_env) = pick!(extra_hosts, builder_extra_hosts);
        let extra_hosts = non_empty(hosts.unwrap_or_default());
        for h in &extra_hosts {
            validate_extra_host(h).map_err(|m| {
                Error::Settings(format!(
                    "{} entry {h:?} {m}",
                    origin("extra_hosts", hosts_env)
                ))
            })?;
        }

        let (plats, plats_env) = pick!(platforms, builder_platforms);
        let plats =
            non_empty(plats.unwrap_or_else(|| vec!["linux/amd64".into(), "linux/arm64".into()]));
        if plats.is_empty() {
            return Err(Error::Settings(format!(
                "{} is empty; list at least one platform such as \"linux/amd64\"",
                origin("platforms", plats_env)
            )));
        }
        let platforms = plats
            .iter()
            .map(|p| {
                parse_platform(p).map_err(|m| {
                    Error::Settings(format!(
                        "{} entry {p:?} {m}",
                        origin("platforms", plats_env)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let (bt, bt_env) = pick!(boot_timeout, builder_boot_timeout);
        let boot_timeout = duration::parse(bt.as_deref().unwrap_or("60s"))
            .map_err(|m| Error::Settings(format!("{}: {m}", origin("boot_timeout", bt_env))))?;
        if boot_timeout.is_zero() {
            return Err(Error::Settings(format!(
                "{} must be more than 0s; 60s is a good value",
                origin("boot_timeout", bt_env)
            )));
        }

        let (pool, pool_env) = pick!(subnet_pool, builder_subnet_pool);
        let subnet_pool = parse_pool(pool.as_deref().unwrap_or("10.213.0.0/16"))
            .map_err(|m| Error::Settings(format!("{} {m}", origin("subnet_pool", pool_env))))?;

        let (lock, _) = pick!(lock_file, builder_lock_file);
        let lock_file = lock.unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE));

        let (mem, mem_env) = pick!(memory, builder_memory);
        let memory = parse_size(mem.as_deref().unwrap_or(DEFAULT_MEMORY))
            .map_err(|m| Error::Settings(format!("{}: {m}", origin("memory", mem_env))))?;
        if memory != 0 && memory < 64 * 1024 * 1024 {
            return Err(Error::Settings(format!(
                "{} is below 64MiB, too small for a builder; use e.g. \"8GiB\" (or 0 for no limit)",
                origin("memory", mem_env)
            )));
        }
        let (cpus, cpus_env) = pick!(cpus, builder_cpus);
        if let Some(c) = cpus
            && !(c > 0.0 && c.is_finite())
        {
            return Err(Error::Settings(format!(
                "{} = {c} must be a positive number of CPUs such as 2 or 1.5; leave it out for all of the host's",
                origin("cpus", cpus_env)
            )));
        }
        let (pids, pids_env) = pick!(pids_limit, builder_pids_limit);
        let pids_limit = pids.unwrap_or(DEFAULT_PIDS_LIMIT);
        if pids_limit < 256 {
            return Err(Error::Settings(format!(
                "{} = {pids_limit} is too small for a builder (dockerd, containerd and a build); use at least 256, e.g. {DEFAULT_PIDS_LIMIT}",
                origin("pids_limit", pids_env)
            )));
        }

        let (allowed, allowed_env) = pick!(allowed_images, builder_allowed_images);
        let allowed_images = non_empty(allowed.unwrap_or_default());
        for i in &allowed_images {
            validate_image(i).map_err(|m| {
                Error::Settings(format!(
                    "{} entry {m}",
                    origin("allowed_images", allowed_env)
                ))
            })?;
        }

        let mut registries: Vec<Registry> = Vec::new();
        for (i, r) in raw.registries.into_iter().enumerate() {
            let reg = validate_registry(i, r, &file, env)?;
            if registries.iter().any(|o| o.host == reg.host) {
                return Err(Error::Settings(format!(
                    "registries[{i}].host {:?} (in {file}) appears twice; merge the two entries",
                    reg.host
                )));
            }
            registries.push(reg);
        }
        let proxy = validate_proxy(raw.proxy, &file)?;

        let (drv, drv_env) = pick!(driver, builder_driver);
        let driver = one_of(
            drv.as_deref(),
            "docker",
            &[
                ("docker", Driver::Docker),
                ("docker-container", Driver::DockerContainer),
            ],
            || origin("driver", drv_env),
        )?;
        let (bk, bk_env) = pick!(buildkit_image, builder_buildkit_image);
        let buildkit_image = bk.unwrap_or_else(|| DEFAULT_BUILDKIT_IMAGE.into());
        validate_image(&buildkit_image)
            .map_err(|m| Error::Settings(format!("{} {m}", origin("buildkit_image", bk_env))))?;

        let bin_origin = |key: &str, from_env: bool| origin_in("binfmt", key, from_env);
        let mode_env = overrides.binfmt_mode.is_some();
        let binfmt_mode = one_of(
            overrides.binfmt_mode.or(raw.binfmt.mode).as_deref(),
            "auto",
            &[
                ("auto", BinfmtMode::Auto),
                ("builtin", BinfmtMode::Builtin),
                ("image", BinfmtMode::Image),
                ("none", BinfmtMode::None),
            ],
            || bin_origin("mode", mode_env),
        )?;
        let img_env = overrides.binfmt_image.is_some();
        let binfmt_image = overrides
            .binfmt_image
            .or(raw.binfmt.image)
            .unwrap_or_else(|| DEFAULT_BINFMT_IMAGE.into());
        validate_image(&binfmt_image)
            .map_err(|m| Error::Settings(format!("{} {m}", bin_origin("image", img_env))))?;
        if binfmt_image.ends_with(":latest") || !has_tag_or_digest(&binfmt_image) {
            return Err(Error::Settings(format!(
                "{} = {binfmt_image:?} is not pinned; QEMU regressions break builds: use a fixed tag such as {DEFAULT_BINFMT_IMAGE}",
                bin_origin("image", img_env)
            )));
        }

        let cache_env = overrides.cache_mode.is_some();
        let cache_key = |key: &str, from_env: bool| origin_in("cache", key, from_env);
        let cache_mode = one_of(
            overrides.cache_mode.or(raw.cache.mode).as_deref(),
            "none",
            &[
                ("none", CacheMode::None),
                ("per-project", CacheMode::PerProject),
            ],
            || cache_key("mode", cache_env),
        )?;
        let slots = raw.cache.slots.unwrap_or(4);
        if slots == 0 || slots > 64 {
            return Err(Error::Settings(format!(
                "{} = {slots} must be 1 to 64",
                cache_key("slots", false)
            )));
        }
        let max_age = duration::parse(raw.cache.max_age.as_deref().unwrap_or("7d"))
            .map_err(|m| Error::Settings(format!("{}: {m}", cache_key("max_age", false))))?;
        let max_size = parse_size(raw.cache.max_size.as_deref().unwrap_or("20GB"))
            .map_err(|m| Error::Settings(format!("{}: {m}", cache_key("max_size", false))))?;

        Ok(Settings {
            source,
            cache: CacheSettings {
                mode: cache_mode,
                slots,
                max_age,
                max_size,
            },
            registries,
            proxy,
            binfmt: BinfmtSettings {
                mode: binfmt_mode,
                image: binfmt_image,
            },
            builder: BuilderSettings {
                image,
                pull_policy,
                isolation,
                host_loopback,
                privileged,
                extra_hosts,
                platforms,
                boot_timeout,
                subnet_pool,
                lock_file,
                allowed_images,
                limits: Limits {
                    memory,
                    cpus,
                    pids: pids_limit,
                },
                driver,
                buildkit_image,
            },
        })
    }
}

fn validate_registry(i: usize, r: RawRegistry, file: &str, env: &Env) -> Result<Registry> {
    let key = |k: &str| format!("registries[{i}].{k} (in {file})");
    let bad = |k: &str, m: String| Error::Settings(format!("{} {m}", key(k)));
    let host = r.host.ok_or_else(|| {
        bad(
            "host",
            "is missing; write the registry as in image references, e.g. \"harbor.example.com\""
                .into(),
        )
    })?;
    validate_registry_host(&host).map_err(|m| bad("host", format!("{host:?} {m}")))?;
    let read = |k: &str, p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            bad(
                k,
                format!(
                    "{}: {e}; fix the path or the file's permissions",
                    p.display()
                ),
            )
        })
    };
    let ca_pem = match &r.ca_file {
        Some(p) => {
            let pem = read("ca_file", p)?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "ca_file",
                    format!(
                        "{} holds no PEM certificate; give the CA certificate (ca.crt), not a key or DER file",
                        p.display()
                    ),
                ));
            }
            Some(pem)
        }
        None => None,
    };
    let client = match (&r.client_cert_file, &r.client_key_file) {
        (Some(c), Some(k)) => {
            let cert_pem = read("client_cert_file", c)?;
            let key_pem = read("client_key_file", k)?;
            if !key_pem.contains("PRIVATE KEY-----") {
                return Err(bad(
                    "client_key_file",
                    format!("{} holds no PEM private key", k.display()),
                ));
            }
            Some(ClientIdentity {
                cert_pem,
                key_pem: Secret::new(key_pem),
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "client_key_file",
                "is missing; mTLS needs both client_cert_file and client_key_file".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "client_cert_file",
                "is missing; mTLS needs both client_cert_file and client_key_file".into(),
            ));
        }
    };
    let password = match (&r.password_env, &r.password_file) {
        (Some(_), Some(_)) => return Err(bad("password_env", "and password_file are both set; keep one".into())),
        (Some(var), None) => Some(Secret::new(env.non_empty(var).ok_or_else(|| {
            bad("password_env", format!("names {var}, which is not set in runnerx's environment; set it for gitlab-runner (e.g. its systemd unit) or use password_file"))
        })?)),
        (None, Some(p)) => {
            let text = read("password_file", p)?;
            let pw = text.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(bad("password_file", format!("{} is empty", p.display())));
            }
            Some(Secret::new(pw))
        }
        (None, None) => None,
    };
    let credentials = match (r.username, password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Some(Credentials { username, password })
        }
        (Some(_), None) => {
            return Err(bad(
                "password_env",
                "is missing: username is set but no password_env or password_file".into(),
            ));
        }
        (None, Some(_)) | (Some(_), Some(_)) => {
            return Err(bad(
                "username",
                "is missing: a password is set but no username".into(),
            ));
        }
        (None, None) => None,
    };
    if r.insecure && r.http {
        return Err(bad("insecure", "and http are both true; use http = true for plain HTTP or insecure = true for HTTPS without verification".into()));
    }
    for m in &r.mirror_for {
        validate_registry_host(m).map_err(|e| bad("mirror_for", format!("entry {m:?} {e}")))?;
    }
    if let Some(repo) = &r.check_repository {
        let ok = !repo.is_empty()
            && repo.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !ok {
            return Err(bad(
                "check_repository",
                format!("{repo:?} is not a repository path such as \"ci/app\""),
            ));
        }
    }
    Ok(Registry {
        host,
        ca_pem,
        ca_file: r.ca_file,
        client,
        credentials,
        insecure: r.insecure,
        http: r.http,
        mirror_for: r.mirror_for,
        check_repository: r.check_repository,
    })
}

/// `host[:port]`: no scheme, no path, no credentials.
pub fn validate_registry_host(host: &str) -> Result<(), String> {
    if host.contains("://") {
        return Err("has a scheme; write host[:port] only, e.g. \"harbor.example.com\"".into());
    }
    if host.contains('/') || host.contains('@') {
        return Err("must be host[:port] only (no path, no user)".into());
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("has an invalid host name".into());
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("has an invalid port")?;
    }
    Ok(())
}

fn validate_proxy(p: RawProxy, file: &str) -> Result<Proxy> {
    for (k, v) in [
        ("http_proxy", &p.http_proxy),
        ("https_proxy", &p.https_proxy),
    ] {
        if let Some(v) = v
            && !(v.starts_with("http://")
                || v.starts_with("https://")
                || v.starts_with("socks5://"))
        {
            return Err(Error::Settings(format!(
                "proxy.{k} (in {file}) must be a URL such as \"http://proxy.example.com:3128\""
            )));
        }
    }
    Ok(Proxy {
        http_proxy: p.http_proxy.filter(|s| !s.is_empty()),
        https_proxy: p.https_proxy.filter(|s| !s.is_empty()),
        no_proxy: p.no_proxy.filter(|s| !s.is_empty()),
    })
}

fn non_empty(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether an image reference names a tag or a digest (the tag is after the last `/`,
/// so `host:port/repo` has none).
pub fn has_tag_or_digest(image: &str) -> bool {
    image.contains('@') || image.rsplit('/').next().unwrap_or(image).contains(':')
}

/// Checks an image reference is plausible (the engine does the full parse).
pub fn validate_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("is empty; set an image such as \"docker:28-dind\"".into());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{image:?} contains whitespace; write a single image reference"
        ));
    }
    if image.starts_with('-') {
        return Err(format!(
            "{image:?} starts with '-'; write an image reference"
        ));
    }
    Ok(())
}

fn validate_extra_host(entry: &str) -> Result<(), String> {
    let (host, ip) = entry
        .split_once(':')
        .ok_or("must be \"hostname:ip\", e.g. \"harbor.example.com:10.0.0.5\"")?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!("has an invalid hostname {host:?}"));
    }
    ip.parse::<IpAddr>()
        .map_err(|_| format!("has an invalid IP address {ip:?}"))?;
    Ok(())
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let (os, arch, variant) = match parts.as_slice() {
        [os, arch] => (*os, *arch, None),
        [os, arch, v] => (*os, *arch, Some((*v).to_string())),
        _ => return Err("must be os/arch[/variant], e.g. \"linux/arm64\"".into()),
    };
    if os != "linux" {
        return Err(format!("has os {os:?}; only linux builders are supported"));
    }
    if !KNOWN_ARCHES.contains(&arch) {
        return Err(format!(
            "has unknown architecture {arch:?}; use one of {}",
            KNOWN_ARCHES.join(", ")
        ));
    }
    Ok(Platform {
        os: os.into(),
        arch: arch.into(),
        variant,
    })
}

fn parse_pool(text: &str) -> Result<Ipv4Net, String> {
    let (addr, prefix) = text.split_once('/').ok_or(format!(
        "{text:?} must be an IPv4 CIDR such as \"10.213.0.0/16\""
    ))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{text:?} has an invalid IPv4 address"))?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 23).ok_or(format!(
        "{text:?} needs a prefix of /23 or shorter (its first two /24s are every builder's inner bridge and networks)"
    ))?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "{text:?} has host bits set; write the network address"
        ));
    }
    Ok(Ipv4Net { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings> {
        let raw = Settings::parse_toml(toml_text, Path::new("/etc/runnerx/runnerx.toml"))?;
        Settings::validate(
            raw,
            Some("/etc/runnerx/runnerx.toml".into()),
            &Env::from_pairs(env.iter().copied()),
        )
    }

    #[test]
    fn a_wrong_choice_lists_the_valid_ones() {
        let e = load("[builder]\nisolation = \"chroot\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("builder.isolation (in /etc/runnerx/runnerx.toml)"),
            "{e}"
        );
        assert!(e.contains("use rootless, privileged or auto"), "{e}");
        let e = load(
            "[builder]\ndriver = \"kubernetes\"\n",
            &[("RUNNERX_BUILDER_DRIVER", "k8s")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("(from RUNNERX_BUILDER_DRIVER)"), "{e}");
        assert!(
            e.contains("\"k8s\" is not valid; use docker or docker-container"),
            "{e}"
        );
    }

    #[test]
    fn toml_errors_name_the_key_and_the_fix() {
        let text = "[builder]\nimage = \"x\"\nhost_loopback = \"yes\"\n";
        let e = Settings::parse_toml(text, Path::new("/etc/runnerx/runnerx.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runnerx.toml:3: builder.host_loopback:"), "{e}");
        assert!(e.contains("give it a value of that type"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = Settings::parse_toml("[builder\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fix the TOML syntax"), "{e}");
    }

    #[test]
    fn defaults_are_sane() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.builder.image, "docker:28-dind");
        assert_eq!(s.builder.pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(s.builder.privileged, Privileged::Auto);
        assert_eq!(s.builder.platforms.len(), 2);
        assert_eq!(s.builder.platforms[1].to_string(), "linux/arm64");
        assert_eq!(s.builder.boot_timeout, Duration::from_secs(60));
    }

    #[test]
    fn full_file_parses() {
        let s = load(
            r#"
[builder]
image = "registry.example.com/dind:28"
pull_policy = "never"
privileged = "never"
extra_hosts = ["harbor.example.com:10.0.0.5"]
platforms = ["linux/amd64", "linux/arm/v7"]
boot_timeout = "2m"
subnet_pool = "10.50.0.0/20"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(s.builder.pull_policy, PullPolicy::Never);
        assert_eq!(s.builder.privileged, Privileged::Never);
        assert_eq!(s.builder.platforms[1].variant.as_deref(), Some("v7"));
        assert_eq!(s.builder.boot_timeout, Duration::from_secs(120));
        assert_eq!(s.builder.subnet_pool.prefix, 20);
    }

    #[test]
    fn env_overrides_the_file() {
        let s = load(
            "[builder]\npull_policy = \"always\"\n",
            &[
                ("RUNNERX_BUILDER_PULL_POLICY", "never"),
                ("RUNNERX_BUILDER_PLATFORMS", "linux/amd64,linux/s390x"),
            ],
        )
        .unwrap();
        assert_eq!(s.builder.pull_policy, PullPolicy::Never);
        assert_eq!(s.builder.platforms[1].arch, "s390x");
    }

    #[test]
    fn bad_values_name_key_origin_and_fix() {
        let e = load("[builder]\npull_policy = \"sometimes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("builder.pull_policy"), "{e}");
        assert!(e.contains("/etc/runnerx/runnerx.toml"), "{e}");
        assert!(e.contains("if-not-present"), "{e}");

        let e = load("", &[("RUNNERX_BUILDER_PRIVILEGED", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RUNNERX_BUILDER_PRIVILEGED"), "{e}");

        let e = load("[builder]\nplatforms = [\"linux/sparc\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown architecture \"sparc\""), "{e}");

        let e = load("[builder]\nextra_hosts = [\"harbor\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostname:ip"), "{e}");

        let e = load("[builder]\nboot_timeout = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("builder.boot_timeout"), "{e}");

        let e = load("[builder]\nsubnet_pool = \"10.213.0.0/25\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/23 or shorter"), "{e}");
    }

    #[test]
    fn typos_and_syntax_errors_are_one_line_with_position() {
        let e = load("[builder]\nimagee = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `imagee`"), "{e}");
        assert!(e.contains("runnerx.toml:2"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = load("[builder\n", &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("settings: /etc/runnerx/runnerx.toml:1"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn proxy_credentials_never_reach_debug_output() {
        let s = load(
            "[proxy]\nhttps_proxy = \"http://alice:s3cret@proxy:3128\"\n",
            &[],
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("http://***@proxy:3128"), "{shown}");
        assert_eq!(mask_userinfo("http://proxy:3128"), "http://proxy:3128");
    }

    #[test]
    fn cache_settings() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.cache.mode, CacheMode::None);
        let s = load(
            "[cache]\nmode = \"per-project\"\nslots = 2\nmax_age = \"2d\"\nmax_size = \"1.5GiB\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.cache.mode, CacheMode::PerProject);
        assert_eq!(s.cache.slots, 2);
        assert_eq!(s.cache.max_size, 1_610_612_736);
        let e = load("[cache]\nmax_size = \"lots\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.max_size"), "{e}");
        let e = load("", &[("RUNNERX_CACHE_MODE", "global")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RUNNERX_CACHE_MODE"), "{e}");
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
    }

    #[test]
    fn binfmt_and_driver_settings() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.binfmt.mode, BinfmtMode::Auto);
        assert_eq!(s.builder.driver, Driver::Docker);
        let s = load(
            "[builder]\ndriver = \"docker-container\"\nbuildkit_image = \"harbor.example.com/mirror/buildkit:v0.23.2\"\n[binfmt]\nmode = \"image\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.builder.driver, Driver::DockerContainer);
        assert_eq!(s.binfmt.mode, BinfmtMode::Image);
        let e = load("[binfmt]\nimage = \"tonistiigi/binfmt:latest\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not pinned"), "{e}");
        let e = load("[binfmt]\nmode = \"qemu\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("binfmt.mode") && e.contains("builtin"), "{e}");
        let e = load("", &[("RUNNERX_BUILDER_DRIVER", "kubernetes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RUNNERX_BUILDER_DRIVER"), "{e}");
    }

    #[test]
    fn registries_validate_and_read_secrets_from_runner_env() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = format!(
            "[[registries]]\nhost = \"harbor.example.com:8443\"\nca_file = \"{}\"\nusername = \"robot$ci\"\npassword_env = \"HARBOR_PW\"\nmirror_for = [\"docker.io\"]\n[proxy]\nhttps_proxy = \"http://proxy:3128\"\n",
            ca.display()
        );
        let s = load(&text, &[("HARBOR_PW", "s3cret")]).unwrap();
        let r = &s.registries[0];
        assert_eq!(r.host, "harbor.example.com:8443");
        assert_eq!(r.credentials.as_ref().unwrap().password.expose(), "s3cret");
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "Debug leaks the password"
        );
        assert_eq!(s.proxy.https_proxy.as_deref(), Some("http://proxy:3128"));

        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(
            e.contains("registries[0].password_env") && e.contains("HARBOR_PW"),
            "{e}"
        );
        let e = load("[[registries]]\nhost = \"https://harbor\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a scheme"), "{e}");
        let e = load(
            "[[registries]]\nhost = \"h\"\nca_file = \"/nonexistent/ca.crt\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registries[0].ca_file") && e.contains("/nonexistent/ca.crt"),
            "{e}"
        );
        let e = load(
            "[[registries]]\nhost = \"h\"\ninsecure = true\nhttp = true\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("both true"), "{e}");
        let e = load("[[registries]]\nhost = \"h\"\nusername = \"u\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no password_env or password_file"), "{e}");
        let e = load("[proxy]\nhttp_proxy = \"proxy:3128\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.http_proxy"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_missing_default_is_not() {
        let env = Env::from_pairs([("RUNNERX_CONFIG", "/nonexistent/runnerx.toml")]);
        let e = Settings::load(None, &env).unwrap_err().to_string();
        assert!(e.contains("RUNNERX_CONFIG"), "{e}");
        let e = Settings::load(Some(Path::new("/nonexistent/x.toml")), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--config"), "{e}");
    }
}
