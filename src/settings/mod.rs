//! The runner host's settings: what the operator wrote, validated once.
//!
//! Two stages, as in ripgrep's low/high args: [`raw`] is exactly what the TOML file
//! and the `RUNNERX_*` overrides say (all optional, unknown keys rejected, choices
//! typed by serde), and [`Settings`] is the validated, typed result the rest of the
//! program uses, one module per section. Every error is one line that names the key,
//! where its value came from (`(in FILE)` or `(from RUNNERX_…)`), and the fix.
//!
//! Job variables are *not* read here: they are untrusted and only reach the settings
//! through the allow-list in `gitlab::job` (e.g. `builder.builder_images`).

use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::{Error, Result};

mod builder;
mod cache;
mod choices;
mod network;
mod nodes;
mod raw;
mod registry;
pub(crate) mod values;

pub(crate) use builder::{
    BuilderSettings, Driver, Isolation, Limits, Platform, Privileged, PublishPorts, PullPolicy,
    has_tag_or_digest,
};
pub(crate) use cache::{BinfmtMode, BinfmtSettings, CacheMode, CacheSettings};
pub(crate) use choices::{NodeFallback, SigningMode};
pub(crate) use network::{Egress, NetworkSettings, Target};
pub(crate) use nodes::Node;
use raw::{Origins, RawProxy, RawSettings};
pub(crate) use registry::{ClientIdentity, Secret, glob};
pub(crate) use registry::{Credentials, Project, Proxy, Registry};

/// Where settings are read from when neither `--config` nor `RUNNERX_CONFIG` is given.
pub(crate) const DEFAULT_PATH: &str = "/etc/runnerx/runnerx.toml";

/// The validated settings (stage two).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
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
    /// `[[nodes]]`: remote BuildKit nodes, each platform on at most one.
    pub nodes: Vec<Node>,
    /// `[network]`: the egress policy.
    pub network: NetworkSettings,
    /// `[signing] mode`: what a failure to sign a push is.
    pub signing: SigningMode,
}

impl Settings {
    /// Reads the settings file (`--config`, else `RUNNERX_CONFIG`, else the default
    /// path if it exists) and applies `RUNNERX_*` overrides.
    pub(crate) fn load(flag: Option<&Path>, env: &Env) -> Result<Settings> {
        let (text, source) = Self::read(flag, env)?;
        Self::parse(text.as_deref(), source, env)
    }

    /// Settings from TOML text alone (no environment), for other modules' unit tests.
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str) -> Result<Settings> {
        Self::parse(
            Some(text),
            Some("/etc/runnerx/runnerx.toml".into()),
            &Env::default(),
        )
    }

    /// Settings from the file's text (`None`: no file) and the environment.
    fn parse(text: Option<&str>, source: Option<PathBuf>, env: &Env) -> Result<Settings> {
        let raw = match (text, &source) {
            (Some(text), Some(path)) => Self::parse_toml(text, path).map_err(|file_error| {
                // The environment overrides the file, so its error is the one to fix first.
                match RawSettings::default().with_env(env, &mut Origins::file(String::new())) {
                    Err(env_error) => env_error,
                    Ok(_) => file_error,
                }
            })?,
            _ => RawSettings::default(),
        };
        Self::validate(raw, source, env)
    }

    /// Settings for `cleanup` and `gc`, which need only what identifies builders
    /// (labels, names, the lock): a rotated secret, a missing CA file or even a broken
    /// settings file must never leave a builder behind. Falls back to the file without
    /// `[[registries]]` and `[proxy]`, then to the defaults, with a warning.
    pub(crate) fn load_lenient(flag: Option<&Path>, env: &Env) -> Settings {
        let first = match Self::load(flag, env) {
            Ok(s) => return s,
            Err(e) => e,
        };
        tracing::warn!(
            "{first}; going on without registries and proxy (removing builders needs neither)"
        );
        let trimmed = Self::read(flag, env).and_then(|(text, source)| {
            let mut raw = match (text.as_deref(), &source) {
                (Some(text), Some(path)) => Self::parse_toml(text, path)?,
                _ => RawSettings::default(),
            };
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

    /// The settings file's text and path (`None` when no file exists at the default path).
    fn read(flag: Option<&Path>, env: &Env) -> Result<(Option<String>, Option<PathBuf>)> {
        let (path, explicit) = match (flag, env.non_empty("RUNNERX_CONFIG")) {
            (Some(p), _) => (PathBuf::from(p), Some("--config")),
            (None, Some(p)) => (PathBuf::from(p), Some("RUNNERX_CONFIG")),
            (None, None) => (PathBuf::from(DEFAULT_PATH), None),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Some(text), Some(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Ok((None, None))
            }
            Err(e) => {
                let via = explicit.unwrap_or("default path");
                Err(Error::Settings(format!(
                    "cannot read {} (from {via}): {e}; create it or point {via} at an existing file",
                    path.display()
                )))
            }
        }
    }

    /// Parses TOML text into raw settings; errors are condensed to one line naming
    /// the file, line, key and what to do.
    fn parse_toml(text: &str, path: &Path) -> Result<RawSettings> {
        toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start.min(text.len()));
            let message = e.message().replace('\n', " ");
            let Some(at) = at else {
                return Error::Settings(format!("{}: {message}", path.display()));
            };
            let line = text[..at].matches('\n').count() + 1;
            let key = key_at(text, at);
            if let Some(k) = &key
                && let Some(m) =
                    raw::choice_error(&format!("{k} (in {})", path.display()), &message)
            {
                return Error::Settings(format!("{m} (line {line})"));
            }
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

    /// Applies env overrides to `raw` and validates every section.
    fn validate(raw: RawSettings, source: Option<PathBuf>, env: &Env) -> Result<Settings> {
        let file = source
            .as_ref()
            .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        let mut origins = Origins::file(file);
        let raw = raw.with_env(env, &mut origins)?;
        let builder = builder::validate(raw.builder, &origins)?;
        let mut registries: Vec<Registry> = Vec::new();
        for (i, r) in raw.registries.into_iter().enumerate() {
            let reg = registry::validate_registry(i, r, &origins.file, env)?;
            if registries.iter().any(|o| o.host == reg.host) {
                return Err(Error::Settings(format!(
                    "registries[{i}].host {:?} (in {}) appears twice; merge the two entries",
                    reg.host, origins.file
                )));
            }
            registries.push(reg);
        }
        let nodes = nodes::validate_nodes(raw.nodes, &builder.platforms, &origins.file)?;
        Ok(Settings {
            source,
            nodes,
            builder,
            registries,
            proxy: registry::validate_proxy(raw.proxy, &origins.file)?,
            binfmt: cache::validate_binfmt(raw.binfmt, &origins)?,
            cache: cache::validate_cache(raw.cache, &origins)?,
            network: network::validate_network(raw.network, &origins.file)?,
            signing: raw.signing.mode.unwrap_or_default(),
        })
    }
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

#[cfg(test)]
mod tests;
