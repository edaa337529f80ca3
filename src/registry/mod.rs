//! The one module that talks to container registries (reqwest + rustls), by concern:
//! [`tls`] probes and classifies TLS the way users meet its failures, [`auth`] reads
//! `WWW-Authenticate` challenges and token claims, [`client`] is the HTTP client per
//! registry (its CA, its client identity, Basic and Bearer logins, never a silent
//! downgrade to HTTP), [`session`] is an authenticated conversation (tokens cached
//! per scope) offering the distribution-API calls runnerx needs, and [`oci`] holds
//! the manifest and index types.
//!
//! Credentials only travel in `Authorization` headers and are never logged. Every
//! failure is a [`RegistryError`], which says what failed and names the fix.

use std::net::SocketAddr;

use crate::settings::{Credentials, Registry, Secret};

pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod oci;
pub(crate) mod session;
pub(crate) mod tls;

pub(crate) use error::RegistryError;

/// `host[:port]` split, with the scheme's default port.
pub(crate) fn host_port(reg: &Registry) -> (String, u16) {
    let default = if reg.http { 80 } else { 443 };
    match reg.host.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default)),
        None => (reg.host.clone(), default),
    }
}

/// The login `docker login` stored for `host` in `$DOCKER_CONFIG/config.json` (else
/// `~/.docker/config.json`): inside a builder that is the one runnerx wrote, or the
/// job's own `docker login`.
fn docker_login(host: &str) -> Option<Credentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let key = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let wanted = if host == "docker.io" {
            key == "index.docker.io/v1" || key == "docker.io"
        } else {
            key == host
        };
        wanted.then_some(v)
    })?;
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let (user, pass) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(Credentials {
        username: user,
        password: Secret::new(pass),
    })
}

/// The settings entry for `host`, or one trusting only system roots with the login
/// `docker login` stored for it (if any).
pub(crate) fn registry_for(settings: &crate::settings::Settings, host: &str) -> Registry {
    settings
        .registries
        .iter()
        .find(|r| r.host == host)
        .cloned()
        .unwrap_or_else(|| Registry {
            host: host.to_string(),
            ca_pem: None,
            ca_file: None,
            client: None,
            credentials: docker_login(host),
            insecure: false,
            http: false,
            mirror_for: vec![],
            check_repository: None,
            cache_repository: None,
            signing_key: None,
            credential_rules: vec![],
        })
}

/// Resolves `host` as a builder would: `builder.extra_hosts` first, then DNS.
pub(crate) async fn resolve(
    extra_hosts: &[String],
    host: &str,
    port: u16,
) -> Result<(SocketAddr, &'static str), RegistryError> {
    for entry in extra_hosts {
        if let Some((h, ip)) = entry.split_once(':')
            && h == host
            && let Ok(ip) = ip.parse::<std::net::IpAddr>()
        {
            return Ok((SocketAddr::new(ip, port), "builder.extra_hosts"));
        }
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok((SocketAddr::new(ip, port), "literal address"));
    }
    let failed = |detail: String| RegistryError::Resolve {
        host: host.to_string(),
        detail,
    };
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs
            .next()
            .map(|a| (a, "DNS"))
            .ok_or_else(|| failed("no addresses".into())),
        Err(e) => Err(failed(e.to_string())),
    }
}
