//! What `runnerx node` writes and runs (pure): a BuildKit node's `buildkitd.toml` —
//! gRPC on TCP with mutual TLS, its worker pinned to the platforms it builds, and the
//! same `[registry]` trust the runner's builders get (the node pushes directly) — the
//! file tree that goes with it, its container, and the lines an operator pastes.
//!
//! Layout of `--out DIR`: `node/` is the node's `/etc/buildkit` (mounted read-only:
//! `buildkitd.toml`, `tls/{ca,server}.crt`, `tls/server.key`, `certs/<registry>/…`);
//! `runner/` holds what the runner host's `[[nodes]]` entry points at (`ca.crt`,
//! `client.crt`, `client.key`) and never reaches the node.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, RestartPolicy, RestartPolicyNameEnum,
};

use crate::builder::{Rights, grant_privileges};
use crate::settings::{Platform, Registry};
use crate::trust;

/// Where the node's files sit inside its container.
pub(crate) const NODE_ETC: &str = "/etc/buildkit";
/// Label on node containers and volumes (value: the node's name).
pub(crate) const LABEL_NODE: &str = "runnerx.node";

/// One node's parameters.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Name (buildx node, container `runnerx-node-<name>`).
    pub name: String,
    /// `ip:port` buildkitd listens on.
    pub listen: String,
    /// Port runners connect to.
    pub port: u16,
    /// The first of the names runners reach it by (its endpoint's host).
    pub address: String,
    /// Platforms it builds.
    pub platforms: Vec<Platform>,
    /// BuildKit image.
    pub image: String,
    /// `builder.extra_hosts`: the node resolves registries as builders do.
    pub extra_hosts: Vec<String>,
}

impl NodeSpec {
    /// The node's container and volume name.
    pub(crate) fn container(&self) -> String {
        format!("runnerx-node-{}", self.name)
    }

    /// `tcp://address:port`.
    pub(crate) fn endpoint(&self) -> String {
        format!("tcp://{}:{}", self.address, self.port)
    }
}

/// `"linux/arm64", "linux/arm/v7"`: platforms as TOML strings.
fn quoted(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(|p| format!("{:?}", p.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The node's `buildkitd.toml`.
pub(crate) fn node_toml(spec: &NodeSpec, registries: &[Registry]) -> String {
    let platforms = quoted(&spec.platforms);
    let registry_part = trust::buildkitd_toml(registries);
    // The registry part begins with its own header comment; keep only its tables.
    let registry_tables: String = registry_part
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "# BuildKit node {name}, written by `runnerx node`; rerun it to change this file.\n\
         # gRPC over TCP with mutual TLS only: clients need a certificate from tls/ca.crt.\n\
         # The unix socket stays inside the container (docker exec … buildctl du).\n\
         [grpc]\n\
         address = [\"tcp://{listen}\", \"unix:///run/buildkit/buildkitd.sock\"]\n\
         \n\
         [grpc.tls]\n\
         cert = \"{etc}/tls/server.crt\"\n\
         key = \"{etc}/tls/server.key\"\n\
         ca = \"{etc}/tls/ca.crt\"\n\
         \n\
         # Only what this node builds natively: buildx pins the node to these too.\n\
         [worker.oci]\n\
         platforms = [{platforms}]\n\
         \n\
         [worker.containerd]\n\
         enabled = false\n\
         \n\
         # Registry trust, as the runner's builders have it (the node pushes directly).\n\
         {registry_tables}",
        name = spec.name,
        listen = spec.listen,
        etc = NODE_ETC,
    )
}

/// Files under `node/`: `buildkitd.toml`, the TLS pair and CA, the registries' CAs
/// and mTLS pairs (the paths the toml names). `(relative path, content, mode)`.
pub(crate) fn node_files(
    spec: &NodeSpec,
    registries: &[Registry],
    ca_pem: &str,
    server: &crate::trust::ca::Pem,
) -> Vec<trust::File> {
    let mut files: Vec<trust::File> = vec![
        (
            "buildkitd.toml".into(),
            node_toml(spec, registries).into_bytes(),
            0o644,
        ),
        ("tls/ca.crt".into(), ca_pem.as_bytes().to_vec(), 0o644),
        (
            "tls/server.crt".into(),
            server.cert.as_bytes().to_vec(),
            0o644,
        ),
        (
            "tls/server.key".into(),
            server.key.as_bytes().to_vec(),
            0o600,
        ),
    ];
    let prefix = format!("{}/", NODE_ETC.trim_start_matches('/'));
    for (path, content, mode) in trust::files(registries, &Default::default(), None) {
        if let Some(rest) = path.strip_prefix(&prefix)
            && rest.starts_with("certs/")
        {
            files.push((rest.to_string(), content, mode));
        }
    }
    files
}

/// The node's container on this host's engine: host network (it listens on the
/// host's address and reaches registries as the host does), `node/` read-only at
/// /etc/buildkit, its own volume for /var/lib/buildkit, restarted with the engine.
pub(crate) fn container_body(
    spec: &NodeSpec,
    node_dir: &str,
    rights: Rights,
) -> ContainerCreateBody {
    let mut mounts = vec![
        Mount {
            typ: Some(MountType::BIND),
            source: Some(node_dir.into()),
            target: Some(NODE_ETC.into()),
            read_only: Some(true),
            ..Default::default()
        },
        Mount {
            typ: Some(MountType::VOLUME),
            source: Some(spec.container()),
            target: Some("/var/lib/buildkit".into()),
            ..Default::default()
        },
    ];
    let mut host = HostConfig {
        network_mode: Some("host".into()),
        extra_hosts: Some(spec.extra_hosts.clone()).filter(|h| !h.is_empty()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    // Nodes run BuildKit with its own (unconfined) needs, outside runnerx's profile.
    grant_privileges(rights, "apparmor=unconfined", &mut host, &mut mounts);
    host.mounts = Some(mounts);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec!["buildkitd".into()]),
        cmd: Some(vec![
            "--config".into(),
            format!("{NODE_ETC}/buildkitd.toml"),
        ]),
        labels: Some(HashMap::from([(LABEL_NODE.to_string(), spec.name.clone())])),
        host_config: Some(host),
        ..Default::default()
    }
}

/// The `docker run` line that starts the node by hand (as `--start` does).
pub(crate) fn docker_run_line(spec: &NodeSpec, node_dir: &str) -> String {
    let hosts: String = spec
        .extra_hosts
        .iter()
        .map(|h| format!(" --add-host {h}"))
        .collect();
    format!(
        "docker run -d --name {c} --restart unless-stopped --privileged --network host{hosts} \
         -v {node_dir}:{NODE_ETC}:ro -v {c}:/var/lib/buildkit --label {LABEL_NODE}={n} \
         --entrypoint buildkitd {image} --config {NODE_ETC}/buildkitd.toml",
        c = spec.container(),
        n = spec.name,
        image = spec.image,
    )
}

/// A systemd unit running the node's container.
pub(crate) fn systemd_unit(spec: &NodeSpec, node_dir: &str) -> String {
    let run = docker_run_line(spec, node_dir).replacen("docker run -d ", "docker run --rm ", 1);
    let run = run.replace(" --restart unless-stopped", "");
    format!(
        "[Unit]\nDescription=BuildKit node {n} (runnerx)\nAfter=docker.service\nRequires=docker.service\n\n\
         [Service]\nExecStartPre=-/usr/bin/docker rm -f {c}\nExecStart=/usr/bin/{run}\nExecStop=/usr/bin/docker stop {c}\nRestart=always\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        n = spec.name,
        c = spec.container(),
        run = run
            .trim_start_matches("docker ")
            .replacen("run", "docker run", 1),
    )
}

/// The `[[nodes]]` entry for the runner host's runnerx.toml.
pub(crate) fn nodes_entry(spec: &NodeSpec, runner_dir: &str) -> String {
    let platforms = quoted(&spec.platforms);
    format!(
        "[[nodes]]\nname = {name:?}\nendpoint = {endpoint:?}\nplatforms = [{platforms}]\n\
         ca_file = \"{runner_dir}/ca.crt\"\nclient_cert_file = \"{runner_dir}/client.crt\"\n\
         client_key_file = \"{runner_dir}/client.key\"\n",
        name = spec.name,
        endpoint = spec.endpoint(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            name: "arm1".into(),
            listen: "0.0.0.0:1234".into(),
            port: 1234,
            address: "arm1.example.com".into(),
            platforms: vec!["linux/arm64".parse().unwrap()],
            image: "harbor.example.com/mirror/buildkit:v0.23.2".into(),
            extra_hosts: vec!["harbor.example.com:10.0.0.5".into()],
        }
    }

    fn harbor() -> Registry {
        Registry {
            host: "harbor.example.com".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into()),
            ca_file: None,
            client: None,
            credentials: None,
            credential_rules: vec![],
            insecure: false,
            http: false,
            mirror_for: vec![],
            check_repository: None,
            cache_repository: None,
            signing_key: None,
        }
    }

    #[test]
    fn node_toml_is_mtls_only_pinned_and_trusts_the_registries() {
        let text = node_toml(&spec(), &[harbor()]);
        let v: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(v["grpc"]["address"][0].as_str(), Some("tcp://0.0.0.0:1234"));
        assert_eq!(
            v["grpc"]["tls"]["ca"].as_str(),
            Some("/etc/buildkit/tls/ca.crt"),
            "a ca turns on client certificate verification"
        );
        assert_eq!(
            v["worker"]["oci"]["platforms"][0].as_str(),
            Some("linux/arm64")
        );
        assert_eq!(
            v["registry"]["harbor.example.com"]["ca"][0].as_str(),
            Some("/etc/buildkit/certs/harbor.example.com/ca.crt")
        );
        let files = node_files(
            &spec(),
            &[harbor()],
            "CA",
            &crate::trust::ca::Pem {
                cert: "C".into(),
                key: "K".into(),
            },
        );
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert!(
            paths.contains(&"certs/harbor.example.com/ca.crt"),
            "{paths:?}"
        );
        assert!(
            files
                .iter()
                .any(|f| f.0 == "tls/server.key" && f.2 == 0o600)
        );
    }

    #[test]
    fn node_container_mounts_its_files_read_only_and_keeps_state_in_a_volume() {
        let b = serde_json::to_value(container_body(
            &spec(),
            "/srv/arm1/node",
            Rights::Privileged,
        ))
        .unwrap();
        let h = &b["HostConfig"];
        assert_eq!(h["NetworkMode"], "host");
        assert_eq!(h["Privileged"], true);
        assert_eq!(h["Mounts"][0]["Target"], "/etc/buildkit");
        assert_eq!(h["Mounts"][0]["ReadOnly"], true);
        assert_eq!(h["Mounts"][1]["Source"], "runnerx-node-arm1");
        assert_eq!(b["Labels"]["runnerx.node"], "arm1");
        let line = docker_run_line(&spec(), "/srv/arm1/node");
        assert!(
            line.contains("--add-host harbor.example.com:10.0.0.5"),
            "{line}"
        );
        assert!(
            systemd_unit(&spec(), "/srv/arm1/node")
                .contains("ExecStart=/usr/bin/docker run --rm --name runnerx-node-arm1")
        );
        assert!(
            nodes_entry(&spec(), "/etc/runnerx/nodes/arm1")
                .contains("endpoint = \"tcp://arm1.example.com:1234\"")
        );
    }
}
