//! What differs between runner hosts: AppArmor (runnerx's builder profile, and
//! builders confined by it wherever the engine enforces AppArmor) and cgroup v2
//! limits. These run on the development host and again in the VM tier's guest
//! (scripts/test-vm.sh: Debian's Linux 6.1, cgroup v2, AppArmor enforced), where
//! the engine's answer decides what each asserts.

use std::process::Command;

use crate::support::{Job, assert_code, require_docker, text};

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the engine applies AppArmor profiles (as prepare decides it).
fn engine_enforces_apparmor() -> bool {
    sh("docker info --format '{{json .SecurityOptions}}'").contains("name=apparmor")
}

#[test]
fn the_builder_profile_compiles_with_apparmor_parser() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("runnerx-builder");
    let out = Command::new(crate::support::bin())
        .args(["host", "apparmor", "--dry-run"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    std::fs::write(&profile, &out.stdout).unwrap();
    // -Q: compile only, load nothing; -K: no cache. Fails loudly without the parser
    // (scripts/setup-host.sh --tests installs it).
    let parsed = Command::new("apparmor_parser")
        .args(["-Q", "-K"])
        .arg(&profile)
        .output()
        .expect("apparmor_parser (apt-get install apparmor)");
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}

fn builder_confinement(isolation: &str) {
    require_docker();
    let mut job = Job::new().with_settings(&format!("isolation = \"{isolation}\"\n"));
    if isolation == "privileged" {
        crate::support::register_host_handlers();
    }
    assert_code(&job.prepare(), 0);
    let name = job.builder();
    let inspected = sh(&format!(
        "docker inspect -f '{{{{.AppArmorProfile}}}}' {name}"
    ));
    let out = job.run(
        "build_script",
        "echo \"label=$(cat /proc/self/attr/current 2>/dev/null || echo none)\"",
    );
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    let job_label = stdout
        .lines()
        .find_map(|l| l.strip_prefix("label="))
        .unwrap_or_default()
        .to_string();
    if isolation == "privileged" {
        // Docker runs a --privileged container unconfined, whatever profile is named
        // (the explicit-capabilities fallback is confined; see the spec snapshots).
        assert!(
            inspected.is_empty() || inspected == "unconfined",
            "a privileged builder's profile: {inspected:?}"
        );
    } else if engine_enforces_apparmor() {
        assert_eq!(inspected, "runnerx-builder", "the builder's profile");
        let pid = sh(&format!("docker inspect -f '{{{{.State.Pid}}}}' {name}"));
        let pid1 = sh(&format!("cat /proc/{pid}/attr/current"));
        assert!(
            pid1.starts_with("runnerx-builder"),
            "the builder's pid 1 runs under {pid1:?}"
        );
        // The job's shell, and the inner dockerd RootlessKit started, inherit it.
        assert!(
            job_label.starts_with("runnerx-builder"),
            "the job runs under {job_label:?}\n{stderr}"
        );
        let inner = sh(&format!(
            "for p in $(pgrep -f 'dockerd --config-file /etc/runnerx/daemon.json'); do \
               if [ \"$(cat /proc/$p/cgroup)\" = \"$(cat /proc/{pid}/cgroup)\" ]; then cat /proc/$p/attr/current; fi; done"
        ));
        assert!(
            inner.starts_with("runnerx-builder"),
            "the inner dockerd runs under {inner:?}"
        );
    } else {
        // The engine reports "" (no AppArmor at all) or "unconfined".
        assert!(
            inspected.is_empty() || inspected == "unconfined",
            "no AppArmor, yet the builder's profile is {inspected:?}"
        );
    }
    assert_code(&job.cleanup(), 0);
}

#[test]
fn a_rootless_builder_runs_under_runnerx_profile_where_the_engine_enforces_apparmor() {
    builder_confinement("rootless");
}

#[test]
fn a_privileged_builder_runs_unconfined_as_docker_runs_every_privileged_container() {
    builder_confinement("privileged");
}

/// Inner `docker run --memory` in a rootless builder, on cgroup v1 and v2 alike: the
/// inner dockerd has no writable cgroup (Docker mounts a non-privileged container's
/// cgroupfs read-only, and nothing delegates the builder's cgroup to its user), so it
/// reports no memory-limit support (cgroup driver `none`) and drops the limit without
/// a word; the builder's own limit (builder.memory) is what bounds the job (faults.rs
/// tests that one). If this starts to fail, inner limits work: update the README.
#[test]
fn inner_memory_limits_are_not_enforced_in_rootless_builders() {
    require_docker();
    let mut job = Job::new();
    assert_code(&job.prepare(), 0);
    let out = job.run(
        "build_script",
        "echo \"memory-limit=$(docker info --format '{{.MemoryLimit}}') driver=$(docker info --format '{{.CgroupDriver}}') v$(docker info --format '{{.CgroupVersion}}')\"\n\
         mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
         docker build -q -t local/mem ctx >/dev/null\n\
         docker run --rm --memory 64m local/mem /bin/busybox true 2>&1\n\
         echo \"inner-max=$(docker run --rm --memory 64m local/mem /bin/busybox cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null | head -n 1)\"",
    );
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    let report = stdout
        .lines()
        .find(|l| l.starts_with("memory-limit="))
        .unwrap_or_default();
    println!(
        "host cgroup: {}; {report}",
        sh("stat -fc %T /sys/fs/cgroup")
    );
    assert!(
        report.starts_with("memory-limit=false"),
        "{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("inner-max=67108864"), "{stdout}");
    assert_code(&job.cleanup(), 0);
}

/// The runner host's main job, on whatever host this is (in the VM tier: Linux < 6.7,
/// so the host's handlers from `runnerx host binfmt`): a rootless job builds a
/// two-platform image with a RUN step (arm64 under QEMU), pushes it to a TLS registry
/// with a password and no login step, and runs the pushed arm64 image.
#[test]
fn a_rootless_job_builds_pushes_and_runs_a_multi_arch_image() {
    use crate::registry::{AuthMode, TestRegistry, Tls};
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let mut job = reg.job();
    assert_code(&job.prepare(), 0);
    crate::multiarch::arm64_busybox_in(&job.builder());
    let image = format!("{}/demo/multi:1", reg.host());
    let out = job.run(
        "build_script",
        &format!(
            "mkdir -p ctx && cp /bin/busybox ctx/busybox-amd64 && cp /tmp/busybox-arm64 ctx/\n\
             printf 'FROM scratch\\nARG TARGETARCH\\nCOPY busybox-$TARGETARCH /bin/busybox\\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /arch\"]\\n' > ctx/Dockerfile\n\
             docker buildx build -q --platform linux/amd64,linux/arm64 --push -t {image} ctx\n\
             runnerx manifest inspect {image}\n\
             docker pull -q {image} >/dev/null\n\
             echo \"arm64-run=$(docker run --rm --platform linux/arm64 {image} /bin/busybox cat /arch)\""
        ),
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("arm64-run=aarch64"), "{stdout}\n{stderr}");
    assert_code(&job.cleanup(), 0);
}
