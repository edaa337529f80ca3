//! A builder's lifecycle on the engine: pull its image, create and start it (with the
//! rights its isolation asks for), wait until its inner dockerd answers, and tear a
//! job's builder down. The one place that creates or removes a builder container.
//!
//! Shared by prepare (a leftover builder from an earlier attempt), cleanup and gc, so
//! none of the stages imports another. Every removal is idempotent and label-scoped:
//! only objects carrying `runnerx.job=<id>` for the exact id are touched. A builder is
//! stopped with SIGTERM first so its boot script stops dockerd (and, privileged,
//! deletes its host bridge); if a bridge survives (the builder was killed), a
//! short-lived helper container deletes it. A failed start leaves no container behind.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{ContainerCreateBody, HostConfig};

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::builder::engine::Engine;
use crate::builder::{self, BuilderSpec, LABEL_BRIDGE, LABEL_JOB, Rights};
use crate::error::{Error, Result};
use crate::settings::{Privileged, PullPolicy, Settings};

/// What the builders on this host hold, from one container listing (taken under the
/// host lock): the cache volumes they mount.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Cache volumes mounted by any builder.
    pub caches: BTreeSet<String>,
}

impl Held {
    /// Lists the builders.
    pub(crate) async fn list(engine: &Engine) -> Result<Held> {
        let mut held = Held::default();
        for c in engine.containers_with_label(LABEL_JOB).await? {
            let labels = c.labels.unwrap_or_default();
            for key in [builder::LABEL_CACHE, builder::LABEL_CACHE_DIR] {
                if let Some(v) = labels.get(key) {
                    held.caches.insert(v.clone());
                }
            }
        }
        Ok(held)
    }
}

/// Whether a network interface exists in our (the host's) namespace.
pub(crate) fn bridge_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Removes the containers, volumes and bridges of one job. `fallback_image` runs the
/// bridge helper when the builder's own image is unknown.
pub(crate) async fn teardown_job(
    engine: &Engine,
    job_id: &str,
    fallback_image: &str,
) -> Result<()> {
    teardown_job_caches(engine, job_id, fallback_image, &mut vec![]).await
}

/// [`teardown_job`], also naming in `caches` the cache volumes the job's builders
/// mounted (from the one container listing), so cleanup can record their use.
pub(crate) async fn teardown_job_caches(
    engine: &Engine,
    job_id: &str,
    fallback_image: &str,
    caches: &mut Vec<String>,
) -> Result<()> {
    let label = format!("{LABEL_JOB}={job_id}");
    let mut first_error: Option<Error> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!("{e}");
            first_error.get_or_insert(e);
        }
    };
    let containers = engine.containers_with_label(&label).await?;
    let mut removed = (0, 0, 0);
    for c in &containers {
        let id = c.id.clone().unwrap_or_default();
        let labels = c.labels.clone().unwrap_or_default();
        for key in [builder::LABEL_CACHE, builder::LABEL_CACHE_DIR] {
            caches.extend(labels.get(key).cloned());
        }
        if c.state.as_ref().is_some_and(|s| s.to_string() == "running") {
            note(engine.stop(&id, builder::STOP_TIMEOUT_SECS as i32).await);
        }
        note(engine.remove_container(&id).await);
        removed.0 += 1;
        if let Some(bridge) = labels.get(LABEL_BRIDGE) {
            let image = c
                .image_id
                .clone()
                .unwrap_or_else(|| fallback_image.to_string());
            match delete_bridge(engine, job_id, bridge, &image).await {
                Ok(true) => removed.2 += 1,
                Ok(false) => {}
                Err(e) => note(Err(e)),
            }
        }
    }
    for v in engine.volumes_with_label(&label).await? {
        note(engine.remove_volume(&v.name).await);
        removed.1 += 1;
    }
    tracing::info!(
        "cleanup of job {job_id}: removed {} container(s), {} volume(s){}",
        removed.0,
        removed.1,
        if removed.2 > 0 {
            ", 1 leftover bridge"
        } else {
            ""
        }
    );
    first_error.map_or(Ok(()), Err)
}

/// Deletes a host bridge left by a builder that could not run its teardown. Returns
/// whether there was one.
pub(crate) async fn delete_bridge(
    engine: &Engine,
    job_id: &str,
    bridge: &str,
    image: &str,
) -> Result<bool> {
    if !bridge_exists(bridge) {
        return Ok(false);
    }
    tracing::info!("deleting leftover bridge {bridge}");
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(vec!["ip".into()]),
        cmd: Some(vec!["link".into(), "del".into(), bridge.into()]),
        labels: Some(HashMap::from([(LABEL_JOB.to_string(), job_id.to_string())])),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            cap_add: Some(vec!["NET_ADMIN".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let code = engine
        .run_oneshot(&format!("runnerx-{job_id}-netclean"), body)
        .await?;
    if code != 0 && bridge_exists(bridge) {
        return Err(Error::Teardown(format!(
            "cannot delete bridge {bridge} (helper exited {code}); delete it by hand: ip link del {bridge}"
        )));
    }
    Ok(true)
}

pub(crate) async fn ensure_image(
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
    cancel: &CancellationToken,
) -> Result<()> {
    let present = engine.image_exists(image).await?;
    let Some(pull) = policy.wants_pull(present) else {
        return Err(Error::BuilderImage(format!(
            "builder image {image} is not present and builder.pull_policy is \"never\"; \
             load it into the engine (docker/build-builder-image.sh builds one) or set pull_policy = \"if-not-present\""
        )));
    };
    if !pull {
        return Ok(());
    }
    tracing::info!("pulling {image}");
    let pulling = engine.pull(image, Duration::from_secs(3), |line| {
        tracing::info!("{line}")
    });
    tokio::select! {
        () = cancel.cancelled() => Err(Error::Cancelled("signal")),
        r = pulling => r.map_err(|e| match e {
            Error::Docker { source, .. } => Error::BuilderImage(format!(
                "cannot pull builder image {image}: {source}; check the name, the registry's reachability and credentials, or build it on this host: docker build -t runnerx-builder docker/ (runnerx's Dockerfile)"
            )),
            other => other,
        }),
    }
}

pub(crate) async fn create_and_start(
    engine: &Engine,
    spec: &BuilderSpec,
    rights: Rights,
) -> Result<()> {
    engine
        .create_container(&spec.name, builder::container_body(spec, rights))
        .await?;
    engine
        .upload(&spec.name, builder::bundle(spec, rights))
        .await?;
    engine
        .start(&spec.name)
        .await
        .map_err(|e| Error::docker(format!("start builder {}", spec.name), e))
}

/// Where `auto` remembers that an engine refuses privileged builders, so later
/// prepares skip the failing attempt (keyed by engine id; next to the host lock).
pub(crate) fn refusal_marker(settings: &Settings) -> std::path::PathBuf {
    let lock = &settings.builder.lock_file;
    lock.with_file_name(format!(
        "{}.privileged-refused",
        lock.file_name()
            .map_or_else(|| "runnerx".into(), |n| n.to_string_lossy().to_string())
    ))
}

/// Creates, fills and starts the builder with `wanted` rights (rootless, or
/// privileged: then `builder.privileged` decides, and `auto` falls back to explicit
/// capabilities when the engine refuses `--privileged`). A failed start leaves no
/// container behind.
pub(crate) async fn start_builder(
    engine: &Engine,
    spec: &BuilderSpec,
    settings: &Settings,
    engine_id: &str,
    wanted: Rights,
) -> Result<Rights> {
    let mode = settings.builder.privileged;
    let marker = refusal_marker(settings);
    let known_refused = mode == Privileged::Auto
        && !engine_id.is_empty()
        && std::fs::read_to_string(&marker).is_ok_and(|id| id.trim() == engine_id);
    let first = match (wanted, mode) {
        (Rights::Rootless, _) => Rights::Rootless,
        (_, Privileged::Never) => Rights::Capabilities,
        (_, Privileged::Auto) if known_refused => Rights::Capabilities,
        (_, Privileged::Auto | Privileged::Always) => Rights::Privileged,
    };
    match create_and_start(engine, spec, first).await {
        Ok(()) => Ok(first),
        Err(e) if mode == Privileged::Auto && first == Rights::Privileged => {
            tracing::warn!(
                "the engine refused a privileged builder ({e}); retrying with explicit capabilities \
                 (remembered in {}; set builder.privileged = \"never\" to skip this attempt)",
                marker.display()
            );
            engine.remove_container(&spec.name).await?;
            create_and_start(engine, spec, Rights::Capabilities).await?;
            if !engine_id.is_empty() {
                let _ = std::fs::write(&marker, engine_id);
            }
            Ok(Rights::Capabilities)
        }
        Err(e) => {
            let _ = engine.remove_container(&spec.name).await;
            Err(match (mode, e) {
                (Privileged::Always, Error::Docker { source, .. }) => Error::Isolation(format!(
                    "the engine refused a privileged builder: {source}; set builder.privileged = \"auto\" to fall back to explicit capabilities"
                )),
                (_, e) => e,
            })
        }
    }
}

pub(crate) async fn dockerd_answers(engine: &Engine, name: &str, secs: u64) -> bool {
    matches!(
        engine
            .exec_capture(name, builder::wait_ready_cmd(secs))
            .await,
        Ok((0, _))
    )
}

/// The boot script's refusal of a builder image that breaks the image contract
/// (`runnerx: the builder image …`, naming what it lacks and the fix), if it gave one.
fn boot_refusal(log_tail: &str) -> Option<&str> {
    log_tail.lines().find_map(|l| {
        let l = l.trim();
        l.starts_with("runnerx: the builder image")
            .then(|| &l["runnerx: ".len()..])
    })
}

pub(crate) async fn wait_ready(
    engine: &Engine,
    name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // Each exec polls inside the builder for up to 2 s; between them we check the
        // container is alive and honour cancellation.
        let polled = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
            r = engine.exec_capture(name, builder::wait_ready_cmd(2)) => r,
        };
        if matches!(polled, Ok((0, _))) {
            return Ok(());
        }
        let alive = engine.running(name).await? == Some(true);
        if !alive || Instant::now() >= deadline {
            let tail = engine.logs_tail(name, 25).await;
            for line in tail.lines() {
                tracing::error!("  dockerd: {line}");
            }
            return Err(Error::BuilderBoot(if alive {
                format!(
                    "inner dockerd of {name} did not answer within {}s (log tail above); raise builder.boot_timeout or check the builder image",
                    timeout.as_secs()
                )
            } else {
                match boot_refusal(&tail) {
                    Some(why) => format!("builder {name} did not boot: {why}"),
                    None => format!(
                        "builder {name} exited while booting (log tail above); check the builder image (docker/Dockerfile) and builder.isolation"
                    ),
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::boot_refusal;

    #[test]
    fn a_boot_refusal_is_the_image_contract_line_of_the_log() {
        let tail = "runnerx: this kernel has no binfmt_misc per user namespace; using the host's handlers\n\
                    runnerx: the builder image's user rootless has primary group 1000, not runnerx-net (gid 65530), which …\n";
        assert_eq!(
            boot_refusal(tail),
            Some(
                "the builder image's user rootless has primary group 1000, not runnerx-net (gid 65530), which …"
            )
        );
        assert_eq!(
            boot_refusal("runnerx: rootlesskit (and the inner dockerd) exited\n"),
            None
        );
    }
}
