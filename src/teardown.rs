//! The host's builders as a whole: what they hold, and tearing one job's down.
//!
//! Shared by prepare (a leftover builder from an earlier attempt), cleanup and gc, so
//! none of the stages imports another. Every removal is idempotent and label-scoped:
//! only objects carrying `runnerx.job=<id>` for the exact id are touched. A builder is
//! stopped with SIGTERM first so its boot script stops dockerd (and, privileged,
//! deletes its host bridge); if a bridge survives (the builder was killed), a
//! short-lived helper container deletes it.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{ContainerCreateBody, HostConfig};

use crate::builder::{self, LABEL_BRIDGE, LABEL_JOB};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// What the builders on this host hold, from one container listing (taken under the
/// host lock): the cache volumes they mount.
#[derive(Debug, Default)]
pub struct Held {
    /// Cache volumes mounted by any builder.
    pub caches: BTreeSet<String>,
}

impl Held {
    /// Lists the builders.
    pub async fn list(engine: &Engine) -> Result<Held> {
        let mut held = Held::default();
        for c in engine.containers_with_label(LABEL_JOB).await? {
            let labels = c.labels.unwrap_or_default();
            if let Some(v) = labels.get(builder::LABEL_CACHE) {
                held.caches.insert(v.clone());
            }
        }
        Ok(held)
    }
}

/// Whether a network interface exists in our (the host's) namespace.
pub fn bridge_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Removes the containers, volumes and bridges of one job. `fallback_image` runs the
/// bridge helper when the builder's own image is unknown.
pub async fn teardown_job(engine: &Engine, job_id: &str, fallback_image: &str) -> Result<()> {
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
pub async fn delete_bridge(
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
        return Err(Error::Builder(format!(
            "cannot delete bridge {bridge} (helper exited {code}); delete it by hand: ip link del {bridge}"
        )));
    }
    Ok(true)
}
