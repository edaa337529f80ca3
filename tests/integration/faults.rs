//! Faults: each failure lands in the right class (build vs system), and cleanup
//! still removes everything.

use crate::support::{Job, assert_code, docker, labelled_objects, require_docker, text};

#[test]
fn inner_dockerd_killed_mid_stage_is_a_system_failure() {
    require_docker();
    let mut job = Job::new();
    assert_code(&job.prepare(), 0);
    let child = job.start_stage("echo started\nsleep 3\ndocker version");
    // The job user owns the namespace's processes: kill its dockerd from inside.
    let killed = docker(&[
        "exec",
        &job.builder(),
        "bash",
        "/etc/runnerx/exec.sh",
        "do",
        "pkill",
        "-KILL",
        "-x",
        "dockerd",
    ]);
    assert!(killed.status.success(), "{killed:?}");
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("runner failure, not the job's") && stderr.contains("docker logs"),
        "{stderr}"
    );
    assert_eq!(
        job.build_exit_code(),
        None,
        "no build exit code for a system failure"
    );
    job.cleanup_leaves_nothing();
}

#[test]
fn builder_killed_from_outside_mid_stage_is_a_system_failure() {
    require_docker();
    let mut job = Job::new();
    assert_code(&job.prepare(), 0);
    let child = job.start_stage("echo started\nsleep 30");
    assert!(docker(&["kill", &job.builder()]).status.success());
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 2);
    job.cleanup_leaves_nothing();
}

#[test]
fn job_over_the_memory_limit_is_a_build_failure_naming_the_limit() {
    require_docker();
    let mut job = Job::new().with_settings("memory = \"256MiB\"\n");
    assert_code(&job.prepare(), 0);
    let limit = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &job.builder()]);
    assert_eq!(String::from_utf8_lossy(&limit.stdout).trim(), "268435456");
    let out = job.run(
        "build_script",
        "dd if=/dev/zero of=/dev/null bs=600M count=1",
    );
    assert_code(&out, 1);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("ran out of memory") && stderr.contains("256 MiB, builder.memory"),
        "{stderr}"
    );
    assert_eq!(job.build_exit_code().as_deref(), Some("137\n"));
    // The builder survived its job's excess.
    assert_code(&job.run("after_script", "docker version >/dev/null"), 0);
    assert_code(&job.cleanup(), 0);
}

#[test]
fn cleanup_needs_no_secrets_or_ca_files() {
    require_docker();
    let pki = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(crate::support::bin())
        .args(["certs", "ca", "--out"])
        .arg(pki.path().join("ca"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let ca = pki.path().join("ca/ca.crt");
    let registry = format!(
        "[[registries]]\nhost = \"registry.test:5999\"\nca_file = \"{}\"\nusername = \"ci\"\npassword_env = \"RX_FAULT_PW\"\n",
        ca.display()
    );
    let job = Job::new().with_settings(&registry);
    let mut job = job.env("RX_FAULT_PW", "secret");
    assert_code(&job.prepare(), 0);
    // The secret rotates away and the CA file is gone: cleanup still removes all.
    let mut bare = Job::with_id(&job.id).with_settings(&registry);
    std::fs::remove_file(&ca).unwrap();
    let out = bare.cleanup();
    assert_code(&out, 0);
    assert!(
        text(&out).1.contains("going on without registries"),
        "{}",
        text(&out).1
    );
    assert_eq!(labelled_objects(&job.id), 0);
    assert_code(&job.cleanup(), 0);
}

#[test]
fn registry_dying_mid_push_is_the_jobs_failure_and_cleanup_leaves_nothing() {
    use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls};
    require_docker();
    let mut reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let mut job = Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), ""))
        .env("REG_PW", PASSWORD);
    assert_code(&job.prepare(), 0);
    let child = job.start_stage(&format!(
        "mkdir -p big && head -c 150000000 /dev/urandom > big/blob && printf 'FROM scratch\\nCOPY blob /blob\\n' > big/Dockerfile\n\
         docker build -q -t {host}/demo/big:1 big >/dev/null\n\
         echo started\n\
         docker push {host}/demo/big:1"
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    reg.stop();
    let out = child.wait_with_output().unwrap();
    // The builder is fine: the push's own failure is the job's (a build failure).
    assert_code(&out, 1);
    let (_, stderr) = text(&out);
    assert!(!stderr.contains("runner failure"), "{stderr}");
    assert!(
        job.build_exit_code().is_some_and(|c| c.trim() != "0"),
        "{stderr}"
    );
    job.cleanup_leaves_nothing();
}

#[test]
fn the_host_lock_is_out_of_reach_of_other_users() {
    require_docker();
    // A cached job takes the lock; an unprivileged local user cannot even open it.
    let mut job = Job::new()
        .project(424_242)
        .with_settings("[cache]\nmode = \"per-project\"\n");
    assert_code(&job.prepare(), 0);
    let other = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "flock",
            "-n",
            "/run/runnerx/lock",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!other.status.success(), "another user took the host lock");
    let mode = std::fs::metadata("/run/runnerx").unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
    assert_code(&job.cleanup(), 0);
    let _ = docker(&["volume", "rm", "-f", "runnerx-cache-p424242-0"]);
}

#[test]
fn a_prepare_cancelled_by_sigterm_leaves_no_builder_booting() {
    require_docker();
    let job = Job::new();
    let mut child = job.spawn_prepare();
    // Into the boot wait (the container exists), then cancelled as gitlab-runner does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while docker(&["inspect", &job.builder()]).status.code() != Some(0) {
        assert!(std::time::Instant::now() < deadline, "no builder appeared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    // Either it was cancelled (system failure) or it had just finished; no builder
    // may be left booting unattended after a cancellation.
    if status.code() == Some(2) {
        assert_eq!(
            labelled_objects(&job.id),
            0,
            "a cancelled prepare left objects"
        );
    } else {
        assert_eq!(status.code(), Some(0));
    }
}
