//! A job's `services:` as containers of its builder's inner dockerd, started in
//! prepare once the daemon answers: pulled per the builder's pull policy, on one user
//! network, reachable from the job by their aliases (lines in the namespace's own
//! /etc/hosts), and waited for as gitlab-runner does (every exposed TCP port answers,
//! up to a timeout; otherwise a warning with the service's log, and the job goes on).
//! They die with the builder. Variables reach them through an env file (0600, the job
//! user's), never argv. A `docker:dind` service is not started: the builder is one.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::spec::job_home;
use super::tarball::home_tar;
use super::user_cmd;
use crate::error::{Error, Result};
use crate::settings::PullPolicy;

/// Network the services share inside the builder.
pub(crate) const NETWORK: &str = "runnerx-services";

/// One service to start. `Debug` shows variable names only: the values are the
/// job's variables, secrets included.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// Image reference.
    pub image: String,
    /// Host names the job reaches it by.
    pub aliases: Vec<String>,
    /// Entrypoint override (first element is the executable).
    pub entrypoint: Vec<String>,
    /// Command override.
    pub command: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// A Docker-in-Docker service (not started).
    pub dind: bool,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("image", &self.image)
            .field("aliases", &self.aliases)
            .field("entrypoint", &self.entrypoint)
            .field("command", &self.command)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("dind", &self.dind)
            .finish()
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// Container name of service `i`.
pub(crate) fn container_name(i: usize) -> String {
    format!("runnerx-service-{i}")
}

/// `docker run` for service `i` (pure).
pub(crate) fn run_cmd(i: usize, s: &Service, env_file: &str) -> Vec<String> {
    let mut cmd = strings(&["docker", "run", "-d", "--name"]);
    cmd.push(container_name(i));
    cmd.extend(strings(&["--network", NETWORK, "--env-file", env_file]));
    for a in &s.aliases {
        cmd.push("--network-alias".into());
        cmd.push(a.clone());
    }
    let mut rest: Vec<String> = vec![];
    if let Some((first, more)) = s.entrypoint.split_first() {
        cmd.push("--entrypoint".into());
        cmd.push(first.clone());
        rest.extend(more.iter().cloned());
    }
    cmd.push(s.image.clone());
    cmd.extend(rest);
    cmd.extend(s.command.iter().cloned());
    cmd
}

/// The env file of a service: `KEY=value` lines (docker's format: no quoting, so
/// values with a newline cannot be passed and are dropped with a warning).
pub(crate) fn env_file(s: &Service) -> String {
    let mut out = String::new();
    for (k, v) in &s.env {
        if v.contains('\n') {
            tracing::warn!(
                "service {}: variable {k} has a newline; not passed",
                s.image
            );
            continue;
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// Runs `cmd` in the builder as the job user, in the daemons' namespace.
async fn exec(engine: &Engine, builder: &str, cmd: Vec<String>) -> Result<(i64, String)> {
    engine.exec_capture(builder, user_cmd(cmd)).await
}

/// Starts every non-dind service of the job in `builder`.
pub(crate) async fn start(
    engine: &Engine,
    builder: &str,
    services: &[Service],
    rootless: bool,
    policy: PullPolicy,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    for s in services.iter().filter(|s| s.dind) {
        tracing::info!(
            "service {}: the builder is a Docker daemon already; {} reach it (DOCKER_HOST=tcp://docker:2375)",
            s.image,
            s.aliases.join(", ")
        );
    }
    let started: Vec<(usize, &Service)> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.dind)
        .collect();
    if started.is_empty() {
        return Ok(());
    }
    let env_files: Vec<(String, Vec<u8>, u32)> = started
        .iter()
        .map(|(i, s)| {
            (
                format!(".runnerx/service-{i}.env"),
                env_file(s).into_bytes(),
                0o600,
            )
        })
        .collect();
    engine
        .upload(builder, home_tar(job_home(rootless), &env_files))
        .await?;
    let (home, _) = job_home(rootless);
    let (code, out) = exec(
        engine,
        builder,
        strings(&["docker", "network", "create", NETWORK]),
    )
    .await?;
    if code != 0 && !out.contains("already exists") {
        return Err(Error::Service(format!(
            "cannot create the services' network in the builder: {}; see the builder's dockerd log (`docker logs {builder}`)",
            out.trim()
        )));
    }
    for (i, s) in &started {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled("signal"));
        }
        ensure_image(engine, builder, &s.image, policy).await?;
        let env_path = format!("{home}/.runnerx/service-{i}.env");
        let (code, out) = exec(engine, builder, run_cmd(*i, s, &env_path)).await?;
        if code != 0 {
            return Err(Error::Service(format!(
                "service {} did not start: {}; check its entrypoint and command in services:",
                s.image,
                out.trim()
            )));
        }
        let name = container_name(*i);
        // One inspect: the address, then the exposed ports (`8080/tcp 53/udp`).
        let (_, seen) = exec(
            engine,
            builder,
            strings(&[
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}} {{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}",
                &name,
            ]),
        )
        .await?;
        let mut words = seen.split_whitespace();
        let ip = words
            .next()
            .filter(|w| !w.contains('/'))
            .unwrap_or("")
            .to_string();
        let tcp: Vec<String> = seen
            .split_whitespace()
            .filter_map(|p| p.strip_suffix("/tcp"))
            .map(String::from)
            .collect();
        if !ip.is_empty() {
            let line = format!("{ip} {}", s.aliases.join(" "));
            let (code, out) = exec(
                engine,
                builder,
                strings(&["sh", "-c", "echo \"$1\" >> /etc/hosts", "sh", &line]),
            )
            .await?;
            if code != 0 {
                tracing::warn!(
                    "service {}: cannot add its aliases: {}",
                    s.image,
                    out.trim()
                );
            }
        }
        wait(engine, builder, s, &name, &ip, &tcp, timeout).await?;
    }
    Ok(())
}

/// Pulls `image` in the builder as the builder's pull policy says.
async fn ensure_image(
    engine: &Engine,
    builder: &str,
    image: &str,
    policy: PullPolicy,
) -> Result<()> {
    let (present, _) = exec(
        engine,
        builder,
        strings(&["docker", "image", "inspect", image]),
    )
    .await?;
    let Some(pull) = policy.wants_pull(present == 0) else {
        return Err(Error::Service(format!(
            "service image {image} is not in the builder and builder.pull_policy is \"never\"; use pull_policy = \"if-not-present\""
        )));
    };
    if !pull {
        return Ok(());
    }
    tracing::info!("pulling service image {image}");
    let (code, out) = exec(engine, builder, strings(&["docker", "pull", "-q", image])).await?;
    if code != 0 {
        let last = super::last_line(&out);
        return Err(Error::Service(format!(
            "cannot pull service image {image} ({last}); check the name, the registry's [[registries]] entry (CA, credentials), or mirror the image"
        )));
    }
    Ok(())
}

/// Waits until every exposed TCP port of the service answers; on timeout, warns the
/// way gitlab-runner does, with the service's log.
async fn wait(
    engine: &Engine,
    builder: &str,
    s: &Service,
    name: &str,
    ip: &str,
    tcp: &[String],
    timeout: Duration,
) -> Result<()> {
    if tcp.is_empty() || ip.is_empty() {
        return Ok(());
    }
    let polls = (timeout.as_millis() / 500).max(1);
    let script = format!(
        "for _ in $(seq 1 {polls}); do ok=1; for p in {}; do (exec 3<>\"/dev/tcp/{ip}/$p\") 2>/dev/null || ok=0; done; [ $ok = 1 ] && exit 0; sleep 0.5; done; exit 1",
        tcp.join(" ")
    );
    let (code, _) = exec(engine, builder, strings(&["bash", "-c", &script])).await?;
    if code == 0 {
        tracing::info!(
            "service {} ready ({} answering port {})",
            s.image,
            s.aliases.join(", "),
            tcp.join(", ")
        );
        return Ok(());
    }
    let (_, logs) = exec(
        engine,
        builder,
        strings(&["docker", "logs", "--tail", "30", name]),
    )
    .await?;
    tracing::warn!(
        "*** WARNING: Service {} ({name}) probably didn't start properly: port {} did not answer within {}s",
        s.image,
        tcp.join(", "),
        timeout.as_secs()
    );
    tracing::warn!("Service container logs:");
    for line in logs.lines() {
        tracing::warn!("  {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_puts_entrypoint_args_before_the_command_and_no_values_in_argv() {
        let s = Service {
            image: "postgres:16".into(),
            aliases: vec!["postgres".into(), "db".into()],
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            command: vec!["exec postgres".into()],
            env: vec![("POSTGRES_PASSWORD".into(), "s3cret".into())],
            dind: false,
        };
        let cmd = run_cmd(0, &s, "/home/rootless/.runnerx/service-0.env");
        assert_eq!(
            cmd.join(" "),
            "docker run -d --name runnerx-service-0 --network runnerx-services --env-file /home/rootless/.runnerx/service-0.env --network-alias postgres --network-alias db --entrypoint /bin/sh postgres:16 -c exec postgres"
        );
        assert!(!cmd.iter().any(|a| a.contains("s3cret")));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("POSTGRES_PASSWORD"),
            "{shown}"
        );
        assert_eq!(env_file(&s), "POSTGRES_PASSWORD=s3cret\n");
    }
}
