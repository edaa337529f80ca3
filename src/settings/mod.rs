//! The runner host's settings: what the operator wrote, validated once.
//!
//! Two stages, as in ripgrep's low/high args: [`raw`] is exactly what the TOML file
//! and the `RUNNERX_*` overrides say (all optional, unknown keys rejected, choices
//! typed by serde), and [`Settings`] is the validated, typed result the rest of the
//! program uses, one module per section. Every error is one line that names the key,
//! where its value came from (`(in FILE)` or `(from RUNNERX_…)`), and the fix.
//!
//! Job variables are *not* read here: they are untrusted and only reach the settings
//! through the allow-list in `gitlab::job` (e.g. `builder.allowed_images`).

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
mod tests {
    use std::time::Duration;

    use super::registry::mask_userinfo;
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings> {
        Settings::parse(
            Some(toml_text),
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
    fn every_choice_lists_its_valid_values_from_file_and_env() {
        let choices = [
            ("builder", "pull_policy", "always, if-not-present or never"),
            ("builder", "isolation", "rootless, privileged or auto"),
            ("builder", "publish_ports", "none or all"),
            ("builder", "privileged", "auto, always or never"),
            ("builder", "driver", "docker or docker-container"),
            ("binfmt", "mode", "auto, builtin, image or none"),
            ("cache", "mode", "none or per-project"),
        ];
        for (section, key, valid) in choices {
            let e = load(&format!("[{section}]\n{key} = \"bogus\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{section}.{key} (in /etc/runnerx/runnerx.toml) = \"bogus\" is not valid; use {valid}")),
                "{e}"
            );
            let var = format!("RUNNERX_{}_{}", section.to_uppercase(), key.to_uppercase());
            let e = load("", &[(var.as_str(), "bogus")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "{section}.{key} (from {var}) = \"bogus\" is not valid; use {valid}"
                )),
                "{e}"
            );
        }
        // A boolean is not a choice (it once slipped through as "true"/"false").
        let e = load("[builder]\nprivileged = true\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("builder.privileged"), "{e}");
    }

    #[test]
    fn every_section_key_can_come_from_the_environment() {
        let s = load(
            "[cache]\nslots = 2\n",
            &[
                ("RUNNERX_CACHE_SLOTS", "3"),
                ("RUNNERX_CACHE_MAX_AGE", "2d"),
                ("RUNNERX_BUILDER_HOST_LOOPBACK", "true"),
                ("RUNNERX_BUILDER_CPUS", "1.5"),
                ("RUNNERX_BINFMT_MODE", "none"),
                // Not a setting: warned about and ignored, like any other variable.
                ("RUNNERX_BUILDER_REPO", "x"),
            ],
        )
        .unwrap();
        assert_eq!(s.cache.slots, 3);
        assert_eq!(s.cache.max_age, Duration::from_secs(2 * 86_400));
        assert!(s.builder.host_loopback);
        assert_eq!(s.builder.limits.cpus, Some(1.5));
        assert_eq!(s.binfmt.mode, BinfmtMode::None);
        let e = load("", &[("RUNNERX_CACHE_SLOTS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.slots (from RUNNERX_CACHE_SLOTS)"), "{e}");
        let e = load("", &[("RUNNERX_BUILDER_HOST_LOOPBACK", "yes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RUNNERX_BUILDER_HOST_LOOPBACK"), "{e}");
    }

    #[test]
    fn per_project_credentials_pick_the_first_matching_entry() {
        let text = "[[registries]]\nhost = \"harbor.example.com\"\n\
            [[registries.credentials]]\nprojects = [\"team-a/*\", \"platform/base-images\"]\nusername = \"robot$team-a+ci\"\npassword_env = \"PW_A\"\n\
            [[registries.credentials]]\nproject_ids = [77]\nprojects = [\"team-b/**\"]\nusername = \"robot$team-b+ci\"\npassword_env = \"PW_B\"\n";
        let s = load(text, &[("PW_A", "a"), ("PW_B", "b")]).unwrap();
        let r = &s.registries[0];
        let who = |id: Option<&str>, path: Option<&str>| Project {
            id: id.map(String::from),
            path: path.map(String::from),
        };
        let user = |p: Project| r.for_project(&p).credentials.map(|c| c.username);
        assert_eq!(
            user(who(None, Some("team-a/app"))).as_deref(),
            Some("robot$team-a+ci")
        );
        assert_eq!(
            user(who(None, Some("team-a/sub/app"))),
            None,
            "* stays in one segment"
        );
        assert_eq!(
            user(who(None, Some("platform/base-images"))).as_deref(),
            Some("robot$team-a+ci")
        );
        assert_eq!(
            user(who(None, Some("team-b/sub/app"))).as_deref(),
            Some("robot$team-b+ci")
        );
        assert_eq!(
            user(who(Some("77"), Some("other/app"))).as_deref(),
            Some("robot$team-b+ci")
        );
        assert_eq!(user(who(Some("78"), Some("other/app"))), None);
        assert_eq!(user(who(None, None)), None);
        assert!(
            !format!("{s:?}").contains("\"a\""),
            "Debug leaks a password"
        );

        let e = load(
            "[[registries]]\nhost = \"h\"\nusername = \"u\"\npassword_env = \"PW_A\"\n[[registries.credentials]]\nprojects = [\"x/*\"]\nusername = \"v\"\npassword_env = \"PW_A\"\n",
            &[("PW_A", "a")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registries[0].username") && e.contains("projects = [\"**\"]"),
            "{e}"
        );
        let e = load(
            "[[registries]]\nhost = \"h\"\n[[registries.credentials]]\nusername = \"v\"\npassword_env = \"PW_A\"\n",
            &[("PW_A", "a")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("registries[0].credentials[0].projects"), "{e}");
        let e = load(
            "[[registries]]\nhost = \"h\"\n[[registries.credentials]]\nprojects = [\"x/*\"]\nusername = \"v\"\npassword_env = \"NOPE\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registries[0].credentials[0].password_env") && e.contains("NOPE"),
            "{e}"
        );
    }

    #[test]
    fn pull_policies_decide_once() {
        assert_eq!(PullPolicy::Always.wants_pull(true), Some(true));
        assert_eq!(PullPolicy::IfNotPresent.wants_pull(true), Some(false));
        assert_eq!(PullPolicy::IfNotPresent.wants_pull(false), Some(true));
        assert_eq!(PullPolicy::Never.wants_pull(true), Some(false));
        assert_eq!(PullPolicy::Never.wants_pull(false), None);
    }

    #[test]
    fn helper_binary_must_be_a_file() {
        let e = load(
            "[builder]\nhelper_binary = \"/nonexistent/gitlab-runner\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("builder.helper_binary (in /etc/runnerx/runnerx.toml)")
                && e.contains("command -v gitlab-runner"),
            "{e}"
        );
        let s = load("[builder]\nhelper_binary = \"/bin/sh\"\n", &[]).unwrap();
        assert_eq!(
            s.builder.helper_binary.as_deref(),
            Some(Path::new("/bin/sh"))
        );
        assert_eq!(load("", &[]).unwrap().builder.helper_binary, None);
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
        assert_eq!(s.builder.image, "runnerx-builder:latest");
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
        assert_eq!(s.builder.subnet_pool.prefix_len(), 20);
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
        assert_eq!(values::size("500MB").unwrap(), 500_000_000);
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
