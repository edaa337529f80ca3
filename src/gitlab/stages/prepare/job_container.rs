//! prepare's last step for a job with its own `image:`: pull it with the builder's
//! daemon and the project's login (GitLab's pull policies, in order), then create its
//! container there (`builder::job_image` has the spec). A pull failure is the job's.

use tokio_util::sync::CancellationToken;

use crate::builder;
use crate::builder::engine::Engine;
use crate::builder::job_image::{self, JobImage};
use crate::error::{Error, Result};
use crate::settings::Proxy;

use super::Steps;

/// The builder the job container is made in.
pub(super) struct Builder<'a> {
    pub engine: &'a Engine,
    pub name: &'a str,
    pub job_id: &'a str,
    pub rootless: bool,
    pub proxy: &'a Proxy,
}

pub(super) async fn start(
    b: &Builder<'_>,
    image: &JobImage,
    steps: &mut Steps,
    cancel: &CancellationToken,
) -> Result<()> {
    let (engine, name) = (b.engine, b.name);
    let mut answer = String::new();
    let mut pulled = false;
    for policy in job_image::pull_order(&image.pull_policy) {
        let pull = builder::user_cmd(job_image::pull_cmd(image, policy));
        let (code, out) = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
            r = engine.exec_capture(name, pull) => r?,
        };
        if code == 0 {
            pulled = true;
            break;
        }
        answer = format!("{} ({})", builder::last_line(&out), policy.as_str());
    }
    if !pulled {
        return Err(Error::JobImage(format!(
            "{} could not be pulled: {answer}; check the name and the project's registry login, or the job's pull_policy",
            image.name
        )));
    }
    steps.done(&format!("job image {} ready", image.name));
    let paths = job_image::DaemonPaths::of(b.rootless);
    let env = job_image::env_file(&paths, &b.proxy.variables());
    let marker = format!("{}\n", job_image::JOB_CONTAINER);
    // Tar entries are relative to the builder's root.
    let rel = |p: &'static str| p.trim_start_matches('/');
    let files = [
        (rel(job_image::JOB_CONTAINER_ENV), env.as_bytes(), 0o644),
        (rel(job_image::JOB_CONTAINER_FILE), marker.as_bytes(), 0o644),
    ];
    engine
        .upload(name, builder::tar_owned(&files, None))
        .await?;
    let create = job_image::create_cmd(image, b.job_id, &paths);
    let (code, out) = engine.exec_capture(name, builder::user_cmd(create)).await?;
    if code != 0 {
        return Err(Error::JobImage(format!(
            "{}: its container could not be created: {}",
            image.name,
            builder::last_line(&out)
        )));
    }
    steps.done(&format!("job container of {} created", image.name));
    tracing::info!(
        "in the job image, `docker` is the image's own CLI on the builder's daemon (DOCKER_HOST): runnerx's build report, registry build cache and push signing apply where the script runs in the builder"
    );
    Ok(())
}
