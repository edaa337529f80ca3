//! `[network]`: the egress policy for builders — what a job's traffic may reach
//! outside its builder. Validated here (targets parsed, nothing resolved); the host
//! side (`host::network`) renders and installs it.

use std::net::IpAddr;

use ipnet::IpNet;

pub(crate) use super::choices::Egress;
use super::raw::RawNetwork;
use crate::error::{Error, Result};

/// One `allow` or `deny` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    /// An address or a network: every protocol and port.
    Net(IpNet),
    /// `host:port` (a name is resolved when the policy is installed): TCP to that port.
    HostPort(String, u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Net(n) => write!(f, "{n}"),
            Target::HostPort(h, p) if h.contains(':') => write!(f, "[{h}]:{p}"),
            Target::HostPort(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// `[network]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetworkSettings {
    /// Whether prepare insists on the installed policy.
    pub egress: Egress,
    /// Reachable although the defaults would deny them.
    pub allow: Vec<Target>,
    /// Denied on top of the defaults.
    pub deny: Vec<Target>,
    /// Also deny RFC 1918 and unique-local (fc00::/7) ranges.
    pub deny_private: bool,
}

/// `10.0.0.0/8`, `192.0.2.7`, `harbor.example.com:443`, `[fd00::1]:5000`.
fn parse_target(text: &str) -> std::result::Result<Target, crate::error::Invalid> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(Target::Net(net.trunc()));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(Target::Net(IpNet::from(ip)));
    }
    let (host, port) = match t.strip_prefix('[') {
        Some(rest) => rest
            .split_once("]:")
            .ok_or_else(|| format!("{text:?} is not [IPv6]:PORT"))?,
        None => t
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is neither a CIDR, an address nor HOST:PORT"))?,
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{text:?} has no valid port (1-65535)"))?;
    let name_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !name_ok {
        return Err(format!("{text:?} has no valid host name or address").into());
    }
    Ok(Target::HostPort(host.to_ascii_lowercase(), port))
}

/// Validates `[network]` from `file` (for messages).
pub(crate) fn validate_network(raw: RawNetwork, file: &str) -> Result<NetworkSettings> {
    let list = |key: &str, items: Option<Vec<String>>| -> Result<Vec<Target>> {
        let mut out: Vec<Target> = items
            .unwrap_or_default()
            .iter()
            .map(|s| {
                parse_target(s).map_err(|m| {
                    Error::Settings(format!(
                        "network.{key} (in {file}): {m}; write a CIDR (10.0.0.0/8), an address or HOST:PORT"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    };
    Ok(NetworkSettings {
        egress: raw.egress.unwrap_or_default(),
        allow: list("allow", raw.allow)?,
        deny: list("deny", raw.deny)?,
        deny_private: raw.deny_private.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_networks_or_host_ports() {
        assert_eq!(
            parse_target("10.1.2.3/8").unwrap(),
            Target::Net("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse_target("192.0.2.7").unwrap(),
            Target::Net("192.0.2.7/32".parse().unwrap())
        );
        assert_eq!(
            parse_target("fd00:ec2::254").unwrap(),
            Target::Net("fd00:ec2::254/128".parse().unwrap())
        );
        assert_eq!(
            parse_target("Harbor.example.com:443").unwrap(),
            Target::HostPort("harbor.example.com".into(), 443)
        );
        assert_eq!(
            parse_target("[fd00::1]:5000").unwrap(),
            Target::HostPort("fd00::1".into(), 5000)
        );
        assert_eq!(
            parse_target("[fd00::1]:5000").unwrap().to_string(),
            "[fd00::1]:5000"
        );
        for bad in [
            "harbor",
            "harbor:0",
            "harbor:x",
            "ha rbor:80",
            ":80",
            "[::1]80",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_entry_names_the_key_and_the_forms() {
        let raw = RawNetwork {
            deny: Some(vec!["metadata".into()]),
            ..RawNetwork::default()
        };
        let e = validate_network(raw, "/etc/runnerx/config.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("network.deny (in /etc/runnerx/config.toml)"),
            "{e}"
        );
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn the_default_is_the_policy_with_nothing_listed() {
        let n = validate_network(RawNetwork::default(), "defaults").unwrap();
        assert_eq!(n, NetworkSettings::default());
        assert_eq!(n.egress, Egress::Policy);
    }
}
