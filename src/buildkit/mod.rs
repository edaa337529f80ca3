//! Talks to BuildKit nodes (`[[nodes]]`) from the runner host: a gRPC call over
//! mutual TLS (`ListWorkers`, then `Info`) says whether a node answers, which BuildKit
//! it runs and which platforms it builds. [`plan`] (pure) then decides, per job, which
//! platforms go to which answering node and which stay in the job's own builder.
//!
//! Invariants: a node is trusted through its own `ca_file` only (never the system
//! roots), and it always sees the client certificate; the key never leaves memory
//! here (it reaches the builder as a 0600 file owned by the job user).

pub(crate) mod node;
pub(crate) mod proto;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::settings::{Node, NodeFallback, Platform};

/// What a node said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    /// BuildKit version (`v0.13.2`), when it reports one.
    pub version: Option<String>,
    /// Platforms its workers build (emulated ones included), e.g. `linux/arm64`.
    pub platforms: Vec<String>,
}

/// The error and its causes, in one line (reqwest nests the TLS and I/O reasons).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Why a call failed, with the fix that goes with it.
fn explain(detail: &str, node: &Node) -> String {
    let d = detail.to_ascii_lowercase();
    let fix = if d.contains("connection refused") {
        "nothing listens there: start the node (`runnerx node` prints how)"
    } else if d.contains("timed out") || d.contains("deadline") {
        "no answer in time: check the address, firewalls and that buildkitd runs"
    } else if d.contains("unknownissuer") || d.contains("unknown issuer") {
        "the node's certificate is not signed by nodes.ca_file: issue it with `runnerx node` from the same CA"
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        "the node's certificate does not name server_name: reissue it with that name or set server_name"
    } else if d.contains("certificate required")
        || d.contains("bad certificate")
        || d.contains("unknown ca")
        || d.contains("handshake")
    {
        "the node refused the client certificate: client_cert_file must be issued by the CA the node trusts (its --tlscacert)"
    } else if d.contains("dns") || d.contains("resolve") || d.contains("lookup") {
        "the host does not resolve: fix DNS or add it to builder.extra_hosts"
    } else {
        "check that buildkitd listens there with --tlscacert (mTLS)"
    };
    format!("{detail}; {fix} ({})", node.endpoint)
}

/// One gRPC call with an empty request; the answer's single message.
async fn call(client: &reqwest::Client, base: &str, method: &str) -> Result<Vec<u8>, String> {
    let resp = client
        .post(format!("{base}/moby.buildkit.v1.Control/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let status = resp.status();
    let grpc_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let grpc_message = resp
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !status.is_success() {
        return Err(format!(
            "answered HTTP {status}, not gRPC: is this a buildkitd port?"
        ));
    }
    if let Some(code) = grpc_status.filter(|c| c != "0") {
        return Err(format!("gRPC status {code} {grpc_message}"));
    }
    let body = resp.bytes().await.map_err(|e| chain(&e))?;
    let messages = proto::grpc_messages(&body)?;
    Ok(messages.first().map(|m| m.to_vec()).unwrap_or_default())
}

/// Why a node did not answer a probe: one line with the likely fix (a node that is
/// down is data for the plan, not yet a failure: its fallback decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeDown(pub(crate) String);

impl From<&str> for NodeDown {
    fn from(m: &str) -> NodeDown {
        NodeDown(m.to_string())
    }
}

impl AsRef<str> for NodeDown {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Asks `node` for its workers and version over mTLS, resolving its host as builders
/// do (`extra_hosts` first). Errors are one line with the likely fix.
pub(crate) async fn probe(
    node: &Node,
    extra_hosts: &[String],
    timeout: Duration,
) -> Result<NodeInfo, NodeDown> {
    probe_as(node, extra_hosts, timeout, true).await
}

/// [`probe`], presenting the client certificate or (`with_cert` false: what anyone
/// who reaches the port could do) none.
pub(crate) async fn probe_as(
    node: &Node,
    extra_hosts: &[String],
    timeout: Duration,
    with_cert: bool,
) -> Result<NodeInfo, NodeDown> {
    ask(node, extra_hosts, timeout, with_cert)
        .await
        .map_err(NodeDown)
}

async fn ask(
    node: &Node,
    extra_hosts: &[String],
    timeout: Duration,
    with_cert: bool,
) -> std::result::Result<NodeInfo, String> {
    crate::registry::tls::install_crypto();
    let (addr, _) = crate::registry::resolve(extra_hosts, &node.host, node.port)
        .await
        .map_err(|e| explain(&e.to_string(), node))?;
    let bad = |m: String| explain(&m, node);
    let ca = reqwest::Certificate::from_pem_bundle(node.ca_pem.as_bytes())
        .map_err(|e| bad(format!("ca_file is not PEM: {e}")))?;
    let pem = format!("{}\n{}", node.client.cert_pem, node.client.key_pem.expose());
    let identity = reqwest::Identity::from_pem(pem.as_bytes())
        .map_err(|e| bad(format!("client certificate/key: {e}")))?;
    let mut client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .tls_certs_only(ca);
    if with_cert {
        client = client.identity(identity);
    }
    let client = client
        .resolve(&node.server_name, addr)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| bad(format!("cannot build the gRPC client: {}", chain(&e))))?;
    let base = format!("https://{}:{}", node.server_name, node.port);
    let workers = call(&client, &base, "ListWorkers").await.map_err(bad)?;
    let workers =
        proto::list_workers(&workers).map_err(|e| bad(format!("bad ListWorkers answer: {e}")))?;
    let mut platforms: Vec<String> = Vec::new();
    for p in workers.iter().flat_map(|w| w.platforms.iter()) {
        if !platforms.contains(p) {
            platforms.push(p.clone());
        }
    }
    let mut version = workers.iter().find_map(|w| w.version.clone());
    if version.is_none() {
        // Older daemons report it only through Info.
        version = call(&client, &base, "Info")
            .await
            .ok()
            .and_then(|b| proto::info_version(&b).ok().flatten());
    }
    Ok(NodeInfo { version, platforms })
}

/// Probes every node at once; answers in the order of `nodes`.
pub(crate) async fn probe_all(
    nodes: &[Node],
    extra_hosts: &[String],
    timeout: Duration,
) -> Vec<Result<NodeInfo, NodeDown>> {
    futures_util::future::join_all(nodes.iter().map(|n| probe(n, extra_hosts, timeout))).await
}

/// The platforms `node` is declared for that it did not report.
pub(crate) fn missing_platforms(node: &Node, info: &NodeInfo) -> Vec<String> {
    node.platforms
        .iter()
        .map(ToString::to_string)
        .filter(|p| !info.platforms.contains(p))
        .collect()
}

/// Where a job's platforms are built.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// Nodes that answered, each building its declared platforms.
    pub remote: Vec<&'a Node>,
    /// Platforms built in the job's builder (QEMU unless native): `builder.platforms`
    /// not on an answering node.
    pub local: Vec<Platform>,
    /// One line per node that did not answer and fell back to QEMU.
    pub warnings: Vec<String>,
}

/// Splits `platforms` between the nodes that answered and the job's own builder;
/// a node that did not answer with `fallback = "fail"` fails the job (ours).
pub(crate) fn plan<'a>(
    nodes: &'a [Node],
    answers: &[Result<NodeInfo, NodeDown>],
    platforms: &[Platform],
) -> Result<Plan<'a>> {
    let mut remote = Vec::new();
    let mut warnings = Vec::new();
    for (node, answer) in nodes.iter().zip(answers) {
        let list = Platform::joined(&node.platforms, ", ");
        match (answer, node.fallback) {
            (Ok(info), _) => {
                let missing = missing_platforms(node, info);
                if !missing.is_empty() {
                    warnings.push(format!(
                        "node {} reports platforms {} but is declared for {}; its builds of those will fail unless it can emulate them",
                        node.name,
                        info.platforms.join(", "),
                        missing.join(", ")
                    ));
                }
                remote.push(node);
            }
            (Err(why), NodeFallback::Qemu) => warnings.push(format!(
                "node {} does not answer ({why}); building {list} under QEMU in this job's builder instead (fallback = \"qemu\")",
                node.name
            )),
            (Err(why), NodeFallback::Fail) => {
                return Err(Error::Node(format!(
                    "node {} does not answer ({why}); it builds {list} and has fallback = \"fail\": start it, or set fallback = \"qemu\" to build under QEMU meanwhile",
                    node.name
                )));
            }
        }
    }
    let local = platforms
        .iter()
        .filter(|p| !remote.iter().any(|n| n.platforms.contains(p)))
        .cloned()
        .collect();
    Ok(Plan {
        remote,
        local,
        warnings,
    })
}

/// `/etc/runnerx/placement` in the builder: one line per platform, `<platform> <where>`,
/// read by the build report of the job's `docker` wrapper. `native`: the engine's
/// GOARCH; `nodes`: the answering nodes with the version each reported.
pub(crate) fn placement(
    platforms: &[Platform],
    native: &str,
    nodes: &[(&Node, Option<&str>)],
) -> String {
    platforms
        .iter()
        .map(|p| {
            let node = nodes.iter().find(|(n, _)| n.platforms.contains(p));
            let place = match node {
                Some((n, v)) => format!("node {} (BuildKit {})", n.name, v.unwrap_or("?")),
                None if p.arch == native => "native, this builder".to_string(),
                None => "QEMU, this builder".to_string(),
            };
            format!("{p} {place}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ClientIdentity, Secret};

    fn node(name: &str, platform: &str, fallback: NodeFallback) -> Node {
        Node {
            name: name.into(),
            endpoint: format!("tcp://{name}:1234"),
            host: name.into(),
            port: 1234,
            platforms: vec![platform.parse().unwrap()],
            ca_pem: String::new(),
            ca_file: "ca.crt".into(),
            client: ClientIdentity {
                cert_pem: String::new(),
                key_pem: Secret::new(""),
            },
            server_name: name.into(),
            fallback,
            projects: vec![],
            project_ids: vec![],
        }
    }

    fn info(platforms: &[&str]) -> Result<NodeInfo, NodeDown> {
        Ok(NodeInfo {
            version: Some("v0.13.2".into()),
            platforms: platforms.iter().map(|s| (*s).to_string()).collect(),
        })
    }

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn answering_nodes_take_their_platforms_and_the_rest_stays_local() {
        let nodes = [node("arm", "linux/arm64", NodeFallback::Qemu)];
        let all = platforms(&["linux/amd64", "linux/arm64"]);
        let p = plan(&nodes, &[info(&["linux/arm64"])], &all).unwrap();
        assert_eq!(p.remote.len(), 1);
        assert_eq!(p.local, platforms(&["linux/amd64"]));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn a_silent_node_falls_back_to_qemu_with_a_warning_naming_it() {
        let nodes = [node("arm", "linux/arm64", NodeFallback::Qemu)];
        let all = platforms(&["linux/amd64", "linux/arm64"]);
        let p = plan(&nodes, &[Err("connection refused".into())], &all).unwrap();
        assert!(p.remote.is_empty());
        assert_eq!(p.local, all);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("node arm does not answer (connection refused)"));
        assert!(p.warnings[0].contains("linux/arm64 under QEMU"));
    }

    #[test]
    fn a_silent_node_with_fallback_fail_is_a_system_failure() {
        let nodes = [node("arm", "linux/arm64", NodeFallback::Fail)];
        let all = platforms(&["linux/amd64", "linux/arm64"]);
        let e = plan(&nodes, &[Err("timed out".into())], &all).unwrap_err();
        assert_eq!(e.fault(), crate::error::Fault::System);
        assert!(e.to_string().contains("fallback = \"fail\""), "{e}");
    }

    #[test]
    fn placement_names_the_node_native_or_qemu_per_platform() {
        let arm = node("arm", "linux/arm64", NodeFallback::Qemu);
        let all = platforms(&["linux/amd64", "linux/arm64", "linux/riscv64"]);
        assert_eq!(
            placement(&all, "amd64", &[(&arm, Some("v0.13.2"))]),
            "linux/amd64 native, this builder\nlinux/arm64 node arm (BuildKit v0.13.2)\nlinux/riscv64 QEMU, this builder\n"
        );
    }

    #[test]
    fn a_node_missing_its_declared_platform_is_warned_about() {
        let nodes = [node("arm", "linux/arm64", NodeFallback::Qemu)];
        let p = plan(
            &nodes,
            &[info(&["linux/amd64"])],
            &platforms(&["linux/arm64"]),
        )
        .unwrap();
        assert!(p.local.is_empty());
        assert!(
            p.warnings[0].contains("declared for linux/arm64"),
            "{:?}",
            p.warnings
        );
    }
}
