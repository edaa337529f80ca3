//! `[builder]`: what every job's builder is made of and may use.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use super::choices::{Driver, Isolation, Privileged, PublishPorts, PullPolicy};
use super::raw::{Origins, RawBuilder};
use super::values::{self, Invalid};
use crate::error::{Error, Result};
use ipnet::Ipv4Net;

/// A builder's memory by default: room for a large compile plus its dockerd.
pub(crate) const DEFAULT_MEMORY: &str = "8GiB";
/// A builder's processes by default: far above any build, far below the host's.
pub(crate) const DEFAULT_PIDS_LIMIT: i64 = 16384;
/// The host lock: in a root-only directory, so no other local user can hold it.
pub(crate) const DEFAULT_LOCK_FILE: &str = "/run/runnerx/lock";
/// Default BuildKit image for the docker-container driver.
pub(crate) const DEFAULT_BUILDKIT_IMAGE: &str = "moby/buildkit:v0.23.2";
/// Default builder image: what `docker build -t runnerx-builder docker/` makes (the
/// image contract in docker/builder-setup.sh). A plain docker:dind boots neither
/// isolation.
pub(crate) const DEFAULT_IMAGE: &str = "runnerx-builder:latest";

/// A platform such as `linux/arm64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
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

impl Platform {
    /// `platforms` as text, `sep` between them (`linux/amd64,linux/arm64`).
    pub(crate) fn joined(platforms: &[Platform], sep: &str) -> String {
        platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    }
}

const KNOWN_ARCHES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "riscv64", "ppc64le", "s390x", "mips64le", "mips64", "loong64",
];

impl std::str::FromStr for Platform {
    type Err = Invalid;

    /// Parses `os/arch[/variant]`.
    fn from_str(text: &str) -> Result<Platform, Invalid> {
        let parts: Vec<&str> = text.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some((*v).to_string())),
            _ => {
                return Err(Invalid::new(
                    "must be os/arch[/variant], e.g. \"linux/arm64\"",
                ));
            }
        };
        if os != "linux" {
            return Err(Invalid(format!(
                "has os {os:?}; only linux builders are supported"
            )));
        }
        if !KNOWN_ARCHES.contains(&arch) {
            return Err(Invalid(format!(
                "has unknown architecture {arch:?}; use one of {}",
                KNOWN_ARCHES.join(", ")
            )));
        }
        Ok(Platform {
            os: os.into(),
            arch: arch.into(),
            variant,
        })
    }
}

/// Resource limits of a builder container (jobs, dockerd and inner containers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Limits {
    /// Bytes of memory (0: none); no swap on top.
    pub memory: u64,
    /// CPUs (`None`: all of the host's).
    pub cpus: Option<f64>,
    /// Processes.
    pub pids: i64,
}

/// Validated builder settings.
#[derive(Debug, Clone)]
pub(crate) struct BuilderSettings {
    /// DinD image.
    pub image: String,
    /// Pull policy for `image`.
    pub pull_policy: PullPolicy,
    /// Isolation mode.
    pub isolation: Isolation,
    /// Rootless: the namespace reaches the host's loopback (as 10.0.2.2).
    pub host_loopback: bool,
    /// Where ports a job publishes listen (default: only in its namespace).
    pub publish_ports: PublishPorts,
    /// Privilege mode (privileged isolation).
    pub privileged: Privileged,
    /// `host:ip` entries, validated.
    pub extra_hosts: Vec<String>,
    /// Target platforms.
    pub platforms: Vec<Platform>,
    /// Inner dockerd boot deadline.
    pub boot_timeout: Duration,
    /// Pool whose first two /24s are every builder's inner networks (prefix ≤ 23).
    pub subnet_pool: Ipv4Net,
    /// Host-wide lock file.
    pub lock_file: PathBuf,
    /// Images a job's `image:` may select as its builder.
    pub builder_images: Vec<String>,
    /// Job images whose scripts run in the builder (globs), besides `…/docker[:tag]`.
    pub images_in_builder: Vec<String>,
    /// Further service images that are Docker-in-Docker (names or globs), besides
    /// `…/docker:*dind*`.
    pub dind_images: Vec<String>,
    /// `memory`, `cpus`, `pids_limit`: what one builder may use.
    pub limits: Limits,
    /// buildx driver.
    pub driver: Driver,
    /// BuildKit image for the docker-container driver.
    pub buildkit_image: String,
    /// gitlab-runner's binary on the host, if set (checked to be a file).
    pub helper_binary: Option<PathBuf>,
    /// How long services may take to answer (gitlab-runner's default: 30s).
    pub wait_for_services: Duration,
}

/// Validates `[builder]`.
pub(crate) fn validate(b: RawBuilder, origins: &Origins) -> Result<BuilderSettings> {
    let key = |k: &str| origins.of("builder", k);
    let bad = |k: &str, m: &dyn std::fmt::Display| Error::Settings(format!("{} {m}", key(k)));

    let image = b.image.unwrap_or_else(|| DEFAULT_IMAGE.into());
    validate_image(&image).map_err(|m| bad("image", &m))?;

    let extra_hosts = values::non_empty(b.extra_hosts.unwrap_or_default());
    for h in &extra_hosts {
        validate_extra_host(h).map_err(|m| bad("extra_hosts", &format!("entry {h:?} {m}")))?;
    }

    let platforms = values::non_empty(
        b.platforms
            .unwrap_or_else(|| vec!["linux/amd64".into(), "linux/arm64".into()]),
    );
    if platforms.is_empty() {
        return Err(bad(
            "platforms",
            &"is empty; list at least one platform such as \"linux/amd64\"",
        ));
    }
    let platforms = platforms
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|m| bad("platforms", &format!("entry {p:?} {m}")))
        })
        .collect::<Result<Vec<Platform>>>()?;

    let boot_timeout = values::duration(b.boot_timeout.as_deref().unwrap_or("60s"))
        .map_err(|m| Error::Settings(format!("{}: {m}", key("boot_timeout"))))?;
    if boot_timeout.is_zero() {
        return Err(bad(
            "boot_timeout",
            &"must be more than 0s; 60s is a good value",
        ));
    }

    let subnet_pool = parse_pool(b.subnet_pool.as_deref().unwrap_or("10.213.0.0/16"))
        .map_err(|m| bad("subnet_pool", &m))?;

    let memory = values::size(b.memory.as_deref().unwrap_or(DEFAULT_MEMORY))
        .map_err(|m| Error::Settings(format!("{}: {m}", key("memory"))))?;
    if memory != 0 && memory < 64 * 1024 * 1024 {
        return Err(bad(
            "memory",
            &"is below 64MiB, too small for a builder; use e.g. \"8GiB\" (or 0 for no limit)",
        ));
    }
    if let Some(c) = b.cpus
        && !(c > 0.0 && c.is_finite())
    {
        return Err(bad(
            "cpus",
            &format!(
                "= {c} must be a positive number of CPUs such as 2 or 1.5; leave it out for all of the host's"
            ),
        ));
    }
    let pids = b.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    if pids < 256 {
        return Err(bad(
            "pids_limit",
            &format!(
                "= {pids} is too small for a builder (dockerd, containerd and a build); use at least 256, e.g. {DEFAULT_PIDS_LIMIT}"
            ),
        ));
    }

    if b.allowed_images.is_some() {
        return Err(bad(
            "allowed_images",
            &"is now builder.builder_images (images a job's `image:` may pick as its builder); any other job image runs as the job's own container (README: Job images)",
        ));
    }
    let builder_images = values::non_empty(b.builder_images.unwrap_or_default());
    for i in &builder_images {
        validate_image(i).map_err(|m| bad("builder_images", &format!("entry {m}")))?;
    }
    // Image names or globs (`*` within a path segment, `**` across segments).
    let globs = |k: &str, list: Option<Vec<String>>, example: &str| {
        let list = values::non_empty(list.unwrap_or_default());
        match list
            .iter()
            .find(|i| i.trim().is_empty() || i.contains(char::is_whitespace))
        {
            Some(i) => Err(bad(
                k,
                &format!("entry {i:?} is not an image name or glob such as \"{example}\""),
            )),
            None => Ok(list),
        }
    };
    let images_in_builder = globs(
        "images_in_builder",
        b.images_in_builder,
        "ci/docker-tools:*",
    )?;
    let dind_images = globs("dind_images", b.dind_images, "ci/dind:*")?;

    let buildkit_image = b
        .buildkit_image
        .unwrap_or_else(|| DEFAULT_BUILDKIT_IMAGE.into());
    validate_image(&buildkit_image).map_err(|m| bad("buildkit_image", &m))?;

    let wait_for_services =
        values::duration(b.wait_for_services_timeout.as_deref().unwrap_or("30s"))
            .map_err(|m| Error::Settings(format!("{}: {m}", key("wait_for_services_timeout"))))?;

    if let Some(p) = &b.helper_binary
        && !p.is_file()
    {
        return Err(bad(
            "helper_binary",
            &format!(
                "{} is not a file; point it at gitlab-runner's binary (`command -v gitlab-runner`) or leave it out",
                p.display()
            ),
        ));
    }

    Ok(BuilderSettings {
        image,
        pull_policy: b.pull_policy.unwrap_or(PullPolicy::IfNotPresent),
        isolation: b.isolation.unwrap_or(Isolation::Rootless),
        host_loopback: b.host_loopback.unwrap_or(false),
        publish_ports: b.publish_ports.unwrap_or(PublishPorts::None),
        privileged: b.privileged.unwrap_or(Privileged::Auto),
        extra_hosts,
        platforms,
        boot_timeout,
        subnet_pool,
        lock_file: b
            .lock_file
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE)),
        builder_images,
        images_in_builder,
        dind_images,
        limits: Limits {
            memory,
            cpus: b.cpus,
            pids,
        },
        driver: b.driver.unwrap_or(Driver::Docker),
        buildkit_image,
        helper_binary: b.helper_binary,
        wait_for_services,
    })
}

/// Whether an image reference names a tag or a digest (the tag is after the last `/`,
/// so `host:port/repo` has none).
pub(crate) fn has_tag_or_digest(image: &str) -> bool {
    image.contains('@') || image.rsplit('/').next().unwrap_or(image).contains(':')
}

/// Checks an image reference is plausible (the engine does the full parse).
pub(crate) fn validate_image(image: &str) -> Result<(), Invalid> {
    if image.is_empty() {
        return Err(Invalid::new(
            "is empty; set an image built from runnerx's docker/Dockerfile, such as \"runnerx-builder:latest\"",
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid(format!(
            "{image:?} contains whitespace; write a single image reference"
        )));
    }
    if image.starts_with('-') {
        return Err(Invalid(format!(
            "{image:?} starts with '-'; write an image reference"
        )));
    }
    Ok(())
}

fn validate_extra_host(entry: &str) -> Result<(), Invalid> {
    let (host, ip) = entry.split_once(':').ok_or(Invalid::new(
        "must be \"hostname:ip\", e.g. \"harbor.example.com:10.0.0.5\"",
    ))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Invalid(format!("has an invalid hostname {host:?}")));
    }
    ip.parse::<IpAddr>()
        .map_err(|_| Invalid(format!("has an invalid IP address {ip:?}")))?;
    Ok(())
}

/// An IPv4 CIDR (ipnet) with room for two /24s, written as its network address.
fn parse_pool(text: &str) -> Result<Ipv4Net, Invalid> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        Invalid(format!(
            "{text:?} must be an IPv4 CIDR such as \"10.213.0.0/16\""
        ))
    })?;
    if net.prefix_len() > 23 {
        return Err(Invalid(format!(
            "{text:?} needs a prefix of /23 or shorter (its first two /24s are every builder's inner bridge and networks)"
        )));
    }
    if net.addr() != net.network() {
        return Err(Invalid(format!(
            "{text:?} has host bits set; write the network address"
        )));
    }
    Ok(net)
}
