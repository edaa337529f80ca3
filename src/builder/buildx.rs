//! The job's buildx builder when runnerx makes one, inside the job's builder: a
//! docker-container builder (`builder.driver = "docker-container"`), or with
//! `[[nodes]]` a multi-node builder of the remote driver — the job's own BuildKit as
//! node 0 for the platforms no node answers for, then one node per answering BuildKit
//! node. Either is made current, so a plain `docker buildx build --platform … --push`
//! in a job script builds each platform where it belongs.
//!
//! Invariant: a node's client key reaches the builder only as a 0600 file owned by the
//! job user (buildx reads it when the node is added); it is never in argv or env.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::commands::{self as cmds, BUILDX_BUILDER, BUILDX_LOCAL};
use super::engine::Engine;
use super::spec::job_home;
use super::tarball::home_tar;
use crate::buildkit::{self, Plan};
use crate::error::{Error, Result};
use crate::settings::{Node, Platform, Settings};

/// Runs `cmd` as the job user; output and exit code. Cancellable.
async fn run(
    engine: &Engine,
    builder: &str,
    cmd: Vec<String>,
    cancel: &CancellationToken,
) -> Result<(i64, String)> {
    tokio::select! {
        () = cancel.cancelled() => Err(Error::Cancelled("signal")),
        r = engine.exec_capture(builder, cmds::user_cmd(cmd)) => r,
    }
}

/// A docker-container builder `name` for `platforms` with the rendered buildkitd.toml.
async fn container_builder(
    settings: &Settings,
    engine: &Engine,
    builder: &str,
    name: &str,
    platforms: &[Platform],
    use_it: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let image = &settings.builder.buildkit_image;
    let (code, out) = run(
        engine,
        builder,
        cmds::buildx_create_cmd(name, image, platforms, use_it),
        cancel,
    )
    .await?;
    if code != 0 {
        let last = cmds::last_line(&out);
        return Err(Error::Buildx(format!(
            "buildx could not start the docker-container builder with BuildKit image {image} ({last}); mirror that image into a registry the builder can reach and set builder.buildkit_image, or use builder.driver = \"docker\"",
        )));
    }
    Ok(())
}

/// `builder.driver = "docker-container"`: builder `runnerx` for `builder.platforms`.
pub(crate) async fn create_container_builder(
    settings: &Settings,
    engine: &Engine,
    builder: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let platforms = &settings.builder.platforms;
    container_builder(
        settings,
        engine,
        builder,
        BUILDX_BUILDER,
        platforms,
        true,
        cancel,
    )
    .await
}

/// `[[nodes]]`: the multi-node builder of `plan`, connected and made current.
async fn create_node_builder(
    settings: &Settings,
    engine: &Engine,
    builder: &str,
    plan: &Plan<'_>,
    rootless: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let loopback_alias = rootless && settings.builder.host_loopback;
    if rootless && !loopback_alias {
        // Inside a rootless builder's namespace 127.0.0.1 is the namespace itself.
        if let Some(n) = plan.remote.iter().find(|n| n.on_loopback()) {
            return Err(Error::Node(format!(
                "node {} listens on the runner host's loopback ({}), which a rootless builder reaches only with builder.host_loopback = true; set it, or give the node a non-loopback endpoint",
                n.name, n.endpoint
            )));
        }
    }
    if !plan.local.is_empty() {
        container_builder(
            settings,
            engine,
            builder,
            BUILDX_LOCAL,
            &plan.local,
            false,
            cancel,
        )
        .await?;
    }
    let files: Vec<(String, Vec<u8>, u32)> = plan
        .remote
        .iter()
        .flat_map(|n| {
            let dir = cmds::node_dir("", &n.name);
            let dir = dir.trim_start_matches('/');
            [
                (
                    format!("{dir}/ca.crt"),
                    n.ca_pem.clone().into_bytes(),
                    0o644,
                ),
                (
                    format!("{dir}/client.crt"),
                    n.client.cert_pem.clone().into_bytes(),
                    0o644,
                ),
                (
                    format!("{dir}/client.key"),
                    n.client.key_pem.expose().as_bytes().to_vec(),
                    0o600,
                ),
            ]
        })
        .collect();
    engine
        .upload(builder, home_tar(job_home(rootless), &files))
        .await?;
    let (home, _) = job_home(rootless);
    let names: Vec<&str> = std::iter::once(BUILDX_LOCAL)
        .filter(|_| !plan.local.is_empty())
        .chain(plan.remote.iter().map(|n| n.name.as_str()))
        .collect();
    for (cmd, node) in cmds::buildx_nodes_cmds(&plan.remote, &plan.local, home, loopback_alias)
        .into_iter()
        .zip(&names)
    {
        let (code, out) = run(engine, builder, cmd, cancel).await?;
        if code != 0 {
            return Err(Error::Node(format!(
                "buildx could not add node {node} to the job's builder ({}); `runnerx doctor` checks its endpoint and mTLS files",
                cmds::last_line(&out)
            )));
        }
    }
    let (code, out) = run(engine, builder, cmds::buildx_bootstrap_cmd(), cancel).await?;
    if code != 0 {
        return Err(Error::Node(format!(
            "the job's builder cannot reach its nodes ({}); `docker buildx inspect --bootstrap {BUILDX_BUILDER}` in the builder shows which, and `runnerx doctor` checks each endpoint from the host",
            cmds::last_line(&out)
        )));
    }
    Ok(())
}

/// Where the job's `docker` wrapper reads which platform is built where (a path in
/// the uploaded tar, so relative).
pub(crate) const PLACEMENT: &str = "etc/runnerx/placement";

/// How long a node may take to answer at prepare.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// `[[nodes]]` (those serving the job's project): asks every node whether it answers, then makes the job's multi-node
/// buildx builder — each platform on its node, the rest (and the platforms of silent
/// nodes with `fallback = "qemu"`) in this builder. Returns the placement file's text
/// and one line for the job log saying where each platform goes.
pub(crate) async fn setup_nodes(
    settings: &Settings,
    nodes: &[Node],
    engine: &Engine,
    builder: &str,
    native: &str,
    rootless: bool,
    cancel: &CancellationToken,
) -> Result<(String, String)> {
    let answers = tokio::select! {
        () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
        a = buildkit::probe_all(nodes, &settings.builder.extra_hosts, NODE_TIMEOUT) => a,
    };
    let plan = buildkit::plan(nodes, &answers, &settings.builder.platforms)?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    create_node_builder(settings, engine, builder, &plan, rootless, cancel).await?;
    let versions: Vec<(&Node, Option<&str>)> = plan
        .remote
        .iter()
        .zip(answers.iter().filter_map(|a| a.as_ref().ok()))
        .map(|(n, info)| (*n, info.version.as_deref()))
        .collect();
    let mut placed: Vec<String> = versions
        .iter()
        .map(|(n, v)| {
            format!(
                "{} on node {} (BuildKit {})",
                Platform::joined(&n.platforms, ", "),
                n.name,
                v.unwrap_or("?")
            )
        })
        .collect();
    if !plan.local.is_empty() {
        placed.push(format!(
            "{} in this builder",
            Platform::joined(&plan.local, ", ")
        ));
    }
    Ok((
        buildkit::placement(&settings.builder.platforms, native, &versions),
        placed.join("; "),
    ))
}
