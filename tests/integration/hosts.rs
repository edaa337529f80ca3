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
    let inspected = sh(&format!("docker inspect -f '{{{{.AppArmorProfile}}}}' {name}"));
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
    if engine_enforces_apparmor() {
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
fn a_privileged_builder_runs_under_runnerx_profile_where_the_engine_enforces_apparmor() {
    builder_confinement("privileged");
}
