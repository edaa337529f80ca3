//! The commands runnerx runs inside a builder, as argv (pure). Everything goes through
//! the builder's `exec.sh`, which drops to the job user (rootless) or enters the
//! daemons' namespace (privileged) first; scripts arrive on stdin, never in argv.

use super::spec::EXEC_PATH;
use crate::settings::{Node, Platform};
use crate::trust;

/// Name of the buildx builder jobs use when runnerx makes one (docker-container
/// driver, or `[[nodes]]`).
pub(crate) const BUILDX_BUILDER: &str = "runnerx";
/// With `[[nodes]]`: the docker-container builder holding the job's own BuildKit, node
/// 0 of [`BUILDX_BUILDER`] for the platforms no node answers for.
pub(crate) const BUILDX_LOCAL: &str = "runnerx-local";

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// `docker buildx create` of a docker-container builder `name` (one node, also named
/// `name`, so its container is `buildx_buildkit_<name>`): the rendered buildkitd.toml
/// (registry CAs, mirrors), host networking (resolves registries as the builder does),
/// a pinned BuildKit image, the given platforms, and with `use_it` made current so
/// plain `docker buildx build` in job scripts picks it.
pub(crate) fn buildx_create_cmd(
    name: &str,
    buildkit_image: &str,
    platforms: &[Platform],
    use_it: bool,
) -> Vec<String> {
    let mut cmd = strings(&[
        "docker",
        "buildx",
        "create",
        "--name",
        name,
        "--node",
        name,
        "--driver",
        "docker-container",
        "--driver-opt",
        "network=host",
        "--driver-opt",
        &format!("image={buildkit_image}"),
        "--buildkitd-config",
        trust::BUILDKITD_TOML,
        "--platform",
        &Platform::joined(platforms, ","),
        "--bootstrap",
    ]);
    if use_it {
        cmd.push("--use".into());
    }
    cmd
}

/// Where a node's mTLS files sit in the builder, under the job user's `home`.
pub(crate) fn node_dir(home: &str, node: &str) -> String {
    format!("{home}/.runnerx/nodes/{node}")
}

/// The runner host as a rootless builder's namespace sees it (RootlessKit's alias for
/// the host's loopback, open only with `builder.host_loopback`).
pub(crate) const HOST_ALIAS: &str = "10.0.2.2";

/// The node's endpoint as the job's namespace reaches it: a node on the runner host's
/// loopback is at [`HOST_ALIAS`] when `to_alias` (a rootless builder with
/// `host_loopback`); the TLS name stays the endpoint's own (`servername`).
pub(crate) fn endpoint_in_builder(node: &Node, to_alias: bool) -> String {
    if to_alias && node.on_loopback() {
        format!("tcp://{HOST_ALIAS}:{}", node.port)
    } else {
        node.endpoint.clone()
    }
}

/// The `docker buildx create` commands of the multi-node builder [`BUILDX_BUILDER`]
/// (remote driver): node 0 is the job's own BuildKit ([`BUILDX_LOCAL`]'s container)
/// for `local` platforms when there are any — buildx sends a platform no node matches
/// to node 0 —, then one node per answering `[[nodes]]` entry pinned to its platforms
/// and reached with its mTLS files. The last one is made current (`--use`).
pub(crate) fn buildx_nodes_cmds(
    nodes: &[&Node],
    local: &[Platform],
    home: &str,
    loopback_alias: bool,
) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let base = |first: bool, node: &str, platforms: &[Platform]| {
        let mut c = strings(&["docker", "buildx", "create", "--name", BUILDX_BUILDER]);
        if !first {
            c.push("--append".into());
        }
        c.extend(strings(&[
            "--driver",
            "remote",
            "--node",
            node,
            "--platform",
            &Platform::joined(platforms, ","),
        ]));
        c
    };
    if !local.is_empty() {
        let mut c = base(true, BUILDX_LOCAL, local);
        c.push(format!("docker-container://buildx_buildkit_{BUILDX_LOCAL}"));
        cmds.push(c);
    }
    for n in nodes {
        let dir = node_dir(home, &n.name);
        let mut c = base(cmds.is_empty(), &n.name, &n.platforms);
        for opt in [
            format!("cacert={dir}/ca.crt"),
            format!("cert={dir}/client.crt"),
            format!("key={dir}/client.key"),
            format!("servername={}", n.server_name),
        ] {
            c.push("--driver-opt".into());
            c.push(opt);
        }
        c.push(endpoint_in_builder(n, loopback_alias));
        cmds.push(c);
    }
    if let Some(last) = cmds.last_mut() {
        last.push("--use".into());
    }
    cmds
}

/// Connects every node of [`BUILDX_BUILDER`] and lists them (`Status: running`).
pub(crate) fn buildx_bootstrap_cmd() -> Vec<String> {
    strings(&["docker", "buildx", "inspect", "--bootstrap", BUILDX_BUILDER])
}

/// `exec.sh <cmd> <args…>`: how runnerx runs anything in a builder.
fn wrapped(cmd: &str, args: impl IntoIterator<Item = String>) -> Vec<String> {
    ["bash", EXEC_PATH, cmd]
        .map(String::from)
        .into_iter()
        .chain(args)
        .collect()
}

/// Command that succeeds once the inner dockerd answers, polling for up to `secs`.
/// One exec for the whole wait instead of one per poll: an exec costs tens of ms.
pub(crate) fn wait_ready_cmd(secs: u64) -> Vec<String> {
    wrapped("ready", [secs.to_string()])
}

/// `cmd` run as the job user (rootless) or as is (privileged).
pub(crate) fn user_cmd(cmd: Vec<String>) -> Vec<String> {
    wrapped("do", cmd)
}

/// Prints `<name> ok|missing|disabled|nof` per QEMU handler, as the inner dockerd
/// sees them (inside the namespace for rootless builders).
pub(crate) fn binfmt_check_cmd(names: &[&str]) -> Vec<String> {
    wrapped("binfmt", names.iter().map(|n| (*n).to_string()))
}

/// Runs a stage script inside the builder without leaving a copy of it there.
///
/// The script (it holds the job token) arrives on stdin, length-prefixed by the
/// length argument, and is read through a pipe by `exec.sh run`: it is never written
/// to the container's filesystem. Job control (`set -m`) gives the script its own process group so
/// cancellation can signal the whole tree, as gitlab-runner does with `kill(-pid)`;
/// its pid goes to `/run/runnerx/<token>.pid`. The script's own stdin is /dev/null.
/// `in_job_image`: the stage carries the user's script, so it runs in the job's own
/// container when prepare made one.
pub(crate) fn exec_wrapper(script_len: usize, token: &str, in_job_image: bool) -> Vec<String> {
    let cmd = if in_job_image { "job" } else { "run" };
    wrapped(cmd, [script_len.to_string(), token.to_string()])
}

/// Sends `signal` to the process group of the script started with `token`.
/// Waits briefly for the pid file, which the wrapper writes right after starting.
pub(crate) fn kill_cmd(token: &str, signal: &str) -> Vec<String> {
    wrapped("kill", [token.to_string(), signal.to_string()])
}

/// The last non-empty line of a command's output: usually the error that matters.
pub(crate) fn last_line(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::builder::spec::EXEC_SCRIPT;

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn buildx_create_uses_rendered_config_host_network_and_pinned_image() {
        let cmd = buildx_create_cmd(
            BUILDX_BUILDER,
            "harbor.example.com/mirror/buildkit:v0.23.2",
            &platforms(&["linux/amd64", "linux/arm64"]),
            true,
        )
        .join(" ");
        assert_eq!(
            cmd,
            "docker buildx create --name runnerx --node runnerx --driver docker-container --driver-opt network=host \
             --driver-opt image=harbor.example.com/mirror/buildkit:v0.23.2 \
             --buildkitd-config /etc/buildkit/buildkitd.toml --platform linux/amd64,linux/arm64 --bootstrap --use"
        );
    }

    #[test]
    fn node_builder_puts_the_local_buildkit_first_and_pins_each_node() {
        let arm = Node {
            name: "arm1".into(),
            endpoint: "tcp://arm1.example.com:1234".into(),
            host: "arm1.example.com".into(),
            port: 1234,
            platforms: platforms(&["linux/arm64"]),
            ca_pem: String::new(),
            ca_file: "ca.crt".into(),
            client: crate::settings::ClientIdentity {
                cert_pem: String::new(),
                key_pem: crate::settings::Secret::new("k"),
            },
            server_name: "arm1.example.com".into(),
            fallback: crate::settings::NodeFallback::Qemu,
            projects: vec![],
            project_ids: vec![],
        };
        let cmds = buildx_nodes_cmds(
            &[&arm],
            &platforms(&["linux/amd64"]),
            "/home/rootless",
            true,
        );
        let lines: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "docker buildx create --name runnerx --driver remote --node runnerx-local --platform linux/amd64 docker-container://buildx_buildkit_runnerx-local",
                "docker buildx create --name runnerx --append --driver remote --node arm1 --platform linux/arm64 \
                 --driver-opt cacert=/home/rootless/.runnerx/nodes/arm1/ca.crt \
                 --driver-opt cert=/home/rootless/.runnerx/nodes/arm1/client.crt \
                 --driver-opt key=/home/rootless/.runnerx/nodes/arm1/client.key \
                 --driver-opt servername=arm1.example.com tcp://arm1.example.com:1234 --use",
            ]
        );
        // Every platform on a node: no local BuildKit, the first node is node 0.
        let only = buildx_nodes_cmds(&[&arm], &[], "/root", false);
        assert_eq!(only.len(), 1);
        assert!(!only[0].contains(&"--append".to_string()));
        // A node on the host's loopback: the host alias, only when asked; the TLS name
        // stays the endpoint's.
        for host in ["127.0.0.1", "localhost", "::1", "127.0.1.1"] {
            let lo = Node {
                endpoint: format!("tcp://{host}:1234"),
                host: host.into(),
                server_name: host.into(),
                ..arm.clone()
            };
            let aliased = buildx_nodes_cmds(&[&lo], &[], "/root", true).remove(0);
            assert!(
                aliased.contains(&"tcp://10.0.2.2:1234".to_string()),
                "{aliased:?}"
            );
            assert!(
                aliased.contains(&format!("servername={host}")),
                "{aliased:?}"
            );
            let kept = buildx_nodes_cmds(&[&lo], &[], "/root", false).remove(0);
            assert!(kept.contains(&format!("tcp://{host}:1234")), "{kept:?}");
        }
        let aliased = buildx_nodes_cmds(&[&arm], &[], "/root", true).remove(0);
        assert!(aliased.contains(&"tcp://arm1.example.com:1234".to_string()));
    }

    #[test]
    fn exec_wrapper_never_puts_the_script_in_argv() {
        let cmd = exec_wrapper(1234, "tok", false);
        assert_eq!(cmd, ["bash", EXEC_PATH, "run", "1234", "tok"]);
        let cmd = exec_wrapper(1234, "tok", true);
        assert_eq!(cmd, ["bash", EXEC_PATH, "job", "1234", "tok"]);
        assert!(EXEC_SCRIPT.contains("head -c \"$len\""));
        assert!(EXEC_SCRIPT.contains("set -m"));
        // Rootless: the wrapper drops to the user for good before anything else.
        assert!(EXEC_SCRIPT.contains("--no-new-privs"));
    }
}
