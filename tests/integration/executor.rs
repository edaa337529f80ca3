//! Full job lifecycles through real builders.

use std::time::{Duration, Instant};

use crate::support::{JOB_TOKEN, Job, assert_code, docker, labelled_objects, require_docker, text};

/// Build_script commands that build a tiny image from the builder's static busybox
/// (no registry needed) and run it, printing its IPv4 address.
const BUILD_AND_RUN: &str = r#"
mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\nCOPY busybox /bin/busybox\n' > ctx/Dockerfile
docker build -q -t local/bb:1 ctx
docker run --rm local/bb:1 /bin/busybox ip -4 -o addr show eth0
"#;

/// The address in `ip -4 -o addr` output (`… inet 10.213.0.2/24 …`).
fn ip_of(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with('$'))
        .find_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .unwrap_or_else(|| panic!("no inet address in:\n{stdout}"))
        .to_string()
}

#[test]
fn job_runs_all_stages_in_its_builder_and_cleanup_removes_everything() {
    require_docker();
    let mut job = Job::new();
    assert_code(&job.config(), 0);
    let out = job.prepare();
    assert_code(&out, 0);
    assert!(
        text(&out).1.contains("inner dockerd ready"),
        "{}",
        text(&out).1
    );

    // gitlab-runner retries prepare: a second call keeps the ready builder.
    let again = job.prepare();
    assert_code(&again, 0);
    assert!(text(&again).1.contains("reusing it"), "{}", text(&again).1);

    assert_code(
        &job.run("prepare_script", "echo \"Running on $(hostname)\""),
        0,
    );
    assert_code(
        &job.run("get_sources", "git --version\nls -d $CI_PROJECT_DIR"),
        0,
    );

    let out = job.run("build_script", BUILD_AND_RUN);
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    let ip = ip_of(&stdout);
    assert!(
        ip.starts_with("10.213."),
        "inner container must use the builder's own subnet, got {ip}"
    );
    assert!(stdout.contains("$ docker run --rm local/bb:1"), "{stdout}");

    // Unknown stage names run like user stages.
    let out = job.run(
        "some_future_stage",
        "docker image ls --format '{{.Repository}}:{{.Tag}}'",
    );
    assert_code(&out, 0);
    assert!(text(&out).0.contains("local/bb:1"), "{}", text(&out).0);
    assert_code(&job.run("after_script", "echo after"), 0);

    // No copy of any script (they hold the job token) is left in the builder.
    let leak = docker(&[
        "exec",
        &job.builder(),
        "sh",
        "-c",
        &format!("grep -rl {JOB_TOKEN} /run /tmp /builds /root /etc /var/tmp 2>/dev/null; true"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&leak.stdout).trim(),
        "",
        "script copies left in the builder"
    );
    assert_code(&job.run("cleanup_file_variables", "true"), 0);

    let out = job.cleanup();
    assert_code(&out, 0);
    assert_eq!(
        labelled_objects(&job.id),
        0,
        "objects labelled for the job remain"
    );
    // A second cleanup finds nothing and is still fine.
    assert_code(&job.cleanup(), 0);
}

#[test]
fn failing_script_reports_its_own_exit_code() {
    require_docker();
    let mut job = Job::new();
    assert_code(&job.prepare(), 0);
    let out = job.run("build_script", "echo before\nexit 3\necho never");
    assert_code(&out, 1);
    assert_eq!(job.build_exit_code().as_deref(), Some("3\n"));
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("before") && !stdout.contains("never\n"),
        "{stdout}"
    );

    // The next stage starts with no stale code.
    assert_code(&job.run("after_script", "true"), 0);
    assert_eq!(job.build_exit_code(), None);
    assert_code(&job.cleanup(), 0);
}

#[test]
fn missing_image_with_pull_policy_never_is_a_system_failure_naming_it() {
    require_docker();
    let mut job = Job::new().settings(
        "[builder]\nimage = \"runnerx-test/no-such-builder:1\"\npull_policy = \"never\"\n",
    );
    let out = job.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("runnerx-test/no-such-builder:1"),
        "{stderr}"
    );
    assert!(stderr.contains("pull_policy"), "{stderr}");
    job.cleanup_leaves_nothing();
}

#[test]
fn sigterm_stops_a_running_stage_within_five_seconds() {
    sigterm_stops_the_stage(Job::new());
}

#[test]
fn sigterm_stops_a_running_stage_in_a_privileged_builder() {
    // There the script runs in the inner daemons' namespace, entered with nsenter.
    crate::support::register_host_handlers();
    sigterm_stops_the_stage(Job::new().with_settings("isolation = \"privileged\"\n"));
}

fn sigterm_stops_the_stage(mut job: Job) {
    require_docker();
    assert_code(&job.prepare(), 0);
    // The script really runs before it is cancelled.
    let mut child = job.start_stage("echo started\nsleep 300");
    let sent = Instant::now();
    let rc = unsafe_kill(child.id(), 15);
    assert_eq!(rc, 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "runnerx still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(status.code(), Some(0));
    // The sleep is gone from the builder.
    let ps = docker(&["exec", &job.builder(), "ps", "-eo", "args"]);
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 300"),
        "script still running"
    );
    job.cleanup_leaves_nothing();
}

fn unsafe_kill(pid: u32, sig: i32) -> i32 {
    std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}

#[test]
fn concurrent_privileged_jobs_run_side_by_side() {
    require_docker();
    // Kept apart from the host-state tests: a privileged builder is the one kind
    // that could change the host.
    let _host = crate::isolation::HOST_STATE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    crate::support::register_host_handlers();
    let privileged = |j: Job| j.with_settings("isolation = \"privileged\"\n");
    let jobs = [privileged(Job::new()), privileged(Job::new())];
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|j| {
                s.spawn(move || {
                    let p = j.prepare();
                    assert_code(&p, 0);
                    j.run("build_script", BUILD_AND_RUN)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert_code(o, 0);
    }
    // Each inner dockerd has its own network namespace: the same pool, no clash.
    for o in &outs {
        let ip = ip_of(&text(o).0);
        assert!(ip.starts_with("10.213."), "{ip}");
    }
    for mut j in jobs {
        j.cleanup_leaves_nothing();
    }
}

#[test]
fn manual_prepare_prints_how_to_use_and_remove_the_builder() {
    require_docker();
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        settings.path(),
        format!(
            "[builder]\nimage = \"{}\"\npull_policy = \"never\"\n",
            crate::support::BUILDER_IMAGE
        ),
    )
    .unwrap();
    let manual = |args: &[&str]| {
        std::process::Command::new(crate::support::bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUNNERX_CONFIG", settings.path())
            .output()
            .unwrap()
    };
    let _policy = crate::policy::lease(manual);
    let out = manual(&["prepare"]);
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    let id = stdout
        .split("(job id ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no job id printed: {stdout}"))
        .to_string();
    assert!(id.starts_with("manual-"), "{id}");
    assert!(
        stdout.contains(&format!(
            "docker exec -it -u rootless -w /home/rootless runnerx-{id} bash"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("runnerx cleanup --job-id {id}")),
        "{stdout}"
    );
    // Each step is logged with its duration.
    assert!(
        stderr.lines().any(|l| l.contains("inner dockerd ready (")),
        "{stderr}"
    );

    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "docker info --format '{{.Driver}}'\n").unwrap();
    let out = manual(&[
        "run",
        "--job-id",
        &id,
        script.path().to_str().unwrap(),
        "build_script",
    ]);
    assert_code(&out, 0);
    assert_code(&manual(&["cleanup", "--job-id", &id]), 0);
    assert_eq!(labelled_objects(&id), 0);
}

#[test]
fn gc_removes_old_leftovers_and_keeps_young_builders() {
    require_docker();
    let mut young = Job::new();
    assert_code(&young.prepare(), 0);
    // A leftover of a dead runner: a volume created a day ago.
    let old_id = format!("gc-{}", young.id);
    let created = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 86_400)
        .to_string();
    let out = docker(&[
        "volume",
        "create",
        "--label",
        &format!("runnerx.job={old_id}"),
        "--label",
        &format!("runnerx.created={created}"),
        &format!("runnerx-{old_id}-docker"),
    ]);
    assert!(out.status.success());
    assert_eq!(labelled_objects(&old_id), 1);

    let out = young.runnerx(&["gc", "--older-than", "1h", "--dry-run"]);
    assert_code(&out, 0);
    assert!(
        text(&out).0.contains(&format!("job {old_id}")),
        "{}",
        text(&out).0
    );
    assert_eq!(labelled_objects(&old_id), 1, "dry run removed something");

    let out = young.runnerx(&["gc", "--older-than", "1h"]);
    assert_code(&out, 0);
    assert_eq!(labelled_objects(&old_id), 0);
    assert!(
        !text(&out).0.contains(&format!("job {} ", young.id)),
        "{}",
        text(&out).0
    );
    assert_eq!(labelled_objects(&young.id), 2, "gc touched a young builder");
    assert_code(&young.cleanup(), 0);
}

#[test]
fn gc_never_removes_a_live_job_and_removes_an_orphan() {
    require_docker();
    // Live: prepared by this process, which is still running.
    let mut live = Job::new();
    assert_code(&live.prepare(), 0);
    // Orphan: prepared from a shell that is gone, like a job of a dead runner.
    let mut orphan = Job::new();
    assert_code(&orphan.prepare_orphaned(), 0);
    std::thread::sleep(Duration::from_millis(1100));

    let out = live.runnerx(&["gc", "--older-than", "1s", "--dry-run"]);
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("job {id}:")))
            .unwrap_or_else(|| panic!("no line for job {id}:\n{stdout}"))
            .to_string()
    };
    assert!(line(&live.id).contains("still runs"), "{stdout}");
    assert!(
        line(&orphan.id).contains("is gone (would remove)"),
        "{stdout}"
    );
    assert_eq!(labelled_objects(&orphan.id), 2, "dry run removed something");

    let out = live.runnerx(&["gc", "--older-than", "1s"]);
    assert_code(&out, 0);
    assert_eq!(labelled_objects(&orphan.id), 0, "{}", text(&out).0);
    assert_eq!(labelled_objects(&live.id), 2, "gc removed a live job");
    assert_code(&live.run("build_script", "docker version >/dev/null"), 0);
    assert_code(&live.cleanup(), 0);
    assert_code(&orphan.cleanup(), 0);
}

#[test]
fn run_without_a_builder_is_a_system_failure() {
    require_docker();
    let job = Job::new();
    let out = job.run("build_script", "true");
    assert_code(&out, 2);
    assert!(
        text(&out).1.contains("prepare has not run"),
        "{}",
        text(&out).1
    );
}
