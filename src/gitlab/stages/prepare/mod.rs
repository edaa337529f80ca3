//! `prepare`: create the job's builder and wait until its inner dockerd answers.
//!
//! [`prepare`] is a list of named steps, each logged with its duration: check the
//! host (isolation, AppArmor profile, egress policy), reuse or remove a builder left
//! by an earlier attempt (gitlab-runner retries prepare up to 3 times), check
//! emulation and disk, pull the builder image, describe the builder (pure data),
//! start it (volumes, create, upload, start), wait for its inner dockerd, tidy a warm
//! cache, set up platforms, start services, set up buildx.
//!
//! Builders touch nothing shared on the host network (rootless or privileged, their
//! daemons run in a network namespace of their own), so prepares run in parallel; the
//! host lock is held only while a project cache slot is chosen ([`volumes`]). Nothing
//! is made before the host checks pass. A boot failure is a system failure with the
//! tail of the dockerd log; a cancelled prepare removes its builder.

mod job_container;
mod platforms;
mod volumes;

use std::path::Path;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::builder::buildx;
use crate::builder::engine::{Engine, EngineInfo};
use crate::builder::job_image::JobImage;
use crate::builder::lifecycle::{self, Held};
use crate::builder::services::Service;
use crate::builder::{self, BuilderSpec, DataRoot, InnerNet, Rights};
use crate::buildkit;
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::host;
use crate::host::binfmt;
use crate::logging::human;
use crate::settings::{
    BinfmtMode, Driver, Egress, Isolation, Limits, Platform, PublishPorts, Settings,
};

/// Logs each step with its duration.
struct Steps {
    start: Instant,
    last: Instant,
}

impl Steps {
    fn new() -> Self {
        let now = Instant::now();
        Steps {
            start: now,
            last: now,
        }
    }

    pub(super) fn done(&mut self, what: &str) {
        tracing::info!("{what} ({})", human(self.last.elapsed()));
        self.last = Instant::now();
    }
}

/// Runs the prepare stage: the steps below, in order.
pub(crate) async fn prepare(
    settings: &Settings,
    job: &Job,
    engine: &Engine,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut p = Preparation::check_host(settings, job, engine).await?;
    if p.reuse_or_remove_leftover().await? == Flow::Done {
        return Ok(());
    }
    p.check_emulation_and_disk(cancel).await?;
    p.pull_builder_image(cancel).await?;
    let spec = p.describe_builder();
    let spec = p.start_builder(spec, cancel).await?;
    p.wait_ready(cancel).await?;
    p.tidy_warm_cache(&spec).await?;
    p.setup_platforms(cancel).await?;
    p.start_services(cancel).await?;
    p.setup_buildx(cancel).await?;
    p.start_job_container(cancel).await?;
    p.finish();
    Ok(())
}

#[derive(PartialEq)]
enum Flow {
    Continue,
    /// A ready builder from an earlier attempt is kept.
    Done,
}

/// What prepare's steps share: the job, the host's facts, and what earlier steps chose.
struct Preparation<'a> {
    settings: &'a Settings,
    job: &'a Job,
    engine: &'a Engine,
    steps: Steps,
    name: String,
    image: String,
    info: EngineInfo,
    wanted: Rights,
    /// The AppArmor `--security-opt` for the builder.
    apparmor: String,
    /// The QEMU handlers the job's platforms need on this machine.
    needed: Vec<&'static str>,
    /// They are registered in the builder's own user namespace (rootless, Linux ≥ 6.7).
    in_builder: bool,
    services: Vec<Service>,
    /// The job's image, when its script runs in a container of it.
    job_image: Option<JobImage>,
}

impl<'a> Preparation<'a> {
    fn rootless(&self) -> bool {
        self.wanted == Rights::Rootless
    }

    /// Before anything is made: the isolation the host allows, runnerx's AppArmor
    /// profile where the host enforces AppArmor, and (unless the operator opted out
    /// with `network.egress = "open"`) the egress policy made for these settings.
    async fn check_host(
        settings: &'a Settings,
        job: &'a Job,
        engine: &'a Engine,
    ) -> Result<Preparation<'a>> {
        let steps = Steps::new();
        let b = &settings.builder;
        let name = job.builder_name();
        let placement = job.placement(b);
        let image = placement.builder_image;
        let info = engine.info().await?;
        let facts = host::facts(Path::new("/proc"));
        let wanted = choose_isolation(b.isolation, &facts)?;
        let apparmor = host::apparmor::security_opt(&host::apparmor::host_state(info.apparmor))?;
        host::network::install::check(settings)?;
        if settings.network.egress == Egress::Open {
            tracing::warn!(
                "network.egress = \"open\" on this runner: this job can reach the runner host's own addresses and link-local ones such as a cloud metadata service (the operator opted out of runnerx's egress policy)"
            );
        }
        tracing::info!(
            "preparing builder {name} from {image} (engine {}, {} isolation)",
            info.version,
            wanted.isolation()
        );
        tracing::debug!("job id {} taken from {:?}", job.id, job.id_source);
        let needed = binfmt::needed(&b.platforms, &info.arch);
        // Handlers are registered in the builder only where that changes nothing on
        // the host: a rootless builder's own user namespace on Linux ≥ 6.7. A
        // privileged builder shares the host's user namespace (its registrations would
        // outlive it in the host's table), and older kernels have one table: both use
        // the host's handlers (`runnerx host binfmt`).
        let in_builder = wanted == Rights::Rootless && facts.binfmt_per_userns;
        // DinD services are the builder itself: by GitLab's naming rule, or the operator's.
        let services = crate::gitlab::services::with_dind_images(&job.services, &b.dind_images);
        Ok(Preparation {
            settings,
            job,
            engine,
            steps,
            name,
            image,
            info,
            wanted,
            apparmor,
            needed,
            in_builder,
            services,
            job_image: placement.job_image,
        })
    }

    /// gitlab-runner retries prepare up to 3 times: a ready builder from an earlier
    /// attempt is kept, an unusable one removed.
    async fn reuse_or_remove_leftover(&mut self) -> Result<Flow> {
        let name = &self.name;
        let Some(running) = self.engine.running(name).await? else {
            return Ok(Flow::Continue);
        };
        // A job image's container is made last: a builder left by a failed attempt
        // may lack it, so such a job's builder is made afresh.
        if running
            && self.job_image.is_none()
            && lifecycle::dockerd_answers(self.engine, name, 1).await
        {
            tracing::info!(
                "builder {name} from an earlier attempt is running and ready; reusing it"
            );
            self.finish();
            return Ok(Flow::Done);
        }
        tracing::info!("removing the unusable builder {name} left by an earlier attempt");
        lifecycle::teardown_job(self.engine, &self.job.id, &self.settings.builder.image).await?;
        self.steps.done("removed leftover builder");
        Ok(Flow::Continue)
    }

    /// Before anything is made: the host's QEMU handlers where the builder uses them,
    /// and room on the disk, or one clear failure.
    async fn check_emulation_and_disk(&mut self, cancel: &CancellationToken) -> Result<()> {
        if !self.in_builder {
            platforms::check_host_handlers(self.settings, &self.needed, self.rootless())?;
        }
        builder::caches::ensure_free(self.engine, self.settings, &self.info.root_dir, cancel).await
    }

    async fn pull_builder_image(&mut self, cancel: &CancellationToken) -> Result<()> {
        let pull = self.settings.builder.pull_policy;
        lifecycle::ensure_image(self.engine, &self.image, pull, cancel).await?;
        self.steps.done(&format!("image {} ready", self.image));
        Ok(())
    }

    /// The builder as data: what it mounts, trusts, logs in to and registers.
    fn describe_builder(&self) -> BuilderSpec {
        let (settings, job, b) = (self.settings, self.job, &self.settings.builder);
        let register_at_boot = self.in_builder
            && matches!(settings.binfmt.mode, BinfmtMode::Auto | BinfmtMode::Builtin);
        let registries = registries_for(settings, job);
        let build_cache = builder::build_cache::for_job(
            &registries,
            job.project.as_deref(),
            job.git_ref.as_deref(),
            job.default_branch.as_deref(),
        );
        if let Some(c) = &build_cache {
            tracing::info!(
                "registry build cache for project {}: {} (ref {})",
                c.project,
                c.repository,
                c.ref_slug
            );
        }
        BuilderSpec {
            job_id: job.id.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            host_loopback: b.host_loopback,
            publish_on_host: b.publish_ports == PublishPorts::All,
            build_cache,
            extra_hosts: b.extra_hosts.clone(),
            created: host::unix_now(),
            registries,
            proxy: settings.proxy.clone(),
            binfmt: if register_at_boot {
                self.needed.iter().map(|s| (*s).to_string()).collect()
            } else {
                vec![]
            },
            data_root: DataRoot::Job(String::new()),
            inner_net: InnerNet::of(b.subnet_pool),
            limits: Limits {
                // Docker refuses a CPU limit above the host's count.
                cpus: b.limits.cpus.map(|c| c.min(self.info.ncpu.max(1) as f64)),
                ..b.limits
            },
            lease: host::parent_lease(),
            helper: helper(settings, job),
            // The binary running now: a job's `runnerx manifest` is this very version.
            runnerx: std::env::current_exe()
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            cache_dir: None,
            dind_aliases: self
                .services
                .iter()
                .filter(|s| s.dind)
                .flat_map(|s| s.aliases.iter().cloned())
                .collect(),
            platforms: b.platforms.iter().map(ToString::to_string).collect(),
            gc_keep_storage: volumes::gc_keep_storage(settings, &self.info.root_dir),
            apparmor: self.apparmor.clone(),
        }
    }

    /// Volumes, then create and start. Builders share nothing on the host network
    /// (their daemons have their own namespace): no lock, except while a project cache
    /// slot is chosen and claimed (the container's label claims it).
    async fn start_builder(
        &mut self,
        mut spec: BuilderSpec,
        cancel: &CancellationToken,
    ) -> Result<BuilderSpec> {
        let (settings, job, engine) = (self.settings, self.job, self.engine);
        let lock = if volumes::uses_cache(settings, job) {
            Some(volumes::take_lock(settings, cancel).await?)
        } else {
            None
        };
        let held = match &lock {
            Some(_) => Held::list(engine).await?,
            None => Held::default(),
        };
        let id_map = self.wanted.id_map();
        spec.data_root =
            volumes::choose_volume(settings, job, engine, &held, spec.created, id_map).await?;
        spec.cache_dir = volumes::cache_dir(job, engine, spec.created, id_map).await?;
        for volume in [
            Some(spec.data_root.name())
                .filter(|_| matches!(spec.data_root, DataRoot::Cache { .. })),
            spec.cache_dir.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            crate::host::cache_use::touch(&settings.cache.state_dir, volume, None);
        }
        // The lock is held until the container exists: its label claims the cache.
        let rights =
            lifecycle::start_builder(engine, &spec, settings, &self.info.id, self.wanted).await?;
        drop(lock);
        self.steps.done(&format!(
            "started {} ({})",
            self.name,
            match rights {
                Rights::Rootless => "rootless",
                Rights::Privileged => "privileged",
                Rights::Capabilities => "privileged, explicit capabilities",
            }
        ));
        Ok(spec)
    }

    async fn wait_ready(&mut self, cancel: &CancellationToken) -> Result<()> {
        let b = &self.settings.builder;
        let started = lifecycle::wait_ready(self.engine, &self.name, b.boot_timeout, cancel).await;
        if let Err(e) = started {
            // Never leave a builder booting unattended (a cancelled or failed prepare).
            if matches!(e, Error::Cancelled(_)) {
                let _ = lifecycle::teardown_job(self.engine, &self.job.id, &b.image).await;
            }
            return Err(e);
        }
        self.steps.done("inner dockerd ready");
        Ok(())
    }

    /// A warm cache keeps images and build cache; the last job's containers go (its
    /// networks are already gone: the boot script drops the network store).
    async fn tidy_warm_cache(&mut self, spec: &BuilderSpec) -> Result<()> {
        let DataRoot::Cache {
            name: volume,
            warm: true,
        } = &spec.data_root
        else {
            return Ok(());
        };
        let prune = ["docker", "container", "prune", "-f"].map(String::from);
        let (code, out) = self
            .engine
            .exec_capture(&self.name, builder::user_cmd(prune.to_vec()))
            .await?;
        if code != 0 {
            tracing::warn!("could not tidy the warm cache: {}", out.trim());
        }
        self.steps.done(&format!("warm cache {volume} tidied"));
        Ok(())
    }

    async fn setup_platforms(&mut self, cancel: &CancellationToken) -> Result<()> {
        if self.in_builder {
            let native = self.info.arch.as_str();
            platforms::setup_platforms(
                self.settings,
                self.engine,
                &self.name,
                native,
                &self.needed,
                cancel,
            )
            .await?;
        }
        self.steps.done(&format!(
            "platforms {} ready",
            Platform::joined(&self.settings.builder.platforms, ",")
        ));
        Ok(())
    }

    async fn start_services(&mut self, cancel: &CancellationToken) -> Result<()> {
        if self.services.is_empty() {
            return Ok(());
        }
        let b = &self.settings.builder;
        builder::services::start(
            self.engine,
            &self.name,
            &self.services,
            self.rootless(),
            b.pull_policy,
            b.wait_for_services,
            cancel,
        )
        .await?;
        self.steps.done("services started");
        Ok(())
    }

    /// The job's buildx builder and where each platform builds. Nodes share their
    /// build cache between the jobs that use them: only the ones that serve this job's
    /// (trusted) project are used.
    async fn setup_buildx(&mut self, cancel: &CancellationToken) -> Result<()> {
        let (settings, engine, name) = (self.settings, self.engine, self.name.as_str());
        let b = &settings.builder;
        let native = self.info.arch.as_str();
        let who = self.job.identity();
        let nodes: Vec<crate::settings::Node> = settings
            .nodes
            .iter()
            .filter(|n| n.serves(&who))
            .cloned()
            .collect();
        for n in settings.nodes.iter().filter(|n| !n.serves(&who)) {
            tracing::info!(
                "node {} serves other projects; this job builds {} here",
                n.name,
                Platform::joined(&n.platforms, ", ")
            );
        }
        let placement = if nodes.is_empty() {
            if b.driver == Driver::DockerContainer {
                buildx::create_container_builder(settings, engine, name, cancel).await?;
                self.steps.done("buildx docker-container builder ready");
            }
            buildkit::placement(&b.platforms, native, &[])
        } else {
            let rootless = self.rootless();
            let (placement, placed) =
                buildx::setup_nodes(settings, &nodes, engine, name, native, rootless, cancel)
                    .await?;
            self.steps.done(&format!("buildx builder ready: {placed}"));
            placement
        };
        let file = [(buildx::PLACEMENT, placement.as_bytes(), 0o644)];
        engine.upload(name, builder::tar_owned(&file, None)).await?;
        Ok(())
    }

    /// The job's own image and its container, where the user's script runs.
    async fn start_job_container(&mut self, cancel: &CancellationToken) -> Result<()> {
        let Some(image) = self.job_image.clone() else {
            return Ok(());
        };
        let builder = job_container::Builder {
            engine: self.engine,
            name: &self.name,
            job_id: &self.job.id,
            rootless: self.rootless(),
            proxy: &self.settings.proxy,
        };
        job_container::start(&builder, &image, &mut self.steps, cancel).await
    }

    fn finish(&self) {
        let (job, name) = (self.job, &self.name);
        let total = human(self.steps.start.elapsed());
        if job.under_gitlab {
            tracing::info!("builder {name} ready in {total}");
            return;
        }
        // Manual use: the operator needs the id and what to do next (stdout, not a log).
        println!("builder {name} is ready in {total} (job id {})", job.id);
        if self.rootless() {
            println!(
                "  shell:   docker exec -it -u rootless -w /home/rootless {name} bash  (as jobs run)"
            );
        } else {
            println!("  shell:   docker exec -it {name} bash");
        }
        println!("  run:     runnerx run --job-id {} SCRIPT STAGE", job.id);
        println!("  remove:  runnerx cleanup --job-id {}", job.id);
    }
}

/// `Rights::Rootless` or `Rights::Privileged`, and why (logged): `auto` picks rootless
/// when the host allows unprivileged user namespaces.
fn choose_isolation(isolation: Isolation, facts: &host::Facts) -> Result<Rights> {
    match (isolation, &facts.userns) {
        (Isolation::Privileged, _) => Ok(Rights::Privileged),
        (Isolation::Rootless | Isolation::Auto, Ok(())) => Ok(Rights::Rootless),
        (Isolation::Auto, Err(why)) => {
            tracing::warn!(
                "builder.isolation = \"auto\": rootless builders are not possible here ({why}); using a privileged builder, which a job can use to reach the host"
            );
            Ok(Rights::Privileged)
        }
        (Isolation::Rootless, Err(why)) => Err(Error::Isolation(format!(
            "rootless builders need user namespaces: {why}; or set builder.isolation = \"privileged\" (jobs can then reach the host)"
        ))),
    }
}

/// The registries as this job's project gets them: per-project logins resolved, and
/// one line for each registry that has logins but none for this project.
fn registries_for(settings: &Settings, job: &Job) -> Vec<crate::settings::Registry> {
    let who = job.identity();
    settings
        .registries
        .iter()
        .map(|r| {
            let mine = r.for_project(&who);
            if !r.credential_rules.is_empty() && mine.credentials.is_none() {
                tracing::info!(
                    "registry {}: no [[registries.credentials]] entry is for project {} (id {}); this job gets its CA and mirrors, no login",
                    r.host,
                    who.path.as_deref().unwrap_or("(unknown)"),
                    who.id.as_deref().unwrap_or("unknown")
                );
            }
            mine
        })
        .collect()
}

/// The host's gitlab-runner binary for the job's artifacts and cache stages; without
/// one they print "Missing gitlab-runner" and skip, so say so once, with the fix.
fn helper(settings: &Settings, job: &Job) -> Option<String> {
    let found = host::find_helper(
        settings.builder.helper_binary.as_deref(),
        job.runner_path.as_deref(),
    );
    match found {
        Some((path, from)) => {
            tracing::debug!("gitlab-runner helper {} (from {from})", path.display());
            Some(path.to_string_lossy().into_owned())
        }
        // runnerx local moves artifacts itself.
        None if job.local_run => None,
        None => {
            tracing::warn!(
                "no gitlab-runner binary on this host (not the parent process, not on $PATH): artifacts and cache stages will be skipped; set builder.helper_binary"
            );
            None
        }
    }
}
