//! `prepare`: create the job's builder and wait until its inner dockerd answers.
//!
//! Steps, each logged with its duration: isolation choice (rootless unless the host
//! forbids user namespaces or the settings say privileged), reuse check (gitlab-runner
//! retries prepare up to 3 times, so a ready builder from an earlier attempt is kept),
//! image per pull policy, `/var/lib/docker` volume, create, upload boot files, start,
//! wait for the inner dockerd, QEMU handlers.
//!
//! Builders touch nothing shared on the host network (rootless or privileged, their
//! daemons run in a network namespace of their own), so prepares run in parallel; the
//! host lock is held only while a project cache slot is chosen. A boot failure is a
//! system failure with the tail of the dockerd log; a cancelled prepare removes its
//! builder.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use std::path::Path;

use crate::builder::buildx;
use crate::builder::engine::Engine;
use crate::builder::lifecycle::{self, Held};
use crate::builder::{self, BuilderSpec, DataRoot, InnerNet, Rights};
use crate::buildkit;
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::host;
use crate::host::binfmt::{self, Handler};
use crate::host::lock::HostLock;
use crate::logging::human;
use crate::settings::{
    BinfmtMode, CacheMode, Driver, Egress, Isolation, Limits, Platform, PublishPorts, Settings,
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

    fn done(&mut self, what: &str) {
        tracing::info!("{what} ({})", human(self.last.elapsed()));
        self.last = Instant::now();
    }
}

/// Runs the prepare stage.
pub(crate) async fn prepare(
    settings: &Settings,
    job: &Job,
    engine: &Engine,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut steps = Steps::new();
    let b = &settings.builder;
    let name = job.builder_name();
    let (image, warning) = job.builder_image(b);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let info = engine.info().await?;
    let facts = host::facts(Path::new("/proc"));
    let wanted = choose_isolation(b.isolation, &facts)?;
    let rootless = wanted == Rights::Rootless;
    // Before anything is made: a host that enforces AppArmor needs runnerx's profile.
    let apparmor = host::apparmor::security_opt(&host::apparmor::host_state(info.apparmor))?;
    // ... and, unless the operator opted out (network.egress = "open"), the egress
    // policy made for these settings.
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

    if let Some(running) = engine.running(&name).await? {
        if running && lifecycle::dockerd_answers(engine, &name, 1).await {
            tracing::info!(
                "builder {name} from an earlier attempt is running and ready; reusing it"
            );
            finish(job, &name, &steps, rootless);
            return Ok(());
        }
        tracing::info!("removing the unusable builder {name} left by an earlier attempt");
        lifecycle::teardown_job(engine, &job.id, &b.image).await?;
        steps.done("removed leftover builder");
    }

    // Before anything is made: the host's QEMU handlers where the builder uses them,
    // room on the disk, or one clear failure.
    let native = info.arch.as_str();
    let needed = binfmt::needed(&b.platforms, native);
    // Handlers are registered in the builder only where that changes nothing on the
    // host: a rootless builder's own user namespace on Linux ≥ 6.7. A privileged
    // builder shares the host's user namespace (its registrations would outlive it
    // in the host's table), and older kernels have one table: both use the host's
    // handlers (`runnerx host binfmt`).
    let in_builder = rootless && facts.binfmt_per_userns;
    if !in_builder {
        check_host_handlers(settings, &needed, rootless)?;
    }
    builder::caches::ensure_free(engine, settings, &info.root_dir, cancel).await?;
    lifecycle::ensure_image(engine, &image, b.pull_policy, cancel).await?;
    steps.done(&format!("image {image} ready"));

    let created = host::unix_now();

    let register_at_boot =
        in_builder && matches!(settings.binfmt.mode, BinfmtMode::Auto | BinfmtMode::Builtin);
    let registries = registries_for(settings, job);
    // DinD services are the builder itself: by GitLab's naming rule, or the operator's.
    let services = crate::gitlab::services::with_dind_images(&job.services, &b.dind_images);
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
    let mut spec = BuilderSpec {
        job_id: job.id.clone(),
        name: name.clone(),
        image,
        host_loopback: b.host_loopback,
        publish_on_host: b.publish_ports == PublishPorts::All,
        build_cache,
        extra_hosts: b.extra_hosts.clone(),
        created,
        registries,
        proxy: settings.proxy.clone(),
        binfmt: if register_at_boot {
            needed.iter().map(|s| (*s).to_string()).collect()
        } else {
            vec![]
        },
        data_root: DataRoot::Job(String::new()),
        inner_net: InnerNet::of(b.subnet_pool),
        limits: Limits {
            // Docker refuses a CPU limit above the host's count.
            cpus: b.limits.cpus.map(|c| c.min(info.ncpu.max(1) as f64)),
            ..b.limits
        },
        lease: host::parent_lease(),
        helper: helper(settings, job),
        // The binary running now: a job's `runnerx manifest` is this very version.
        runnerx: std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        cache_dir: None,
        dind_aliases: services
            .iter()
            .filter(|s| s.dind)
            .flat_map(|s| s.aliases.iter().cloned())
            .collect(),
        platforms: b.platforms.iter().map(ToString::to_string).collect(),
        gc_keep_storage: gc_keep_storage(settings, &info.root_dir),
        apparmor,
    };

    // Builders share nothing on the host network (their daemons have their own
    // namespace): no lock, except while a project cache slot is chosen and claimed
    // (the container's label claims it).
    let lock = if uses_cache(settings, job) {
        Some(take_lock(settings, cancel).await?)
    } else {
        None
    };
    let held = match &lock {
        Some(_) => Held::list(engine).await?,
        None => Held::default(),
    };
    spec.data_root = choose_volume(settings, job, engine, &held, created, wanted.id_map()).await?;
    spec.cache_dir = cache_dir(job, engine, created, wanted.id_map()).await?;
    for volume in [
        Some(spec.data_root.name()).filter(|_| matches!(spec.data_root, DataRoot::Cache { .. })),
        spec.cache_dir.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        crate::host::cache_use::touch(&settings.cache.state_dir, volume, None);
    }
    // The lock is held until the container exists: its label claims the cache.
    let rights = lifecycle::start_builder(engine, &spec, settings, &info.id, wanted).await?;
    drop(lock);
    steps.done(&format!(
        "started {name} ({})",
        match rights {
            Rights::Rootless => "rootless",
            Rights::Privileged => "privileged",
            Rights::Capabilities => "privileged, explicit capabilities",
        }
    ));
    let started = lifecycle::wait_ready(engine, &name, b.boot_timeout, cancel).await;
    if let Err(e) = started {
        // Never leave a builder booting unattended (a cancelled or failed prepare).
        if matches!(e, Error::Cancelled(_)) {
            let _ = lifecycle::teardown_job(engine, &job.id, &b.image).await;
        }
        return Err(e);
    }
    steps.done("inner dockerd ready");
    if let DataRoot::Cache {
        name: volume,
        warm: true,
    } = &spec.data_root
    {
        // Keep images and build cache; drop the last job's containers (its networks
        // are already gone: the boot script drops the network store).
        let (code, out) = engine
            .exec_capture(
                &name,
                builder::user_cmd(
                    ["docker", "container", "prune", "-f"]
                        .map(String::from)
                        .to_vec(),
                ),
            )
            .await?;
        if code != 0 {
            tracing::warn!("could not tidy the warm cache: {}", out.trim());
        }
        steps.done(&format!("warm cache {volume} tidied"));
    }
    if in_builder {
        setup_platforms(settings, engine, &name, native, &needed, cancel).await?;
    }
    steps.done(&format!(
        "platforms {} ready",
        Platform::joined(&b.platforms, ",")
    ));
    if !services.is_empty() {
        builder::services::start(
            engine,
            &name,
            &services,
            rootless,
            b.pull_policy,
            b.wait_for_services,
            cancel,
        )
        .await?;
        steps.done("services started");
    }
    // Nodes share their build cache between the jobs that use them: only the ones
    // that serve this job's (trusted) project are used.
    let who = job.identity();
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
            buildx::create_container_builder(settings, engine, &name, cancel).await?;
            steps.done("buildx docker-container builder ready");
        }
        buildkit::placement(&b.platforms, native, &[])
    } else {
        let (placement, placed) =
            buildx::setup_nodes(settings, &nodes, engine, &name, native, rootless, cancel).await?;
        steps.done(&format!("buildx builder ready: {placed}"));
        placement
    };
    engine
        .upload(
            &name,
            builder::tar_owned(&[(buildx::PLACEMENT, placement.as_bytes(), 0o644)], None),
        )
        .await?;
    finish(job, &name, &steps, rootless);
    Ok(())
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

fn uses_cache(settings: &Settings, job: &Job) -> bool {
    settings.cache.mode == CacheMode::PerProject && job.project.is_some()
}

async fn take_lock(settings: &Settings, cancel: &CancellationToken) -> Result<HostLock> {
    let b = &settings.builder;
    HostLock::acquire(
        &b.lock_file,
        b.boot_timeout * 3 + Duration::from_secs(30),
        cancel,
    )
    .await
}

fn finish(job: &Job, name: &str, steps: &Steps, rootless: bool) {
    let total = human(steps.start.elapsed());
    if job.under_gitlab {
        tracing::info!("builder {name} ready in {total}");
        return;
    }
    // Manual use: the operator needs the id and what to do next (stdout, not a log).
    println!("builder {name} is ready in {total} (job id {})", job.id);
    if rootless {
        println!(
            "  shell:   docker exec -it -u rootless -w /home/rootless {name} bash  (as jobs run)"
        );
    } else {
        println!("  shell:   docker exec -it {name} bash");
    }
    println!("  run:     runnerx run --job-id {} SCRIPT STAGE", job.id);
    println!("  remove:  runnerx cleanup --job-id {}", job.id);
}

/// A builder that uses the host's QEMU handlers needs them there, with F: checked
/// before anything is made, one line naming `runnerx host binfmt`. A rootless one
/// uses them only on kernels without binfmt_misc per user namespace.
fn check_host_handlers(settings: &Settings, needed: &[&str], rootless: bool) -> Result<()> {
    if needed.is_empty() || settings.binfmt.mode == BinfmtMode::None {
        return Ok(());
    }
    let bad = host::unusable_host_handlers(needed);
    if bad.is_empty() {
        return Ok(());
    }
    let why = if rootless {
        "this kernel has no binfmt_misc per user namespace (Linux < 6.7)"
    } else {
        "privileged builders share the host's user namespace"
    };
    Err(Error::Emulation(format!(
        "{why}, so this builder uses the host's QEMU handlers, and these are not usable: {}; run `runnerx host binfmt` on the runner host once (as root)",
        bad.join(", ")
    )))
}

/// Registers (image mode) and checks, in the builder's own namespace, the QEMU
/// handlers every non-native platform needs.
async fn setup_platforms(
    settings: &Settings,
    engine: &Engine,
    name: &str,
    native: &str,
    needed: &[&str],
    cancel: &CancellationToken,
) -> Result<()> {
    let mode = settings.binfmt.mode;
    if needed.is_empty() {
        return Ok(());
    }
    if mode == BinfmtMode::None {
        tracing::info!(
            "binfmt.mode = \"none\": not registering or checking qemu-{}",
            needed.join(", qemu-")
        );
        return Ok(());
    }
    let check = || async {
        let (_, out) = engine
            .exec_capture(name, builder::binfmt_check_cmd(needed))
            .await?;
        Ok::<_, Error>(binfmt::parse_check(needed, &out))
    };
    let mut states = check().await?;
    let missing = states.iter().any(|(_, s)| *s == Handler::Missing);
    if missing && matches!(mode, BinfmtMode::Image | BinfmtMode::Auto) {
        let image = &settings.binfmt.image;
        tracing::info!("registering qemu-{} with {image}", needed.join(", qemu-"));
        let installed = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
            r = engine.exec_capture(name, builder::user_cmd(binfmt::install_cmd(image, needed))) => r?,
        };
        if installed.0 != 0 {
            let last = builder::last_line(&installed.1);
            return Err(Error::Emulation(format!(
                "binfmt image {image} failed in the builder ({last}); mirror it into a reachable registry and set binfmt.image, or use a builder image with qemu-user-static and binfmt.mode = \"builtin\""
            )));
        }
        states = check().await?;
    }
    let platform_of = |qemu: &str| {
        settings
            .builder
            .platforms
            .iter()
            .find(|p| binfmt::qemu_name(&p.arch) == Some(qemu))
            .map_or_else(|| qemu.to_string(), ToString::to_string)
    };
    for (qemu, state) in &states {
        let p = platform_of(qemu);
        let problem = match state {
            Handler::Ok => continue,
            Handler::Missing => format!(
                "qemu-{qemu} is not registered in the builder ({}); use a builder image with qemu-user-static (/usr/lib/binfmt.d/qemu-{qemu}.conf) or set binfmt.mode = \"image\"",
                match mode {
                    BinfmtMode::Builtin =>
                        "binfmt.mode = \"builtin\" found no handler in the image",
                    _ => "neither the image's handlers nor the binfmt image registered it",
                }
            ),
            Handler::Disabled => format!(
                "qemu-{qemu} is registered but disabled; enable it on the host: echo 1 > /proc/sys/fs/binfmt_misc/qemu-{qemu}"
            ),
            Handler::NoFixBinary => format!(
                "qemu-{qemu} is registered without the F (fix-binary) flag, so RUN steps fail with `exec format error`; remove it on the host (echo -1 > /proc/sys/fs/binfmt_misc/qemu-{qemu}) and runnerx registers it with F"
            ),
        };
        return Err(Error::Emulation(format!(
            "platform {p} (non-native on {native}) has no working emulator: {problem}"
        )));
    }
    Ok(())
}

/// The builder's /var/lib/docker: the job's own volume, or — with per-project caching —
/// the first of the project's cache volumes no other builder mounts (chosen under the
/// host lock, so two running builders never share one).
async fn choose_volume(
    settings: &Settings,
    job: &Job,
    engine: &Engine,
    held: &Held,
    now: u64,
    isolation: &str,
) -> Result<DataRoot> {
    let own = || async {
        let name = builder::volume_name(&job.id);
        engine
            .create_volume(&name, builder::job_labels(&job.id, now))
            .await?;
        Ok::<_, Error>(DataRoot::Job(name))
    };
    let (CacheMode::PerProject, Some(project)) = (settings.cache.mode, job.project.as_deref())
    else {
        return own().await;
    };
    let existing = engine
        .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_PROJECT))
        .await?;
    for slot in 0..settings.cache.slots {
        let name = builder::cache_volume_name(project, slot);
        if held.caches.contains(&name) {
            continue;
        }
        let mut warm = false;
        if let Some(v) = existing.iter().find(|v| v.name == name) {
            // `cache.max_age` counts from the last use (the creation when none is recorded).
            let created = crate::host::cache_use::last_use(&settings.cache.state_dir, &name)
                .unwrap_or_else(|| builder::created_of(&v.labels));
            // Caches from before isolation labels were made by privileged builders.
            let made_by = v
                .labels
                .get(builder::LABEL_ISOLATION)
                .map_or("privileged", String::as_str);
            if now.saturating_sub(created) > settings.cache.max_age.as_secs() {
                tracing::info!("cache {name} is older than cache.max_age; starting it afresh");
                engine.remove_volume(&name).await?;
            } else if made_by != isolation {
                tracing::info!(
                    "cache {name} was filled by a {made_by} builder (its files belong to another uid map); starting it afresh for a {isolation} builder"
                );
                engine.remove_volume(&name).await?;
            } else {
                warm = true;
            }
        }
        if !warm {
            engine
                .create_volume(&name, builder::cache_labels(project, &name, now, isolation))
                .await?;
        }
        tracing::info!(
            "{} cache {name} for project {project}",
            if warm { "using warm" } else { "creating" }
        );
        return Ok(DataRoot::Cache { name, warm });
    }
    tracing::warn!(
        "all {} cache slots of project {project} are in use; this job builds without cache (raise cache.slots)",
        settings.cache.slots
    );
    own().await
}

/// A kept cache's share of `cache.total` (`total / slots`), for the inner daemon's
/// build cache GC; `None` without per-project caches or a total.
fn gc_keep_storage(settings: &Settings, root_dir: &str) -> Option<u64> {
    let total = settings.cache.total?;
    if settings.cache.mode != CacheMode::PerProject {
        return None;
    }
    let disk = crate::host::cache_use::disk(Path::new(root_dir)).map_or(0, |(size, _)| size);
    Some(total.bytes(disk) / u64::from(settings.cache.slots.max(1)))
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

/// The project's `cache_dir` volume (created on first use), shared by the project's
/// jobs as the docker executor shares its cache volume: gitlab-runner's archiver
/// writes each archive to a temporary file and renames it. Jobs without a trusted
/// project id keep their cache inside the builder.
async fn cache_dir(
    job: &Job,
    engine: &Engine,
    now: u64,
    isolation: &str,
) -> Result<Option<String>> {
    let Some(project) = job.project.as_deref() else {
        return Ok(None);
    };
    let name = builder::cache_dir_volume_name(project, isolation);
    let existing = engine
        .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_DIR))
        .await?;
    if !existing.iter().any(|v| v.name == name) {
        let labels = builder::cache_dir_labels(project, &name, now, isolation);
        // Two first jobs of a project may race here; the engine keeps one volume.
        if let Err(e) = engine.create_volume(&name, labels).await
            && !engine
                .volumes_with_label(&format!("{}={project}", builder::LABEL_CACHE_DIR))
                .await?
                .iter()
                .any(|v| v.name == name)
        {
            return Err(e);
        }
    }
    Ok(Some(name))
}
