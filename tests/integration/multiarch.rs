//! Multi-platform builds end to end: a multi-arch base seeded into a real TLS registry
//! (per-arch tags joined by `runnerx manifest create`), the example project built for
//! linux/amd64 + linux/arm64 through the CI template by `runnerx local`, and the images
//! run per platform under real QEMU.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls};
use crate::support::{Job, assert_code, docker, require_docker, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Extracts the static busybox of `arch` from the deb scripts/setup-host.sh caches.
/// Copies a static arm64 busybox to `/tmp/busybox-arm64` in `builder` (the seed of
/// two-platform test images built there).
pub(crate) fn arm64_busybox_in(builder: &str) {
    let arm = tempfile::tempdir().unwrap();
    busybox("arm64", arm.path());
    let copied = Command::new("docker")
        .arg("cp")
        .arg(arm.path().join("busybox-arm64"))
        .arg(format!("{builder}:/tmp/busybox-arm64"))
        .status()
        .unwrap();
    assert!(copied.success());
}

pub(crate) fn busybox(arch: &str, into: &Path) {
    let cache = Path::new("/var/cache/runnerx/busybox");
    let deb = std::fs::read_dir(cache)
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(&format!("_{arch}.deb")))
        })
        .unwrap_or_else(|| {
            panic!(
                "no busybox-static {arch} deb in {}: run scripts/setup-host.sh",
                cache.display()
            )
        });
    let x = tempfile::tempdir().unwrap();
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(x.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "dpkg-deb -x {}", deb.display());
    std::fs::copy(
        x.path().join("bin/busybox"),
        into.join(format!("busybox-{arch}")),
    )
    .unwrap();
}

/// Seeds `<host>/base/busybox:1-amd64` and `…-arm64` through `runnerx local` (the
/// seed-base pipeline, run from its directory with the defaults) and returns
/// `<host>/base/busybox:1`, not yet created.
fn seed_per_arch(job: &Job, host: &str) -> String {
    let seed = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("scripts/seed-base/.gitlab-ci.yml"),
        seed.path().join(".gitlab-ci.yml"),
    )
    .unwrap();
    busybox("amd64", seed.path());
    busybox("arm64", seed.path());
    let out = job.runnerx_in(
        seed.path(),
        &["local", "seed", "--var", &format!("REGISTRY={host}")],
    );
    assert_code(&out, 0);
    assert!(text(&out).0.contains("Job succeeded"), "{}", text(&out).0);
    format!("{host}/base/busybox:1")
}

/// [`seed_per_arch`], then the seed workflow of `runnerx manifest create`: returns
/// `<host>/base/busybox:1`, an index of linux/amd64 and linux/arm64.
pub(crate) fn seed_base(job: &Job, host: &str) -> String {
    let base = seed_per_arch(job, host);
    let out = job.runnerx(&[
        "manifest",
        "create",
        &base,
        &format!("{base}-amd64"),
        &format!("{base}-arm64"),
    ]);
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );
    base
}

#[test]
fn example_project_builds_both_platforms_through_the_template() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let job = reg.job();

    // 1-2. Seed per-arch tags through `runnerx local`, join them with `manifest create`.
    let base = seed_base(&job, &host);
    // Into another repository too (children copied by blob mount).
    let copy = format!("{host}/mirror/busybox:1");
    assert_code(
        &job.runnerx(&[
            "manifest",
            "create",
            &copy,
            &format!("{base}-amd64"),
            &format!("{base}-arm64"),
        ]),
        0,
    );

    // 3. The example project, through the template: FROM the base, RUN per platform.
    let example = repo().join("ci-templates/examples/hello/.gitlab-ci.yml");
    let out = job.runnerx(&[
        "local",
        "build",
        "-f",
        example.to_str().unwrap(),
        "--var",
        &format!("RUNNERX_IMAGE={host}/demo/hello"),
        "--var",
        &format!("BASE_IMAGE={base}"),
        "--var",
        "RUNNERX_TAGS=1.0",
    ]);
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains(&format!(
            "index {host}/demo/hello:1.0 has: linux/amd64 linux/arm64"
        )),
        "{stdout}\n{stderr}"
    );

    // 4. The registry holds an index with both platforms.
    let out = job.runnerx(&["manifest", "inspect", &format!("{host}/demo/hello:1.0")]);
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );

    // A buildx index (with attestations) is flattened into a clean index; --platform
    // sets the platforms of single-platform sources.
    let flat = format!("{host}/demo/hello:flat");
    let out = job.runnerx(&[
        "manifest",
        "create",
        &flat,
        &format!("{host}/demo/hello:1.0"),
    ]);
    assert_code(&out, 0);
    let out = job.runnerx(&["manifest", "inspect", &flat]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("attestation"),
        "attestations were not dropped: {stdout}"
    );
    let out = job.runnerx(&[
        "manifest",
        "create",
        &format!("{host}/base/busybox:pinned"),
        &format!("{base}-amd64"),
        &format!("{base}-arm64"),
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64/v8",
    ]);
    assert_code(&out, 0);
    assert!(text(&out).0.contains("linux/arm64/v8"), "{}", text(&out).0);

    // 5. Both images run per platform in a builder: natively and under QEMU. The job's
    // `docker pull` fetches every platform first (a `docker run` that pulls a missing
    // platform itself lost its output once in a CI rehearsal).
    let mut runner = Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), ""))
        .env("REG_PW", PASSWORD);
    assert_code(&runner.prepare(), 0);
    let out = runner.run(
        "build_script",
        &format!(
            "docker pull -q {host}/demo/hello:1.0 >/dev/null\n\
             docker run --rm --platform linux/arm64 {host}/demo/hello:1.0 cat /etc/arch\n\
             docker run --rm --platform linux/amd64 {host}/demo/hello:1.0 cat /etc/arch\n\
             echo base-arm64=$(docker run --rm --platform linux/arm64 {base} uname -m)\n\
             echo base-amd64=$(docker run --rm --platform linux/amd64 {base} uname -m)\n\
             echo copy-arm64=$(docker run --rm --platform linux/arm64 {copy} uname -m)"
        ),
    );
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.contains("$ ")).collect();
    assert!(lines.contains(&"aarch64"), "{stdout}");
    assert!(lines.contains(&"x86_64"), "{stdout}");
    assert!(
        lines.contains(&"base-arm64=aarch64") && lines.contains(&"base-amd64=x86_64"),
        "{stdout}"
    );
    assert!(lines.contains(&"copy-arm64=aarch64"), "{stdout}");
    // The handler the inner dockerd uses has the F flag: the builder's namespace's own
    // binfmt_misc (Linux ≥ 6.7, checked the way prepare checks it), else the host's.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 7) {
        let check = docker(&[
            "exec",
            &runner.builder(),
            "bash",
            "/etc/runnerx/exec.sh",
            "binfmt",
            "aarch64",
        ]);
        assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "aarch64 ok");
    } else {
        let host = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap();
        assert!(
            host.lines()
                .any(|l| l.starts_with("flags:") && l.contains('F')),
            "{host}"
        );
    }
    assert_code(&runner.cleanup(), 0);
}

#[test]
fn docker_container_driver_with_a_missing_buildkit_image_fails_clearly() {
    require_docker();
    let mut job = Job::new().with_settings("").settings(&format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"never\"\ndriver = \"docker-container\"\nbuildkit_image = \"registry.invalid/mirror/buildkit:v0.23.2\"\n",
        crate::support::BUILDER_IMAGE
    ));
    let out = job.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("registry.invalid/mirror/buildkit:v0.23.2"),
        "{stderr}"
    );
    assert!(stderr.contains("builder.buildkit_image"), "{stderr}");
    assert_code(&job.cleanup(), 0);
}

#[test]
fn binfmt_image_mode_with_a_missing_image_names_the_emulator_fix() {
    require_docker();
    let mut job = Job::new().settings(&format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"never\"\n[binfmt]\nmode = \"image\"\nimage = \"registry.invalid/tonistiigi/binfmt:qemu-v7.0.0-28\"\n",
        crate::support::BUILDER_IMAGE
    ));
    let out = job.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("registry.invalid/tonistiigi/binfmt:qemu-v7.0.0-28"),
        "{stderr}"
    );
    assert!(stderr.contains("binfmt.mode = \"builtin\""), "{stderr}");
    assert_code(&job.cleanup(), 0);
}

#[test]
fn builder_image_is_pulled_with_progress_and_a_failed_boot_shows_the_log_tail() {
    require_docker();
    // The host engine treats loopback registries as plain-HTTP insecure ones, so a
    // registry on 127.0.0.1 can serve the builder image without host configuration.
    let reg = TestRegistry::start(Tls::None, AuthMode::None);
    let image = format!("127.0.0.1:{}/runnerx-test/not-a-builder:1", reg.port);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    busybox("amd64", &root.path().join("bin"));
    std::fs::rename(
        root.path().join("bin/busybox-amd64"),
        root.path().join("bin/busybox"),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).unwrap();
    let import = format!(
        "tar -C {} -c . | docker import - {image} && docker push -q {image} && docker rmi {image}",
        root.path().display()
    );
    let ok = Command::new("sh")
        .args(["-c", &import])
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not seed {image}");

    let mut job = Job::new().settings(&format!(
        "[builder]\nimage = \"{image}\"\npull_policy = \"if-not-present\"\nboot_timeout = \"10s\"\n"
    ));
    let out = job.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(stderr.contains(&format!("pulling {image}")), "{stderr}");
    assert!(stderr.contains(&format!("pulled {image}")), "{stderr}");
    // A busybox image has no dockerd: the boot refuses it, and prepare's last line
    // says why.
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("did not boot") && last.contains("lacks what rootless builders need"),
        "{stderr}"
    );
    // Rootless boot checks its tools first and names what is missing.
    assert!(
        stderr.lines().any(|l| l.contains("dockerd:")
            && l.contains("lacks what rootless builders need")
            && l.contains("rootlesskit")),
        "no log tail: {stderr}"
    );
    assert_code(&job.cleanup(), 0);
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
}
