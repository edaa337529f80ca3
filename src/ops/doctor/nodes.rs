//! `runnerx doctor`, BuildKit nodes (`[[nodes]]`): each node answers over mTLS with
//! the runner's client certificate, refuses a client without one (otherwise anyone
//! who reaches its port builds there and reads its cache), runs a known BuildKit,
//! and reports every platform it is declared for.

use std::time::Duration;

use super::Report;
use crate::buildkit;
use crate::settings::Settings;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Checks every `[[nodes]]` entry.
pub(super) async fn check(settings: &Settings, r: &mut Report) {
    let hosts = &settings.builder.extra_hosts;
    for node in &settings.nodes {
        println!("node {} ({})", node.name, node.endpoint);
        let what = "mTLS";
        let info = match buildkit::probe(node, hosts, TIMEOUT).await {
            Ok(info) => {
                r.ok(
                    what,
                    format!(
                        "answers with the client certificate, its certificate verifies against {} as {}",
                        node.ca_file.display(),
                        node.server_name
                    ),
                );
                info
            }
            Err(why) => {
                let fix = match node.fallback {
                    crate::settings::NodeFallback::Qemu => {
                        "until then jobs build its platforms under QEMU (fallback = \"qemu\")"
                    }
                    crate::settings::NodeFallback::Fail => {
                        "until then its jobs fail (fallback = \"fail\")"
                    }
                };
                r.fail(what, why, format!("start or fix the node; {fix}"));
                continue;
            }
        };
        match buildkit::probe_as(node, hosts, TIMEOUT, false).await {
            Err(_) => r.ok("client certificates", "a client without a certificate is refused"),
            Ok(_) => r.fail(
                "client certificates",
                "the node answers clients without a certificate: anyone who reaches the port builds there and reads its cache",
                "give buildkitd --tlscacert (or [grpc.tls] ca in its buildkitd.toml, as `runnerx node` writes it)",
            ),
        }
        r.ok(
            "buildkit",
            info.version.as_deref().unwrap_or("version not reported"),
        );
        let missing = buildkit::missing_platforms(node, &info);
        if missing.is_empty() {
            r.ok("platforms", info.platforms.join(", "));
        } else {
            r.fail(
                "platforms",
                format!(
                    "reports {} but is declared for {}",
                    info.platforms.join(", "),
                    missing.join(", ")
                ),
                "run the node on hardware of that architecture, or fix nodes.platforms",
            );
        }
        r.note(
            "projects",
            if node.projects.is_empty() && node.project_ids.is_empty() {
                "every project's jobs use it (and share its build cache)".to_string()
            } else {
                let mut who = node.projects.clone();
                who.extend(node.project_ids.iter().map(|id| format!("project id {id}")));
                format!("jobs of {} only", who.join(", "))
            },
        );
        r.note(
            "registries",
            "the node pushes to them itself: its buildkitd.toml needs their CAs (`runnerx node` writes them)",
        );
    }
}
