//! The egress policy for builders: what a job's traffic may reach outside its
//! builder, enforced by a runnerx-owned nftables table in the runner host's own
//! network namespace (`runnerx host network` installs it once; `install.rs`).
//!
//! How builders are recognised: a builder's only way out is its network helper
//! (slirp4netns, and RootlessKit's port driver), which runs in the host's network
//! namespace with the group [`NET_GID`] — the rootless user's primary group, or the
//! group privileged builders start slirp4netns with. A socket keeps the group of the
//! process that made it, so `meta skgid` tells builders' traffic from everyone
//! else's, and nothing inside the builder (the job, the inner dockerd, a
//! `--privileged --net=host` inner container) runs in that namespace or can drop the
//! group: their traffic reaches the host only through the helper.
//!
//! Invariants: the policy is one nft transaction (replaced atomically, never half
//! applied); rendering is pure and unit-tested; what the settings name is allowed
//! before anything is denied; the host's own addresses are matched by the kernel's
//! routing table (`fib daddr type local`), so addresses added later are covered.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::settings::values::is_loopback_host;
use crate::settings::{Settings, Target};

pub(crate) mod install;

/// The group builders' network helpers run with (group `runnerx-net` in the builder
/// image): in the range systemd leaves unused (65520–65533), so no host account has it.
pub(crate) const NET_GID: u32 = 65530;

/// The nftables table (family inet: IPv4 and IPv6).
pub(crate) const TABLE: &str = "runnerx";

/// What the policy is made from: the settings' part of it, before any name is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inputs {
    /// Endpoints the settings name (registries, nodes, proxy): `(why, host, port)`.
    pub endpoints: Vec<(String, String, u16)>,
    /// `builder.host_loopback`: the host's loopback is open to jobs.
    pub host_loopback: bool,
    /// `network.allow`.
    pub allow: Vec<Target>,
    /// `network.deny`.
    pub deny: Vec<Target>,
    /// `network.deny_private`.
    pub deny_private: bool,
}

/// `http://user:pw@proxy.corp:3128/` → `("proxy.corp", 3128)`.
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    host_port(authority, default)
}

/// `harbor:8443` / `harbor` / `[fd00::1]:5000` with a default port.
fn host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        let port = tail
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_string(), default)),
        None => None,
    }
}

/// The addresses `builder.extra_hosts` maps `host` to (what builders resolve it to).
pub(crate) fn mapped(host: &str, extra_hosts: &[String]) -> Vec<IpAddr> {
    extra_hosts
        .iter()
        .filter_map(|e| e.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case(host))
        .filter_map(|(_, ip)| ip.trim_matches(['[', ']']).parse().ok())
        .collect()
}

/// Whether `host` is the runner host's loopback: as written, or a name
/// `builder.extra_hosts` maps to loopback addresses only.
fn on_loopback(host: &str, extra_hosts: &[String]) -> bool {
    let ips = mapped(host, extra_hosts);
    is_loopback_host(host) || (!ips.is_empty() && ips.iter().all(IpAddr::is_loopback))
}

/// The policy's inputs from the settings. Endpoints on the host's loopback are left
/// out: loopback is one decision, `builder.host_loopback` (with it, the policy opens
/// 127.0.0.0/8; without it, RootlessKit's network helper cannot reach the host's
/// loopback at all), so a loopback registry or node adds no rule of its own.
pub(crate) fn inputs(settings: &Settings) -> Inputs {
    let extra_hosts = &settings.builder.extra_hosts;
    let mut endpoints = Vec::new();
    for (i, r) in settings.registries.iter().enumerate() {
        let default = if r.http { 80 } else { 443 };
        if let Some((h, p)) = host_port(&r.host, default) {
            endpoints.push((format!("registries[{i}]"), h, p));
        }
    }
    for n in &settings.nodes {
        endpoints.push((format!("nodes {}", n.name), n.host.clone(), n.port));
    }
    let proxy = &settings.proxy;
    for (key, url) in [
        ("proxy.http_proxy", &proxy.http_proxy),
        ("proxy.https_proxy", &proxy.https_proxy),
    ] {
        if let Some((h, p)) = url.as_deref().and_then(url_host_port) {
            endpoints.push((key.to_string(), h, p));
        }
    }
    endpoints.retain(|(_, h, _)| !on_loopback(h, extra_hosts));
    Inputs {
        endpoints,
        host_loopback: settings.builder.host_loopback,
        allow: settings.network.allow.clone(),
        deny: settings.network.deny.clone(),
        deny_private: settings.network.deny_private,
    }
}

/// A digest of the inputs: prepare compares it with the installed policy's.
pub(crate) fn digest(inputs: &Inputs) -> String {
    let mut text = format!(
        "v1 gid={NET_GID} loopback={} private={}\n",
        inputs.host_loopback, inputs.deny_private
    );
    for (_, h, p) in &inputs.endpoints {
        let _ = writeln!(text, "endpoint {h} {p}");
    }
    for t in &inputs.allow {
        let _ = writeln!(text, "allow {t}");
    }
    for t in &inputs.deny {
        let _ = writeln!(text, "deny {t}");
    }
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Names resolved when the policy is installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// `(why, address, port)` reachable over TCP.
    pub allow_tcp: Vec<(String, IpAddr, u16)>,
    /// `network.deny` entries as `(address, port)`.
    pub deny_tcp: Vec<(IpAddr, u16)>,
    /// The host's DNS resolvers (port 53 stays open to them).
    pub nameservers: Vec<IpAddr>,
}

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

fn addr_family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

const REJECT: &str = "reject with icmpx type admin-prohibited";

/// The ruleset `nft -f` loads: one transaction that replaces the table.
pub(crate) fn render(inputs: &Inputs, resolved: &Resolved, digest: &str) -> String {
    let mut r = String::new();
    let mut line = |s: &str| {
        r.push_str("    ");
        r.push_str(s);
        r.push('\n');
    };
    line("# Only builders' network helpers run with this group; everyone else passes.");
    line(&format!("meta skgid != {NET_GID} return"));
    line("ct state established,related accept");
    line("# DNS through the host's resolvers");
    for ns in &resolved.nameservers {
        line(&format!(
            "{} daddr {ns} meta l4proto {{ tcp, udp }} th dport 53 accept",
            addr_family(ns)
        ));
    }
    line("# what the settings name (registries, nodes, proxy, network.allow)");
    for (why, ip, port) in &resolved.allow_tcp {
        line(&format!(
            "{} daddr {ip} tcp dport {port} accept comment \"{why}\"",
            addr_family(ip)
        ));
    }
    if inputs.host_loopback {
        line("ip daddr 127.0.0.0/8 accept comment \"builder.host_loopback\"");
        line("ip6 daddr ::1 accept comment \"builder.host_loopback\"");
    }
    for t in &inputs.allow {
        if let Target::Net(n) = t {
            line(&format!(
                "{} daddr {n} accept comment \"network.allow\"",
                family(n)
            ));
        }
    }
    line("# network.deny");
    for (ip, port) in &resolved.deny_tcp {
        line(&format!(
            "{} daddr {ip} tcp dport {port} {REJECT}",
            addr_family(ip)
        ));
    }
    for t in &inputs.deny {
        if let Target::Net(n) = t {
            line(&format!("{} daddr {n} {REJECT}", family(n)));
        }
    }
    line(
        "# the runner host's own addresses (also ones added later), hence every builder's published ports",
    );
    line(&format!("fib daddr type local {REJECT}"));
    line("# link-local: cloud instance metadata (169.254.169.254, fd00:ec2::254) and the like");
    line(&format!("ip daddr 169.254.0.0/16 {REJECT}"));
    line(&format!("ip6 daddr fe80::/10 {REJECT}"));
    line(&format!("ip6 daddr fd00:ec2::254 {REJECT}"));
    if inputs.deny_private {
        line("# network.deny_private");
        line(&format!(
            "ip daddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 }} {REJECT}"
        ));
        line(&format!("ip6 daddr fc00::/7 {REJECT}"));
    }
    format!(
        "# runnerx egress policy for builders, written by `runnerx host network`.\n\
         # settings digest: {digest}\n\
         table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n  \
         chain output {{\n    \
         type filter hook output priority filter; policy accept;\n{r}  }}\n}}\n"
    )
}

/// Nameserver addresses in resolv.conf text.
pub(crate) fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
