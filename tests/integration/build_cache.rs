//! The registry build cache (`cache_repository`): a project's jobs on fresh builders
//! (no local layer cache, as on another runner host) share their build cache through
//! a real TLS registry with a login.

use std::process::Command;

use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls, USER};
use crate::support::{Job, assert_code, require_docker, text};

/// A build whose RUN step takes a while and leaves a mark that differs per run.
const BUILD: &str = "mkdir -p ctx && cp /bin/busybox ctx/ && \
    printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 2; /bin/busybox date +%%s%%N > /stamp\"]\\n' > ctx/Dockerfile\n";

fn job(reg: &TestRegistry, extra: &str, project: u64) -> Job {
    Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), extra))
        .env("REG_PW", PASSWORD)
        .project(project)
}

/// Runs `commands` after [`BUILD`]'s set-up in a fresh builder; (stdout, stderr).
fn build(job: Job, commands: &str) -> (String, String) {
    let mut job = job;
    assert_code(&job.prepare(), 0);
    let out = job.run("build_script", &format!("{BUILD}{commands}"));
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert_code(&job.cleanup(), 0);
    (stdout, stderr)
}

/// The RUN step's progress lines, to tell a cache hit from a run.
fn run_step_cached(stderr: &str) -> bool {
    let id = stderr
        .lines()
        .find(|l| l.contains("RUN [\"/bin/busybox\""))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no RUN step in\n{stderr}"));
    stderr.lines().any(|l| l == format!("{id} CACHED"))
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
    let (_, first) = build(job(&reg, cached, 7), "docker build -t local/app ctx\n");
    assert!(
        !run_step_cached(&first),
        "a cold build found a cache:\n{first}"
    );
    let reference = written_ref(&first);
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

    let (_, second) = build(job(&reg, cached, 7), "docker build -t local/app ctx\n");
    assert!(
        run_step_cached(&second),
        "the second job rebuilt the step:\n{second}"
    );
    assert!(
        second.contains(&format!("registry cache: read {reference}")),
        "{second}"
    );

    // Another project (same login, same repository) reads its own tags only; a
    // project whose registry names no cache gets none, and builds.
    let (_, other) = build(job(&reg, cached, 8), "docker build -t local/app ctx\n");
    assert!(
        !run_step_cached(&other),
        "project 8 hit project 7's cache:\n{other}"
    );
    let (_, plain) = build(job(&reg, "", 7), "docker build -t local/app ctx\n");
    assert!(!run_step_cached(&plain), "{plain}");
    assert!(!plain.contains("registry cache:"), "{plain}");

    // A command with its own cache flags keeps exactly them.
    let (_, own) = build(
        job(&reg, cached, 7),
        "docker buildx build --cache-to type=local,dest=/tmp/own-cache -t local/app ctx\nls /tmp/own-cache/index.json\n",
    );
    assert!(
        !run_step_cached(&own),
        "its own flags were not kept:\n{own}"
    );
    assert!(!own.contains("registry cache:"), "{own}");
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
    let (_, stderr) = build(job, "docker build -t local/app ctx\n");
    assert!(
        stderr.contains("registry cache: not written to"),
        "{stderr}"
    );
    assert!(!run_step_cached(&stderr), "{stderr}");
}
