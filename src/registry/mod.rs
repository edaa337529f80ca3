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

use crate::settings::Registry;

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

/// The settings entry for `host`, or an anonymous one trusting only system roots.
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
            credentials: None,
            insecure: false,
            http: false,
            mirror_for: vec![],
            check_repository: None,
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
