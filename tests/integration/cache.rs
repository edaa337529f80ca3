//! The per-project layer cache: a kept /var/lib/docker volume per project and slot.

use crate::support::{Job, assert_code, docker, require_docker, text};

const BUILD: &str = r#"
mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 2; /bin/busybox date > /built"]\n' > ctx/Dockerfile
docker build --progress plain -t local/cached:1 ctx 2>&1 | /bin/busybox grep -E 'RUN|CACHED|DONE' || true
"#;

fn settings(extra: &str) -> String {
    format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"never\"\n[cache]\nmode = \"per-project\"\n{extra}",
        crate::support::BUILDER_IMAGE
    )
}

/// Whether BuildKit reported a cached step (`#5 CACHED`).
fn cached(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with('#') && l.trim_end().ends_with("CACHED"))
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
    assert!(
        !cached(&text(&out).0),
        "first build must be cold: {}",
        text(&out).0
    );
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
    assert!(cached(&stdout), "the RUN step was not cached: {stdout}");
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
    let project = std::process::id() as u64 * 10 + 3;
    remove_project_caches(project);
    let privileged = settings("").replacen(
        "pull_policy = \"never\"\n",
        "pull_policy = \"never\"\nisolation = \"privileged\"\n",
        1,
    );
    let mut first = Job::new().settings(&privileged).project(project);
    assert_code(&first.prepare(), 0);
    assert_code(&first.run("build_script", BUILD), 0);
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
    assert!(!cached(&text(&out).0), "{}", text(&out).0);
    assert_code(&second.cleanup(), 0);
    remove_project_caches(project);
}
