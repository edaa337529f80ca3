//! `[[nodes]]`: remote BuildKit daemons, one per architecture, that jobs build on
//! natively instead of under QEMU. Every node is reached over TCP with mutual TLS (a
//! node without it would build for anyone who can reach its port), so its CA, the
//! client certificate and key are required and read here, once, before any job.

use std::path::{Path, PathBuf};

use super::builder::Platform;
use super::choices::NodeFallback;
use super::raw::RawNode;
use super::registry::{ClientIdentity, Secret};
use crate::error::{Error, Result};

/// A validated `[[nodes]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its name in buildx (`docker buildx ls`) and in messages.
    pub name: String,
    /// `tcp://host:port`, as written.
    pub endpoint: String,
    /// The endpoint's host.
    pub host: String,
    /// The endpoint's port.
    pub port: u16,
    /// Platforms it builds.
    pub platforms: Vec<Platform>,
    /// CA bundle that signed the node's certificate (PEM).
    pub ca_pem: String,
    /// Where the CA came from, for messages.
    pub ca_file: PathBuf,
    /// The client certificate and key jobs present.
    pub client: ClientIdentity,
    /// The name verified in the node's certificate.
    pub server_name: String,
    /// What a job does when the node does not answer.
    pub fallback: NodeFallback,
    /// Project path globs whose jobs may use it (with `project_ids`; both empty: all).
    pub projects: Vec<String>,
    /// Project ids whose jobs may use it.
    pub project_ids: Vec<u64>,
}

impl Node {
    /// Whether the node listens on the runner host's own loopback (`127.0.0.0/8`,
    /// `::1`, `localhost`): inside a rootless builder's namespace that address is the
    /// namespace itself.
    pub(crate) fn on_loopback(&self) -> bool {
        super::values::is_loopback_host(&self.host)
    }

    /// Whether jobs of `project` build on this node: a node shares its build cache
    /// (cache mounts, layers) between every job that uses it, so operators can keep a
    /// node to the projects that may share one.
    pub(crate) fn serves(&self, project: &super::Project) -> bool {
        (self.projects.is_empty() && self.project_ids.is_empty())
            || project.is_one_of(&self.projects, &self.project_ids)
    }
}

/// `tcp://host:port` → (host, port).
fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let rest = endpoint.strip_prefix("tcp://").ok_or_else(|| {
        "must be tcp://host:port (the address buildkitd listens on with --addr)".to_string()
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p),
        _ => return Err("has no port; write tcp://host:port, e.g. tcp://arm64-1:1234".into()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains('/') || host.contains('@') {
        return Err("must be tcp://host:port with no path or user".into());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("has port {port:?}; give a number from 1 to 65535"))?;
    Ok((host.to_string(), port))
}

/// A buildx node name from a host: letters, digits and `-` only.
fn name_from_host(host: &str) -> String {
    let s: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("node-{}", s.trim_matches('-'))
}

fn read(key: &dyn Fn(&str) -> String, k: &str, p: &Path, marker: &str) -> Result<String> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        Error::Settings(format!(
            "{} {}: {e}; fix the path or the file's permissions",
            key(k),
            p.display()
        ))
    })?;
    if !text.contains(marker) {
        return Err(Error::Settings(format!(
            "{} {} holds no PEM {}; give the file `runnerx node` wrote",
            key(k),
            p.display(),
            if marker.contains("KEY") {
                "private key"
            } else {
                "certificate"
            }
        )));
    }
    Ok(text)
}

/// Validates `[[nodes]]`: endpoints, platforms (each one of `builder.platforms`, and
/// no platform on two nodes), names unique, and the mTLS files readable PEM.
pub(crate) fn validate_nodes(
    raw: Vec<RawNode>,
    builder_platforms: &[Platform],
    file: &str,
) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("nodes[{i}].{k} (in {file})");
        let bad = |k: &str, m: String| Error::Settings(format!("{} {m}", key(k)));
        let endpoint = n.endpoint.ok_or_else(|| {
            bad(
                "endpoint",
                "is missing; give the node's buildkitd address, e.g. \"tcp://arm64-1.example.com:1234\"".into(),
            )
        })?;
        let (host, port) =
            parse_endpoint(&endpoint).map_err(|m| bad("endpoint", format!("{endpoint:?} {m}")))?;
        if n.platforms.is_empty() {
            return Err(bad(
                "platforms",
                "is empty; list what the node builds natively, e.g. [\"linux/arm64\"]".into(),
            ));
        }
        let mut platforms = Vec::new();
        for p in &n.platforms {
            let platform: Platform = p
                .parse()
                .map_err(|m| bad("platforms", format!("entry {p:?} {m}")))?;
            if !builder_platforms.contains(&platform) {
                return Err(bad(
                    "platforms",
                    format!(
                        "entry {p:?} is not in builder.platforms; add it there (a job falls back to QEMU for it when the node is down)"
                    ),
                ));
            }
            if let Some(other) = nodes.iter().find(|o| o.platforms.contains(&platform)) {
                return Err(bad(
                    "platforms",
                    format!(
                        "entry {p:?} is also on node {:?}; give each platform one node",
                        other.name
                    ),
                ));
            }
            platforms.push(platform);
        }
        let missing = |k: &str| {
            bad(
                k,
                "is missing; nodes are reached with mutual TLS only (`runnerx node` writes ca.crt, client.crt and client.key)".into(),
            )
        };
        let ca_file = n.ca_file.ok_or_else(|| missing("ca_file"))?;
        let cert_file = n
            .client_cert_file
            .ok_or_else(|| missing("client_cert_file"))?;
        let key_file = n
            .client_key_file
            .ok_or_else(|| missing("client_key_file"))?;
        let ca_pem = read(&key, "ca_file", &ca_file, "-----BEGIN CERTIFICATE-----")?;
        let cert_pem = read(
            &key,
            "client_cert_file",
            &cert_file,
            "-----BEGIN CERTIFICATE-----",
        )?;
        let key_pem = read(&key, "client_key_file", &key_file, "PRIVATE KEY-----")?;
        let name = n.name.unwrap_or_else(|| name_from_host(&host));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "name",
                format!("{name:?} may hold only letters, digits, - and _"),
            ));
        }
        if nodes.iter().any(|o| o.name == name) {
            return Err(bad(
                "name",
                format!("{name:?} is used by two nodes; give each a distinct name"),
            ));
        }
        nodes.push(Node {
            name,
            server_name: n.server_name.unwrap_or_else(|| host.clone()),
            endpoint,
            host,
            port,
            platforms,
            ca_pem,
            ca_file,
            client: ClientIdentity {
                cert_pem,
                key_pem: Secret::new(key_pem),
            },
            fallback: n.fallback.unwrap_or(NodeFallback::Qemu),
            projects: n.projects,
            project_ids: n.project_ids,
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Env;
    use crate::settings::Settings;

    /// Settings with one node whose files exist; `extra` lines go into its entry.
    fn with_node(extra: &str) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::trust::ca::make_ca("nodes", 30).unwrap();
        let client = crate::trust::ca::make_client(&ca, "jobs", 30).unwrap();
        let (ca_file, cert, key) = (
            dir.path().join("ca.crt"),
            dir.path().join("client.crt"),
            dir.path().join("client.key"),
        );
        std::fs::write(&ca_file, &ca.cert).unwrap();
        std::fs::write(&cert, &client.cert).unwrap();
        std::fs::write(&key, &client.key).unwrap();
        let text = format!(
            "[[nodes]]\nendpoint = \"tcp://arm1.example.com:1234\"\nplatforms = [\"linux/arm64\"]\n\
             ca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n{extra}",
            ca_file.display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        );
        Settings::parse(
            Some(&text),
            Some("/etc/runnerx/runnerx.toml".into()),
            &Env::default(),
        )
    }

    #[test]
    fn a_node_is_read_with_its_mtls_files_and_defaults() {
        let s = with_node("").unwrap();
        let n = &s.nodes[0];
        assert_eq!(n.name, "node-arm1-example-com");
        assert_eq!(n.server_name, "arm1.example.com");
        assert_eq!(n.fallback, NodeFallback::Qemu);
        assert!(n.client.key_pem.expose().contains("PRIVATE KEY"));
        assert!(
            !format!("{n:?}").contains("PRIVATE KEY"),
            "Debug must hide the key"
        );
    }

    #[test]
    fn loopback_endpoints_are_told_from_others_as_written() {
        let n = with_node("").unwrap().nodes.remove(0);
        let at = |host: &str| Node {
            host: host.into(),
            ..n.clone()
        };
        for host in ["127.0.0.1", "127.0.1.1", "::1", "localhost", "LOCALHOST"] {
            assert!(at(host).on_loopback(), "{host}");
        }
        for host in [
            "arm1.example.com",
            "10.1.2.3",
            "fd00::1",
            "localhost.example.com",
        ] {
            assert!(!at(host).on_loopback(), "{host}");
        }
        // The parsed host of a bracketed IPv6 endpoint has no brackets.
        assert_eq!(parse_endpoint("tcp://[::1]:1234").unwrap().0, "::1");
    }

    #[test]
    fn node_mistakes_are_one_line_naming_the_key_and_the_fix() {
        let cases: [(&str, &str); 4] = [
            ("fallback = \"retry\"", "use qemu or fail"),
            ("platforms = [\"linux/s390x\"]", "not in builder.platforms"),
            ("name = \"arm 1\"", "letters, digits"),
            ("server_name = 3", "invalid type"),
        ];
        for (extra, want) in cases {
            // A key given twice is a TOML error: this one gets an entry of its own.
            let e = if extra.starts_with("platforms") {
                let text = format!(
                    "[[nodes]]\nendpoint = \"tcp://a:1\"\n{extra}\nca_file = \"/x\"\nclient_cert_file = \"/x\"\nclient_key_file = \"/x\"\n"
                );
                Settings::parse(
                    Some(&text),
                    Some("/etc/runnerx/runnerx.toml".into()),
                    &Env::default(),
                )
                .unwrap_err()
                .to_string()
            } else {
                with_node(extra).unwrap_err().to_string()
            };
            assert!(e.contains(want), "{extra}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let text = "[[nodes]]\nendpoint = \"tcp://a:1\"\nplatforms = [\"linux/arm64\"]\n";
        let e = Settings::parse(
            Some(text),
            Some("/etc/runnerx/runnerx.toml".into()),
            &Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("nodes[0].ca_file") && e.contains("mutual TLS only"),
            "{e}"
        );
    }

    #[test]
    fn endpoints_are_tcp_host_port() {
        assert_eq!(
            parse_endpoint("tcp://arm64-1.example.com:1234").unwrap(),
            ("arm64-1.example.com".into(), 1234)
        );
        assert_eq!(
            parse_endpoint("tcp://[::1]:1234").unwrap(),
            ("::1".into(), 1234)
        );
        assert!(
            parse_endpoint("unix:///run/buildkit.sock")
                .unwrap_err()
                .contains("tcp://host:port")
        );
        assert!(parse_endpoint("tcp://arm").unwrap_err().contains("no port"));
        assert!(
            parse_endpoint("tcp://arm:0")
                .unwrap_err()
                .contains("1 to 65535")
        );
        assert_eq!(
            name_from_host("arm64-1.example.com"),
            "node-arm64-1-example-com"
        );
    }
}
