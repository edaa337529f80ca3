//! `runnerx node`: sets up a native BuildKit node for `[[nodes]]` on the host it runs
//! on (any architecture). Issues the node's server certificate and the runner's
//! client certificate from the runner's CA, writes the node's `buildkitd.toml` (mTLS
//! only, worker pinned to its platforms, the registries' trust), and prints the
//! `[[nodes]]` entry, the `docker run` line and a systemd unit. With `--start` it
//! also (re)starts the node's container on this host's engine and waits until the
//! node answers over mTLS, as a runner would reach it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::builder::Rights;
use crate::builder::engine::Engine;
use crate::buildkit::node::{self, NodeSpec};
use crate::buildkit::{self, NodeInfo};
use crate::cli::NodeArgs;
use crate::error::{Error, Result};
use crate::settings::{ClientIdentity, Node, NodeFallback, Platform, Privileged, Secret, Settings};
use crate::trust::ca::{self, OutFile};

/// How long `--start` waits for the node to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `runnerx node`.
pub(crate) async fn node(settings: &Settings, args: &NodeArgs) -> Result<()> {
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Usage(format!(
            "--name {:?} may hold only letters, digits, - and _",
            args.name
        )));
    }
    let listen: IpAddr = args.listen.parse().map_err(|_| {
        Error::Usage(format!(
            "--listen {:?} is not an IP address; use 0.0.0.0 for every interface",
            args.listen
        ))
    })?;
    let platforms = args
        .platforms
        .iter()
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|e| Error::Usage(format!("--platform {p:?} {}", e.0)))
        })
        .collect::<Result<Vec<_>>>()?;
    let issuer = ca::read_ca(&args.ca)?;
    let server = ca::make_server(&issuer, &args.addresses, args.days)?;
    let client = ca::make_client(
        &issuer,
        &format!("runnerx jobs on node {}", args.name),
        args.days,
    )?;
    let spec = NodeSpec {
        name: args.name.clone(),
        listen: std::net::SocketAddr::new(listen, args.port).to_string(),
        port: args.port,
        address: args.addresses[0].clone(),
        platforms,
        image: args
            .image
            .clone()
            .unwrap_or_else(|| settings.builder.buildkit_image.clone()),
        extra_hosts: settings.builder.extra_hosts.clone(),
    };
    let mut files: Vec<OutFile> =
        node::node_files(&spec, &settings.registries, &issuer.cert, &server)
            .into_iter()
            .map(|(path, content, mode)| OutFile {
                name: format!("node/{path}"),
                content: String::from_utf8_lossy(&content).into_owned(),
                mode,
                goes: "the node's /etc/buildkit (mounted read-only)".into(),
            })
            .collect();
    let runner_goes = "the runner host: the [[nodes]] entry below points at it";
    for (name, content, mode) in [
        ("runner/ca.crt", issuer.cert.clone(), 0o644),
        ("runner/client.crt", client.cert.clone(), 0o644),
        ("runner/client.key", client.key.clone(), 0o600),
    ] {
        files.push(OutFile {
            name: name.into(),
            content,
            mode,
            goes: runner_goes.into(),
        });
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io("create directory", &args.out, e))?;
    let out = args
        .out
        .canonicalize()
        .map_err(|e| Error::io("resolve", &args.out, e))?;
    let node_dir = out.join("node").to_string_lossy().into_owned();
    let runner_dir = out.join("runner").to_string_lossy().into_owned();
    let unit = node::systemd_unit(&spec, &node_dir);
    files.push(OutFile {
        name: format!("{}.service", spec.container()),
        content: unit,
        mode: 0o644,
        goes: "systemd: /etc/systemd/system/ on the node's host, then `systemctl enable --now`"
            .into(),
    });
    for path in ca::write_all(&out, &files, args.force)? {
        println!("wrote {}", path.display());
    }
    println!("\nserver names (SANs): {}", args.addresses.join(", "));
    println!(
        "\nOn the runner host, copy {runner_dir}/ to /etc/runnerx/nodes/{}/ and add to /etc/runnerx/runnerx.toml:\n",
        spec.name
    );
    print!(
        "{}",
        node::nodes_entry(&spec, &format!("/etc/runnerx/nodes/{}", spec.name))
    );
    println!(
        "\nRun the node on this host (once; it restarts with Docker):\n  {}",
        node::docker_run_line(&spec, &node_dir)
    );
    if !args.start {
        return Ok(());
    }
    let engine = Engine::connect().await?;
    let rights = start(settings, &engine, &spec, &node_dir).await?;
    let probe_node = Node {
        name: spec.name.clone(),
        endpoint: spec.endpoint(),
        host: spec.address.clone(),
        port: spec.port,
        platforms: spec.platforms.clone(),
        ca_pem: issuer.cert.clone(),
        ca_file: out.join("runner/ca.crt"),
        client: ClientIdentity {
            cert_pem: client.cert,
            key_pem: Secret::new(client.key),
        },
        server_name: spec.address.clone(),
        fallback: NodeFallback::Fail,
        projects: vec![],
        project_ids: vec![],
    };
    let info = wait_answer(&engine, &spec, &probe_node, &settings.builder.extra_hosts).await?;
    println!(
        "\nnode {} answers at {} over mTLS: BuildKit {}, platforms {} ({} container {})",
        spec.name,
        spec.endpoint(),
        info.version.as_deref().unwrap_or("?"),
        info.platforms.join(", "),
        match rights {
            Rights::Capabilities => "capabilities",
            _ => "privileged",
        },
        spec.container()
    );
    Ok(())
}

/// (Re)creates and starts the node's container: privileged, or where the engine
/// refuses that and `builder.privileged` allows, with explicit capabilities.
async fn start(
    settings: &Settings,
    engine: &Engine,
    spec: &NodeSpec,
    node_dir: &str,
) -> Result<Rights> {
    if !engine.image_exists(&spec.image).await? {
        engine
            .pull(&spec.image, Duration::from_secs(5), |p| {
                tracing::info!("{p}")
            })
            .await
            .map_err(|e| {
                Error::BuilderImage(format!(
                    "{e}; load the BuildKit image into this engine (docker load) or pass --image"
                ))
            })?;
    }
    let name = spec.container();
    engine.remove_container(&name).await?;
    let first = match settings.builder.privileged {
        Privileged::Never => Rights::Capabilities,
        _ => Rights::Privileged,
    };
    let name = &name;
    let attempt = |rights: Rights| async move {
        engine
            .create_container(name, node::container_body(spec, node_dir, rights))
            .await?;
        engine
            .start(name)
            .await
            .map_err(|e| Error::docker(format!("start node {name}"), e))
    };
    match attempt(first).await {
        Ok(()) => Ok(first),
        Err(e)
            if first == Rights::Privileged && settings.builder.privileged == Privileged::Auto =>
        {
            tracing::warn!(
                "the engine refused a privileged node ({e}); retrying with explicit capabilities"
            );
            engine.remove_container(&spec.container()).await?;
            attempt(Rights::Capabilities).await?;
            Ok(Rights::Capabilities)
        }
        Err(e) => {
            let _ = engine.remove_container(&spec.container()).await;
            Err(e)
        }
    }
}

/// Polls the node until it answers over mTLS; on timeout, the error names the
/// last reason and the node's log tail.
async fn wait_answer(
    engine: &Engine,
    spec: &NodeSpec,
    probe: &Node,
    extra_hosts: &[String],
) -> Result<NodeInfo> {
    let started = Instant::now();
    loop {
        match buildkit::probe(probe, extra_hosts, Duration::from_secs(3)).await {
            Ok(info) => return Ok(info),
            Err(why) if started.elapsed() > START_TIMEOUT => {
                let logs = engine.logs_tail(&spec.container(), 5).await;
                return Err(Error::Node(format!(
                    "node {} started but does not answer at {} ({why}); its log ends: {}",
                    spec.name,
                    spec.endpoint(),
                    logs.lines().collect::<Vec<_>>().join(" | ")
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
