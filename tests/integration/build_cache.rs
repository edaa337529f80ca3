//! The registry build cache (`cache_repository`): a project's jobs on fresh builders
//! (no local layer cache, as on another runner host) share their build cache through
//! a real TLS registry with a login.

use std::process::Command;

use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls, USER};
use crate::support::{Job, assert_code, require_docker, text};

/// A build whose RUN step stamps the image with a fresh UUID.
const BUILD: &str = "mkdir -p ctx && cp /bin/busybox ctx/ && \
    printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat /proc/sys/kernel/random/uuid > /stamp\"]\\n' > ctx/Dockerfile\n";

/// Prints the stamp of the image `local/app` the job built.
const STAMP: &str = "echo \"stamp $(docker run --rm local/app /bin/busybox cat /stamp)\"\n";

fn job(reg: &TestRegistry, extra: &str, project: u64) -> Job {
    Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), extra))
        .env("REG_PW", PASSWORD)
        .project(project)
}

/// A build in a fresh builder: [`BUILD`]'s set-up, `commands`, then [`STAMP`].
struct Built {
    stderr: String,
    /// The RUN step's UUID: the same in two builds means the second reused the step.
    stamp: String,
}

fn build(job: Job, commands: &str) -> Built {
    let mut job = job;
    assert_code(&job.prepare(), 0);
    let out = job.run("build_script", &format!("{BUILD}{commands}{STAMP}"));
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert_code(&job.cleanup(), 0);
    let stamp = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stamp "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no stamp in\n{stdout}\n{stderr}"))
        .to_string();
    Built { stderr, stamp }
}

/// (steps, cached steps) in runnerx's build report.
fn report(stderr: &str) -> (u32, u32) {
    let mut total = (0, 0);
    for l in stderr.lines().filter(|l| l.contains(" cached, ")) {
        let counts = l
            .rsplit_once("steps ")
            .and_then(|(_, rest)| rest.split_once(" cached"))
            .and_then(|(c, _)| c.split_once(", "))
            .unwrap_or_else(|| panic!("a report line without counts: {l}"));
        total.0 += counts.0.parse::<u32>().unwrap();
        total.1 += counts.1.parse::<u32>().unwrap();
    }
    assert!(total.0 > 0, "no build report in\n{stderr}");
    total
}

fn written_ref(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("registry cache: written to "))
        .unwrap_or_else(|| panic!("no cache written in\n{stderr}"))
        .to_string()
}

/// The manifest of `reference` (`host:port/repo:tag`) as the registry stores it.
fn manifest(reg: &TestRegistry, reference: &str) -> serde_json::Value {
    let (repo, tag) = reference
        .split_once('/')
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .unwrap();
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(reg.ca_file())
        .args(["--resolve", &format!("registry.test:{}:127.0.0.1", reg.port)])
        .args(["-u", &format!("{USER}:{PASSWORD}")])
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"])
        .arg(format!("https://{}/v2/{repo}/manifests/{tag}", reg.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "no manifest for {reference}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_projects_next_job_on_a_fresh_builder_reads_its_registry_cache() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let cached = "cache_repository = \"ci/cache\"\n";
    let first = build(job(&reg, cached, 7), "docker build -t local/app ctx\n");
    assert_eq!(
        report(&first.stderr),
        (2, 0),
        "a cold build:\n{}",
        first.stderr
    );
    let reference = written_ref(&first.stderr);
    assert!(reference.contains("/ci/cache:p7-main-"), "{reference}");

    // Stored as an OCI image manifest whose config is BuildKit's cache config (the
    // form Harbor accepts).
    let m = manifest(&reg, &reference);
    assert_eq!(
        m["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{m}"
    );
    assert_eq!(
        m["config"]["mediaType"], "application/vnd.buildkit.cacheconfig.v0",
        "{m}"
    );

    // The next job, on a fresh builder, does not run the step: its image holds the
    // first job's stamp, and the report counts both steps as reused (BuildKit prints
    // such a hit as CACHED or as the layer it pulls from the cache).
    let second = build(job(&reg, cached, 7), "docker build -t local/app ctx\n");
    assert_eq!(
        second.stamp, first.stamp,
        "the second job ran the step again:\n{}",
        second.stderr
    );
    assert_eq!(report(&second.stderr), (2, 2), "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!(
            "registry cache: read {reference} (2 steps cached)"
        )),
        "{}",
        second.stderr
    );

    // Another project (same login, same repository) reads its own tags only; a
    // project whose registry names no cache gets none, and builds.
    let other = build(job(&reg, cached, 8), "docker build -t local/app ctx\n");
    assert_ne!(
        other.stamp, first.stamp,
        "project 8 took project 7's step:\n{}",
        other.stderr
    );
    assert_eq!(report(&other.stderr).1, 0, "{}", other.stderr);
    let plain = build(job(&reg, "", 7), "docker build -t local/app ctx\n");
    assert_ne!(plain.stamp, first.stamp, "{}", plain.stderr);
    assert!(
        !plain.stderr.contains("registry cache:"),
        "{}",
        plain.stderr
    );

    // A command with its own cache flags keeps exactly them.
    let own = build(
        job(&reg, cached, 7),
        "docker buildx build --cache-to type=local,dest=/tmp/own-cache -t local/app ctx\nls /tmp/own-cache/index.json\n",
    );
    assert_ne!(
        own.stamp, first.stamp,
        "its own flags were not kept:\n{}",
        own.stderr
    );
    assert!(!own.stderr.contains("registry cache:"), "{}", own.stderr);
}

#[test]
fn a_registry_that_refuses_the_cache_never_fails_the_build() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    // The cache's login is wrong: reading and writing it are refused (401).
    let job = Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), "cache_repository = \"ci/cache\"\n"))
        .env("REG_PW", "not-the-password")
        .project(9);
    let built = build(job, "docker build -t local/app ctx\n");
    assert!(
        built.stderr.contains("registry cache: not written to"),
        "{}",
        built.stderr
    );
    assert_eq!(report(&built.stderr), (2, 0), "{}", built.stderr);
}
