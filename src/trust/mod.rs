//! Registry trust, credentials and proxy for a builder, as files (pure).
//!
//! A private CA must be trusted in several places (docs/background.md#trust-stores):
//! dockerd (`certs.d/<host>/ca.crt`), buildkitd (`buildkitd.toml`'s `ca`), and the
//! buildx client's token requests (the system store). This module renders all of them,
//! plus the inner dockerd's registry options, the docker `config.json` with
//! credentials, and the proxy environment for job scripts.
//!
//! Invariant: secrets (passwords, client keys) only ever go into files with mode 0600
//! uploaded into the builder — never into its env, cmd or labels (`docker inspect`).

use std::collections::BTreeMap;

pub(crate) mod ca;

use base64::Engine as _;
use serde::Serialize;

use crate::settings::{Proxy, Registry};

/// A file for the builder: path relative to `/`, content, mode.
pub(crate) type File = (String, Vec<u8>, u32);

/// Where the rendered buildkitd.toml lives in the builder.
pub(crate) const BUILDKITD_TOML: &str = "/etc/buildkit/buildkitd.toml";
/// Shell-syntax proxy variables the exec wrapper exports for every stage script.
pub(crate) const JOB_ENV: &str = "/etc/runnerx/job.env";

/// `harbor.example.com:8443` → `harbor.example.com_8443` (buildx's own rule for cert
/// dirs: anything outside `[a-zA-Z0-9.-]` becomes `_`).
pub(crate) fn sanitize(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Serialize, Default)]
struct BuildkitRegistry {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mirrors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insecure: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ca: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keypair: Vec<Keypair>,
}

#[derive(Serialize)]
struct Keypair {
    key: String,
    cert: String,
}

#[derive(Serialize)]
struct BuildkitToml {
    registry: BTreeMap<String, BuildkitRegistry>,
}

/// `buildkitd.toml` for docker-container/remote builders created inside the builder.
pub(crate) fn buildkitd_toml(registries: &[Registry]) -> String {
    let mut map: BTreeMap<String, BuildkitRegistry> = BTreeMap::new();
    for r in registries {
        let dir = format!("/etc/buildkit/certs/{}", sanitize(&r.host));
        let e = map.entry(r.host.clone()).or_default();
        if r.http {
            e.http = Some(true);
        }
        if r.insecure {
            e.insecure = Some(true);
        }
        if r.ca_pem.is_some() {
            e.ca.push(format!("{dir}/ca.crt"));
        }
        if r.client.is_some() {
            e.keypair.push(Keypair {
                key: format!("{dir}/client.key"),
                cert: format!("{dir}/client.cert"),
            });
        }
        for m in &r.mirror_for {
            map.entry(m.clone())
                .or_default()
                .mirrors
                .push(r.host.clone());
        }
    }
    let head =
        "# Rendered by runnerx from /etc/runnerx/runnerx.toml [[registries]]; do not edit.\n";
    if map.is_empty() {
        return head.to_string();
    }
    head.to_string()
        + &toml::to_string(&BuildkitToml { registry: map }).expect("buildkitd.toml serializes")
}

/// Registry options for the inner dockerd's daemon.json.
pub(crate) fn daemon_options(
    registries: &[Registry],
    proxy: &Proxy,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let insecure: Vec<&str> = registries
        .iter()
        .filter(|r| r.http || r.insecure)
        .map(|r| r.host.as_str())
        .collect();
    if !insecure.is_empty() {
        m.insert("insecure-registries".into(), serde_json::json!(insecure));
    }
    // dockerd's registry-mirrors only apply to Docker Hub.
    let mirrors: Vec<String> = registries
        .iter()
        .filter(|r| r.mirror_for.iter().any(|h| h == "docker.io"))
        .map(|r| format!("{}://{}", r.scheme(), r.host))
        .collect();
    if !mirrors.is_empty() {
        m.insert("registry-mirrors".into(), serde_json::json!(mirrors));
    }
    if proxy.is_set() {
        let mut p = serde_json::Map::new();
        for (k, v) in [
            ("http-proxy", &proxy.http_proxy),
            ("https-proxy", &proxy.https_proxy),
            ("no-proxy", &proxy.no_proxy),
        ] {
            if let Some(v) = v {
                p.insert(k.into(), v.clone().into());
            }
        }
        m.insert("proxies".into(), p.into());
    }
    m
}

/// Docker CLI `config.json`: `auths` for registries with credentials, and the proxy
/// the CLI passes to builds and containers. `None` when there is nothing to say.
pub(crate) fn docker_config_json(registries: &[Registry], proxy: &Proxy) -> Option<String> {
    let mut auths = serde_json::Map::new();
    for r in registries {
        if let Some(c) = &r.credentials {
            let key = if r.host == "docker.io" {
                "https://index.docker.io/v1/".to_string()
            } else {
                r.host.clone()
            };
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.username,
                c.password.expose()
            ));
            auths.insert(key, serde_json::json!({ "auth": auth }));
        }
    }
    let mut root = serde_json::Map::new();
    if !auths.is_empty() {
        root.insert("auths".into(), auths.into());
    }
    if proxy.is_set() {
        let mut d = serde_json::Map::new();
        for (k, v) in [
            ("httpProxy", &proxy.http_proxy),
            ("httpsProxy", &proxy.https_proxy),
            ("noProxy", &proxy.no_proxy),
        ] {
            if let Some(v) = v {
                d.insert(k.into(), v.clone().into());
            }
        }
        root.insert("proxies".into(), serde_json::json!({ "default": d }));
    }
    (!root.is_empty()).then(|| {
        serde_json::to_string_pretty(&serde_json::Value::Object(root)).expect("json") + "\n"
    })
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Proxy variables (both cases, as tools disagree) for job scripts.
pub(crate) fn job_env(proxy: &Proxy) -> String {
    let mut out = String::new();
    for (n, v) in proxy.variables() {
        out.push_str(&format!("{n}={}\n", sh_quote(&v)));
    }
    out
}

/// Every trust/credential/proxy file for the builder. `user_home`: the rootless job
/// user's home (its docker config, and the certs.d its rootless dockerd reads, which is
/// `$XDG_CONFIG_HOME/docker/certs.d` rather than /etc/docker/certs.d); `None` for root.
pub(crate) fn files(registries: &[Registry], proxy: &Proxy, user_home: Option<&str>) -> Vec<File> {
    let mut files: Vec<File> = vec![];
    let home = user_home.unwrap_or("/root").trim_start_matches('/');
    for r in registries {
        let certs_d = format!("etc/docker/certs.d/{}", r.host);
        let user_certs_d = format!("{home}/.config/docker/certs.d/{}", r.host);
        let dirs: Vec<&str> = if user_home.is_some() {
            vec![&certs_d, &user_certs_d]
        } else {
            vec![&certs_d]
        };
        let bk = format!("etc/buildkit/certs/{}", sanitize(&r.host));
        if let Some(ca) = &r.ca_pem {
            for dir in dirs.iter().copied().chain([bk.as_str()]) {
                files.push((format!("{dir}/ca.crt"), ca.clone().into_bytes(), 0o644));
            }
            files.push((
                format!(
                    "usr/local/share/ca-certificates/runnerx-{}.crt",
                    sanitize(&r.host)
                ),
                ca.clone().into_bytes(),
                0o644,
            ));
        }
        if let Some(c) = &r.client {
            for dir in dirs.iter().copied().chain([bk.as_str()]) {
                files.push((
                    format!("{dir}/client.cert"),
                    c.cert_pem.clone().into_bytes(),
                    0o644,
                ));
                files.push((
                    format!("{dir}/client.key"),
                    c.key_pem.expose().as_bytes().to_vec(),
                    0o600,
                ));
            }
        }
    }
    files.push((
        BUILDKITD_TOML.trim_start_matches('/').into(),
        buildkitd_toml(registries).into_bytes(),
        0o644,
    ));
    if let Some(cfg) = docker_config_json(registries, proxy) {
        files.push((
            format!("{home}/.docker/config.json"),
            cfg.into_bytes(),
            0o600,
        ));
    }
    files.push((
        JOB_ENV.trim_start_matches('/').into(),
        job_env(proxy).into_bytes(),
        0o644,
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ClientIdentity, Credentials, Secret};

    fn reg(host: &str) -> Registry {
        Registry {
            host: host.into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n".into()),
            ca_file: None,
            client: None,
            credentials: Some(Credentials {
                username: "robot$ci".into(),
                password: Secret::new("pw"),
            }),
            insecure: false,
            http: false,
            mirror_for: vec![],
            check_repository: None,
            cache_repository: None,
            signing_key: None,
            credential_rules: vec![],
        }
    }

    #[test]
    fn buildkitd_toml_snapshot() {
        let mut a = reg("harbor.example.com");
        a.mirror_for = vec!["docker.io".into()];
        a.client = Some(ClientIdentity {
            cert_pem: "c".into(),
            key_pem: Secret::new("k"),
        });
        let mut b = reg("registry.test:5443");
        b.ca_pem = None;
        b.insecure = true;
        let mut c = reg("plain.test:5000");
        c.ca_pem = None;
        c.http = true;
        let got = buildkitd_toml(&[a, b, c]);
        let want = r#"# Rendered by runnerx from /etc/runnerx/runnerx.toml [[registries]]; do not edit.
[registry."docker.io"]
mirrors = ["harbor.example.com"]

[registry."harbor.example.com"]
ca = ["/etc/buildkit/certs/harbor.example.com/ca.crt"]

[[registry."harbor.example.com".keypair]]
key = "/etc/buildkit/certs/harbor.example.com/client.key"
cert = "/etc/buildkit/certs/harbor.example.com/client.cert"

[registry."plain.test:5000"]
http = true

[registry."registry.test:5443"]
insecure = true
"#;
        assert_eq!(got, want);
        // And BuildKit's parser shape: it is valid TOML with these tables.
        let v: toml::Value = toml::from_str(&got).unwrap();
        assert_eq!(
            v["registry"]["registry.test:5443"]["insecure"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn daemon_options_cover_insecure_mirrors_and_proxy() {
        let mut a = reg("mirror.test");
        a.mirror_for = vec!["docker.io".into()];
        let mut b = reg("plain.test:5000");
        b.http = true;
        let proxy = Proxy {
            https_proxy: Some("http://p:3128".into()),
            ..Default::default()
        };
        let m = serde_json::Value::Object(daemon_options(&[a, b], &proxy));
        assert_eq!(
            m["insecure-registries"],
            serde_json::json!(["plain.test:5000"])
        );
        assert_eq!(
            m["registry-mirrors"],
            serde_json::json!(["https://mirror.test"])
        );
        assert_eq!(m["proxies"]["https-proxy"], "http://p:3128");
    }

    #[test]
    fn credentials_go_to_a_private_config_json_only() {
        let files = files(&[reg("registry.test:5443")], &Proxy::default(), None);
        let (path, content, mode) = files
            .iter()
            .find(|f| f.0 == "root/.docker/config.json")
            .unwrap();
        assert_eq!(*mode, 0o600, "{path}");
        let v: serde_json::Value = serde_json::from_slice(content).unwrap();
        let auth = v["auths"]["registry.test:5443"]["auth"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap();
        assert_eq!(decoded, b"robot$ci:pw");
        // The password is in no other file.
        for (p, c, _) in &files {
            if p != path {
                assert!(
                    !String::from_utf8_lossy(c).contains("pw\n")
                        && !String::from_utf8_lossy(c).contains(":pw"),
                    "{p}"
                );
            }
        }
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert!(paths.contains(&"etc/docker/certs.d/registry.test:5443/ca.crt"));
        assert!(paths.contains(&"usr/local/share/ca-certificates/runnerx-registry.test_5443.crt"));
        assert!(paths.contains(&"etc/buildkit/certs/registry.test_5443/ca.crt"));

        // Rootless: the user's config and its dockerd's certs.d.
        let files = super::files(
            &[reg("registry.test:5443")],
            &Proxy::default(),
            Some("/home/rootless"),
        );
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert!(paths.contains(&"home/rootless/.docker/config.json"));
        assert!(paths.contains(&"home/rootless/.config/docker/certs.d/registry.test:5443/ca.crt"));
        assert!(!paths.contains(&"root/.docker/config.json"));
    }

    #[test]
    fn job_env_quotes_values() {
        let p = Proxy {
            http_proxy: Some("http://u:p'w@proxy:3128".into()),
            no_proxy: Some("localhost,.test".into()),
            ..Default::default()
        };
        let env = job_env(&p);
        assert!(
            env.contains("HTTP_PROXY='http://u:p'\\''w@proxy:3128'\n"),
            "{env}"
        );
        assert!(env.contains("no_proxy='localhost,.test'\n"), "{env}");
        assert_eq!(job_env(&Proxy::default()), "");
    }
}
