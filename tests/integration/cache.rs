//! The per-project layer cache: a kept /var/lib/docker volume per project and slot.

use std::sync::Mutex;

use crate::support::{Job, assert_code, docker, labelled_objects, require_docker, text};

/// Held by tests that need a cache to survive between two of their jobs, and by the
/// tests that evict caches host-wide (the budget is the host's, not a test's).
pub(crate) static CACHES: Mutex<()> = Mutex::new(());

/// A build whose RUN step stamps its image with a fresh UUID, then prints
/// `stamp <uuid>`: the same stamp in two jobs means the second reused the step.
const BUILD: &str = r#"
mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /proc/sys/kernel/random/uuid > /built"]\n' > ctx/Dockerfile
docker build -q -t local/cached:1 ctx >/dev/null
echo "stamp $(docker run --rm local/cached:1 /bin/busybox cat /built)"
"#;

fn settings(extra: &str) -> String {
    format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"never\"\nhost_loopback = true\n[cache]\nmode = \"per-project\"\n{extra}",
        crate::support::BUILDER_IMAGE
    )
}

/// The RUN step's stamp a [`BUILD`] printed.
fn stamp(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("stamp "))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| panic!("no stamp in\n{stdout}"))
        .trim()
        .to_string()
}

fn mounted_volume(builder: &str) -> String {
    let out = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/var/lib/docker\"}}{{.Name}}{{end}}{{end}}",
        builder,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn remove_project_caches(project: u64) {
    let out = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=runnerx.cache-project={project}"),
    ]);
    for v in String::from_utf8_lossy(&out.stdout).lines() {
        docker(&["volume", "rm", "-f", v]);
    }
}

#[test]
fn second_job_of_a_project_reuses_layers_and_gc_prunes_old_caches() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let project = std::process::id() as u64 * 10 + 1;
    let mut first = Job::new().settings(&settings("")).project(project);
    assert_code(&first.prepare(), 0);
    let volume = mounted_volume(&first.builder());
    assert!(
        volume.starts_with(&format!("runnerx-cache-p{project}-")),
        "{volume}"
    );
    let out = first.run("build_script", BUILD);
    assert_code(&out, 0);
    let first_stamp = stamp(&text(&out).0);
    assert_code(&first.cleanup(), 0);
    // The cache volume survives the job's cleanup (it has no job label).
    assert!(
        docker(&["volume", "inspect", &volume]).status.success(),
        "cache volume removed by cleanup"
    );

    let had_docker0 = std::path::Path::new("/sys/class/net/docker0").exists();
    let mut second = Job::new().settings(&settings("")).project(project);
    let prep = second.prepare();
    assert_code(&prep, 0);
    // Regression: a warm data root once made the inner dockerd delete the HOST's docker0.
    assert!(
        !had_docker0 || std::path::Path::new("/sys/class/net/docker0").exists(),
        "a warm builder deleted the host's docker0 bridge"
    );
    assert!(
        text(&prep).1.contains("using warm cache"),
        "{}",
        text(&prep).1
    );
    assert_eq!(mounted_volume(&second.builder()), volume);
    let out = second.run(
        "build_script",
        &format!("docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}'\n{BUILD}"),
    );
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("local/cached:1"),
        "image from the first job is missing: {stdout}"
    );
    assert_eq!(
        stamp(&stdout),
        first_stamp,
        "the RUN step ran again: {stdout}"
    );
    assert_code(&second.cleanup(), 0);

    // gc drops caches past cache.max_age once no builder mounts them.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let gc = Job::new().settings(&settings("max_age = \"1s\"\n"));
    // Jobs' objects are left alone (100d): other tests running in parallel own some.
    let out = gc.runnerx(&["gc", "--older-than", "100d"]);
    assert_code(&out, 0);
    assert!(
        text(&out).0.contains(&format!("cache {volume}")),
        "{}",
        text(&out).0
    );
    assert!(
        !docker(&["volume", "inspect", &volume]).status.success(),
        "old cache volume kept"
    );
    remove_project_caches(project);
}

#[test]
fn concurrent_jobs_of_one_project_never_share_a_cache_volume() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let project = std::process::id() as u64 * 10 + 2;
    let jobs = [
        Job::new().settings(&settings("")).project(project),
        Job::new().settings(&settings("")).project(project),
    ];
    std::thread::scope(|s| {
        for j in &jobs {
            s.spawn(move || assert_code(&j.prepare(), 0));
        }
    });
    let a = mounted_volume(&jobs[0].builder());
    let b = mounted_volume(&jobs[1].builder());
    assert!(
        a.starts_with("runnerx-cache-") && b.starts_with("runnerx-cache-"),
        "{a} {b}"
    );
    assert_ne!(a, b, "two running builders share a cache volume");
    for mut j in jobs {
        assert_code(&j.cleanup(), 0);
    }
    remove_project_caches(project);
}

#[test]
fn a_cache_filled_by_a_privileged_builder_starts_afresh_for_a_rootless_one() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let project = std::process::id() as u64 * 10 + 3;
    remove_project_caches(project);
    crate::support::register_host_handlers();
    let privileged = settings("").replacen(
        "pull_policy = \"never\"\n",
        "pull_policy = \"never\"\nisolation = \"privileged\"\n",
        1,
    );
    let mut first = Job::new().settings(&privileged).project(project);
    assert_code(&first.prepare(), 0);
    let out = first.run("build_script", BUILD);
    assert_code(&out, 0);
    let first_stamp = stamp(&text(&out).0);
    assert_code(&first.cleanup(), 0);

    let mut second = Job::new().settings(&settings("")).project(project);
    let out = second.prepare();
    assert_code(&out, 0);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("was filled by a privileged builder")
            && stderr.contains("starting it afresh"),
        "{stderr}"
    );
    // The fresh cache works for the rootless builder (a root-owned one would not).
    let out = second.run("build_script", BUILD);
    assert_code(&out, 0);
    assert_ne!(stamp(&text(&out).0), first_stamp, "{}", text(&out).0);
    assert_code(&second.cleanup(), 0);
    remove_project_caches(project);
}

/// A build leaving a ~30 MB layer (random: it does not compress) in the data root.
const BIG_BUILD: &str = "mkdir -p big && head -c 30000000 /dev/urandom > big/blob && printf 'FROM scratch\\nCOPY blob /blob\\n' > big/Dockerfile\ndocker build -q -t local/big:1 big";

fn budget_settings(state: &std::path::Path, extra: &str) -> String {
    settings(&format!(
        "slots = 1\nstate_dir = \"{}\"\n{extra}",
        state.display()
    ))
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// Recorded size of a cache volume (bytes), from the state directory.
fn recorded(state: &std::path::Path, volume: &str) -> u64 {
    std::fs::read_to_string(state.join("cache-use").join(volume))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn caches_beyond_the_total_are_evicted_least_recently_used_first_never_in_use() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().unwrap();
    let base = std::process::id() as u64 * 10 + 5_000_000;
    let volume = |p: u64| format!("runnerx-cache-p{p}-0");
    // A cache in use the whole time (its builder runs).
    let mut busy = Job::new()
        .settings(&budget_settings(state.path(), "total = \"100GB\"\n"))
        .project(base);
    assert_code(&busy.prepare(), 0);

    // Project 1 fills its cache; its cleanup records the size (the budget is loose).
    let mut first = Job::new()
        .settings(&budget_settings(state.path(), "total = \"100GB\"\n"))
        .project(base + 1);
    assert_code(&first.prepare(), 0);
    assert_code(&first.run("build_script", BIG_BUILD), 0);
    first.cleanup_leaves_nothing();
    let size = recorded(state.path(), &volume(base + 1));
    assert!(
        size > 25_000_000,
        "recorded size of the first cache: {size}"
    );

    // Two more projects under a budget of 1.5 caches: after each cleanup the least
    // recently used idle caches go, the newest stays, the busy one is never touched.
    let budget = size * 3 / 2;
    for p in [base + 2, base + 3] {
        let mut job = Job::new()
            .settings(&budget_settings(
                state.path(),
                &format!("total = \"{budget}\"\n"),
            ))
            .project(p);
        assert_code(&job.prepare(), 0);
        assert_code(&job.run("build_script", BIG_BUILD), 0);
        let started = std::time::Instant::now();
        let out = job.cleanup();
        assert_code(&out, 0);
        eprintln!(
            "cleanup with eviction of project {p}: {:?}",
            started.elapsed()
        );
        assert!(labelled_objects(&job.id) == 0);
    }
    assert!(
        !volume_exists(&volume(base + 1)),
        "the least recently used cache stayed"
    );
    assert!(
        !volume_exists(&volume(base + 2)),
        "a second idle cache stayed over budget"
    );
    assert!(
        volume_exists(&volume(base + 3)),
        "the newest cache was evicted"
    );
    assert!(volume_exists(&volume(base)), "a cache in use was evicted");
    busy.cleanup_leaves_nothing();
    for p in base..=base + 3 {
        docker(&["volume", "rm", "-f", &volume(p)]);
    }
}

#[test]
fn a_free_space_floor_above_the_disk_fails_prepare_cleanly_and_evicts_nothing() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().unwrap();
    let project = std::process::id() as u64 * 10 + 6_000_000;
    let keep = format!("runnerx-cache-p{project}-0");
    let mut seed = Job::new()
        .settings(&budget_settings(state.path(), ""))
        .project(project);
    assert_code(&seed.prepare(), 0);
    seed.cleanup_leaves_nothing();
    assert!(volume_exists(&keep));

    let mut job = Job::new()
        .settings(&budget_settings(state.path(), "min_free = \"1000TB\"\n"))
        .project(project + 1);
    let out = job.prepare();
    assert_code(&out, 2);
    let stderr = text(&out).1;
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("below cache.min_free") && errors[0].contains("MiB free"),
        "{stderr}"
    );
    assert_eq!(
        labelled_objects(&job.id),
        0,
        "a failed prepare left objects"
    );
    assert!(
        volume_exists(&keep),
        "a hopeless floor evicted a cache anyway"
    );
    job.cleanup_leaves_nothing();
    docker(&["volume", "rm", "-f", &keep]);
}

#[test]
fn max_age_counts_from_the_last_use() {
    require_docker();
    let _caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().unwrap();
    let base = std::process::id() as u64 * 10 + 7_000_000;
    let volume = |p: u64| format!("runnerx-cache-p{p}-0");
    let cfg = budget_settings(state.path(), "max_age = \"1h\"\n");
    for p in [base, base + 1] {
        let mut job = Job::new().settings(&cfg).project(p);
        assert_code(&job.prepare(), 0);
        job.cleanup_leaves_nothing();
    }
    // The first cache was last used two hours ago; the second a moment ago.
    let record = state.path().join("cache-use").join(volume(base));
    let ok = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&record)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = Job::new()
        .settings(&cfg)
        .runnerx(&["gc", "--older-than", "1d"]);
    assert_code(&out, 0);
    assert!(!volume_exists(&volume(base)), "{}", text(&out).0);
    assert!(volume_exists(&volume(base + 1)), "{}", text(&out).0);
    docker(&["volume", "rm", "-f", &volume(base + 1)]);
}
