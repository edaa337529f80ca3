//! What real pipelines need beyond `script:`: gitlab-runner's helper binary in the
//! builder (artifacts, `cache:`) and a `cache_dir` that outlives the builder, per
//! project. Stage scripts are shaped like gitlab-runner's bash writer for the
//! restore_cache and archive_cache stages (`shells/abstract.go`: a `--version` guard,
//! then the helper with the archive path relative to the project directory).

use crate::support::{Job, assert_code, docker, require_docker, text};

/// A stand-in for gitlab-runner's helper that records each call and archives with tar
/// (the real one writes zip); used only to see the calls and where the archive lands.
const HELPER_DOUBLE: &str = r#"#!/bin/bash
args="$*"
echo "helper-call: ${args//$CI_JOB_TOKEN/[MASKED]}"
cmd=$1; shift
file=""; paths=()
while [ $# -gt 0 ]; do
  case "$1" in
    --file) file=$2; shift 2 ;;
    --path) paths+=("$2"); shift 2 ;;
    *) shift ;;
  esac
done
case "$cmd" in
  --version) echo "Version: 19.0.0 (test double)" ;;
  cache-archiver)
    mkdir -p "$(dirname "$file")"
    tar -czf "$file.tmp" "${paths[@]}" && mv "$file.tmp" "$file" ;;
  cache-extractor)
    if [ ! -f "$file" ]; then echo "WARNING: Cache file does not exist"; exit 1; fi
    tar -xzf "$file" ;;
  artifacts-uploader)
    tar -czf /tmp/artifacts.tgz "${paths[@]}" && tar -tzf /tmp/artifacts.tgz | sed 's/^/archived: /' ;;
esac
"#;

/// gitlab-runner's archive_cache section for key `key-1`, paths `vendor/`.
const ARCHIVE_CACHE: &str = r#"if gitlab-runner --version >/dev/null 2>&1; then
echo 'Creating cache key-1...'
if gitlab-runner cache-archiver --file ../../../cache/group/demo/key-1/cache.zip --timeout 10 --path vendor/; then
echo 'Created cache'
else
echo 'WARNING: Failed to create cache'
fi
else
echo 'WARNING: Missing gitlab-runner. Creating cache is disabled.'
fi
"#;

/// gitlab-runner's restore_cache section for key `key-1`.
const RESTORE_CACHE: &str = r#"if gitlab-runner --version >/dev/null 2>&1; then
echo 'Checking cache for key-1...'
if gitlab-runner cache-extractor --file ../../../cache/group/demo/key-1/cache.zip --timeout 10; then
echo 'Successfully extracted cache'
else
echo 'WARNING: Failed to extract cache'
fi
else
echo 'WARNING: Missing gitlab-runner. Extracting cache is disabled.'
fi
"#;

/// A job of `project`; with `helper`, the test double is its `builder.helper_binary`.
fn job_of(project: u64, helper: bool) -> Job {
    let job = Job::new().project(project);
    if !helper {
        return job;
    }
    let path = job.host_file("gitlab-runner", HELPER_DOUBLE);
    job.with_settings(&format!("helper_binary = \"{}\"\n", path.display()))
}

#[test]
fn the_cache_one_job_archives_is_extracted_by_the_next_job_of_its_project_only() {
    require_docker();
    let _caches = crate::cache::CACHES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (project, other) = (4_201_u64, 4_202_u64);
    let volumes = [
        format!("runnerx-cachedir-p{project}-rootless"),
        format!("runnerx-cachedir-p{other}-rootless"),
    ];
    for v in &volumes {
        let _ = docker(&["volume", "rm", "-f", v]);
    }

    // Job 1 builds vendor/ and archives it.
    let mut first = job_of(project, true);
    assert_code(&first.prepare(), 0);
    let out = first.run(
        "build_script",
        "mkdir -p vendor\necho warm > vendor/dep.txt",
    );
    assert_code(&out, 0);
    let out = first.run_raw("archive_cache", ARCHIVE_CACHE);
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("helper-call: cache-archiver --file ../../../cache/group/demo/key-1/cache.zip --timeout 10 --path vendor/"),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("Created cache"), "{stdout}{stderr}");
    first.cleanup_leaves_nothing();

    // Job 2 of the same project, in a new builder, gets it back.
    let mut second = job_of(project, true);
    assert_code(&second.prepare(), 0);
    let out = second.run_raw("restore_cache", RESTORE_CACHE);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("Successfully extracted cache"),
        "{stdout}{stderr}"
    );
    let out = second.run("build_script", "cat vendor/dep.txt");
    assert_code(&out, 0);
    assert!(text(&out).0.contains("warm"), "{}", text(&out).0);
    second.cleanup_leaves_nothing();

    // Another project's job sees nothing of it.
    let mut third = job_of(other, true);
    assert_code(&third.prepare(), 0);
    let out = third.run_raw("restore_cache", RESTORE_CACHE);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("Failed to extract cache"),
        "{stdout}{stderr}"
    );
    let out = third.run("build_script", "ls -R /cache; test ! -e vendor/dep.txt");
    assert_code(&out, 0);
    assert!(!text(&out).0.contains("key-1"), "{}", text(&out).0);
    third.cleanup_leaves_nothing();

    for v in &volumes {
        let _ = docker(&["volume", "rm", "-f", v]);
    }
}

#[test]
fn the_helper_is_read_only_for_the_job_and_a_missing_one_is_named_once() {
    require_docker();
    let mut job = job_of(4_203, true);
    assert_code(&job.prepare(), 0);
    let out = job.run(
        "build_script",
        "command -v gitlab-runner\ngitlab-runner --version\n! sh -c 'echo x > /usr/local/bin/gitlab-runner' 2>/dev/null",
    );
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("/usr/local/bin/gitlab-runner"),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("test double"), "{stdout}{stderr}");
    job.cleanup_leaves_nothing();
    let _ = docker(&["volume", "rm", "-f", "runnerx-cachedir-p4203-rootless"]);

    // No helper anywhere: prepare says so, naming the setting; the stage says what
    // gitlab-runner's script says, and the job goes on.
    let mut bare = job_of(4_203, false);
    let out = bare.prepare();
    assert_code(&out, 0);
    let warnings: Vec<String> = text(&out)
        .1
        .lines()
        .filter(|l| l.contains("builder.helper_binary"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", text(&out).1);
    let out = bare.run_raw("archive_cache", ARCHIVE_CACHE);
    assert_code(&out, 0);
    assert!(
        text(&out)
            .0
            .contains("Missing gitlab-runner. Creating cache is disabled."),
        "{}",
        text(&out).0
    );
    bare.cleanup_leaves_nothing();
    let _ = docker(&["volume", "rm", "-f", "runnerx-cachedir-p4203-rootless"]);
}

/// Prepares `job` (whose services name a DinD image) and checks the builder serves it
/// at `tcp://<alias>:2375` inside the job only.
fn builder_serves_dind(mut job: Job, alias: &str) {
    let out = job.prepare();
    assert_code(&out, 0);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("the builder is a Docker daemon already"),
        "{stderr}"
    );
    // GitLab's documented DinD pattern, unchanged.
    let out = job.run(
        "build_script",
        &format!(
            "export DOCKER_HOST=tcp://{alias}:2375\nexport DOCKER_TLS_CERTDIR=\ndocker version --format 'server {{{{.Server.Version}}}}'\ndocker buildx ls | head -n 3"
        ),
    );
    assert_code(&out, 0);
    assert!(text(&out).0.contains("server "), "{}", text(&out).0);
    // The daemon's TCP port is the namespace's own: nothing on the runner host answers.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 2375)).is_err(),
        "the builder's dockerd answers on the host's port 2375"
    );
    job.cleanup_leaves_nothing();
}

#[test]
fn a_dind_service_is_the_builder_itself_and_docker_host_tcp_reaches_it_inside_only() {
    require_docker();
    let job = Job::new().service(serde_json::json!({
        "name": "docker:24.0.4-dind", "alias": "", "entrypoint": null, "command": null
    }));
    builder_serves_dind(job, "docker");
}

#[test]
fn a_teams_own_dind_image_named_in_dind_images_is_served_by_the_builder_too() {
    require_docker();
    // Not pullable from here: were it started as an ordinary service, prepare would fail.
    let job = Job::new()
        .with_settings("dind_images = [\"**/ci/dind:*\"]\n")
        .service(serde_json::json!({
            "name": "harbor.example.com/ci/dind:1", "alias": "dind", "entrypoint": null, "command": null
        }));
    builder_serves_dind(job, "dind");
}

#[test]
fn services_are_reachable_by_alias_and_a_silent_one_is_reported_with_its_log() {
    use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls};
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let settings = format!(
        "wait_for_services_timeout = \"3s\"\n{}",
        reg.settings_block(&reg.ca_file(), "")
    );

    // Two service images, pushed to the private registry the way a team would.
    let mut seed = Job::new().with_settings(&settings).env("REG_PW", PASSWORD);
    assert_code(&seed.prepare(), 0);
    let out = seed.run(
        "build_script",
        &format!(
            "mkdir -p web silent && cp /bin/busybox web/ && cp /bin/busybox silent/\n\
             printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nEXPOSE 8080\\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\\n' > web/Dockerfile\n\
             printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nEXPOSE 9999\\nCMD [\"/bin/busybox\", \"sh\", \"-c\", \"echo silent service up; sleep 600\"]\\n' > silent/Dockerfile\n\
             docker build -q -t {host}/svc/web:1 web\n\
             docker build -q -t {host}/svc/silent:1 silent\n\
             docker push -q {host}/svc/web:1\n\
             docker push -q {host}/svc/silent:1"
        ),
    );
    assert_code(&out, 0);
    seed.cleanup_leaves_nothing();

    let services = |job: Job| {
        job.env("REG_PW", PASSWORD)
            .service(serde_json::json!({
                "name": format!("{host}/svc/web:1"), "alias": "web", "entrypoint": null, "command": null
            }))
            .service(serde_json::json!({
                "name": format!("{host}/svc/silent:1"), "alias": "quiet", "entrypoint": null, "command": null
            }))
    };
    // Service images follow the builder's pull policy: "never" names the fix.
    let mut never = services(Job::new().with_settings(&settings));
    let out = never.prepare();
    assert_code(&out, 2);
    assert!(
        text(&out)
            .1
            .contains("is not in the builder and builder.pull_policy is \"never\""),
        "{}",
        text(&out).1
    );
    never.cleanup_leaves_nothing();

    let mut job = services(Job::new().settings(&format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"if-not-present\"\nhost_loopback = true\nextra_hosts = [\"registry.test:127.0.0.1\"]\n{settings}",
        crate::support::BUILDER_IMAGE
    )));
    let out = job.prepare();
    assert_code(&out, 0);
    let stderr = text(&out).1;
    assert!(
        stderr.contains("probably didn't start properly"),
        "{stderr}"
    );
    assert!(
        stderr.contains("silent service up"),
        "the service log is shown: {stderr}"
    );
    let out = job.run(
        "build_script",
        "curl -s -o /dev/null -w 'web answered %{http_code}\\n' http://web:8080/\n\
         getent hosts registry.test__svc__web registry.test-svc-web quiet | wc -l",
    );
    assert_code(&out, 0);
    let stdout = text(&out).0;
    assert!(stdout.contains("web answered 404"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == "3"), "{stdout}");
    job.cleanup_leaves_nothing();
}

/// GitLab's documented DinD pipeline (the shape of seed 003): `image: docker`, a
/// `docker:dind` service, `DOCKER_HOST=tcp://docker:2375`, a multi-platform push.
const DIND_PIPELINE: &str = r#"variables:
  DOCKER_HOST: tcp://docker:2375
  DOCKER_TLS_CERTDIR: ""
  DOCKER_DRIVER: overlay2

build:
  image: docker:24.0.4
  services:
    - name: docker:24.0.4-dind
      alias: docker
  before_script:
    - docker info --format 'daemon {{.ServerVersion}}'
  script:
    - cp /bin/busybox . && printf 'FROM scratch\nCOPY busybox /bin/busybox\n' > Dockerfile
    - docker buildx build --platform linux/amd64,linux/arm64 -t "$REGISTRY/seed/app:1" --push .
"#;

#[test]
fn gitlabs_dind_pipeline_runs_unchanged_through_runnerx_local() {
    use crate::registry::{AuthMode, TestRegistry, Tls};
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let job = reg.job();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), DIND_PIPELINE).unwrap();
    let out = job.runnerx_in(
        project.path(),
        &["local", "build", "--var", &format!("REGISTRY={host}")],
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(stdout.contains("daemon "), "{stdout}\n{stderr}");
    assert!(stdout.contains("Job succeeded"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the builder is a Docker daemon already"),
        "{stderr}"
    );
    let out = job.runnerx(&["manifest", "inspect", &format!("{host}/seed/app:1")]);
    assert_code(&out, 0);
    let listing = text(&out).0;
    assert!(
        listing.contains("linux/amd64") && listing.contains("linux/arm64"),
        "{listing}"
    );
}

#[test]
fn a_multi_arch_image_is_pulled_retagged_and_pushed_whole() {
    use crate::registry::{AuthMode, TestRegistry, Tls};
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let mut job = reg.job();
    let base = crate::multiarch::seed_base(&job, &host);

    // The seeds' flow: a base image from upstream, retagged into the team's project.
    assert_code(&job.prepare(), 0);
    let target = format!("{host}/team/busybox:1");
    let out = job.run(
        "build_script",
        &format!("docker pull {base}\ndocker tag {base} {target}\ndocker push {target}"),
    );
    // The push of the retagged image succeeds (a pull of one platform only would
    // refuse it); the manifest below shows it went whole.
    assert_code(&out, 0);
    job.cleanup_leaves_nothing();
    let out = job.runnerx(&["manifest", "inspect", &target]);
    assert_code(&out, 0);
    let listing = text(&out).0;
    assert!(
        listing.contains("linux/amd64") && listing.contains("linux/arm64"),
        "{listing}"
    );
}

#[test]
fn a_job_runs_every_stage_gitlab_runner_sends_with_a_clone_over_https() {
    use crate::gitlab::{GitServer, Stages, wrap};
    require_docker();
    let git = GitServer::start(&[("README", "hello from gitlab\n")]);
    let settings = |job: &Job| {
        let helper = job.host_file("gitlab-runner", HELPER_DOUBLE);
        format!(
            "[builder]\nimage = \"{}\"\npull_policy = \"never\"\nhost_loopback = true\nextra_hosts = [\"gitlab.test:127.0.0.1\"]\nhelper_binary = \"{}\"\n",
            crate::support::BUILDER_IMAGE,
            helper.display()
        )
    };
    let job = Job::new().project(4_204);
    let mut job = {
        let s = settings(&job);
        job.settings(&s)
    };
    let stages = Stages {
        job_id: job.id.clone(),
        server: git.url(),
        sha: git.sha.clone(),
        ca_pem: git.ca_pem(),
    };
    assert_code(&job.prepare(), 0);
    let mut log = String::new();
    for (stage, body) in [
        ("prepare_script", stages.prepare_script()),
        ("get_sources", stages.get_sources()),
        ("restore_cache", stages.restore_cache()),
        (
            "build_script",
            stages.user_script(&[
                "cat README",
                "git rev-parse HEAD",
                "test -s \"$CI_SERVER_TLS_CA_FILE\" && echo ca-file-present",
                "mkdir -p out vendor && echo built > out/result.txt && echo dep > vendor/dep.txt",
            ]),
        ),
        (
            "after_script",
            stages.user_script(&["echo after-script-ran"]),
        ),
        ("archive_cache", stages.archive_cache()),
        ("upload_artifacts_on_success", stages.upload_artifacts()),
        ("cleanup_file_variables", stages.cleanup_file_variables()),
    ] {
        let out = job.run_script(stage, &wrap(&body));
        let (stdout, stderr) = text(&out);
        assert_code(&out, 0);
        log.push_str(&format!("== {stage}\n{stdout}{stderr}"));
    }
    for expected in [
        "Created fresh repository",
        "hello from gitlab",
        git.sha.as_str(),
        "ca-file-present",
        "after-script-ran",
        "Created cache",
        "archived: out/result.txt",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
    let upload = format!(
        "helper-call: artifacts-uploader --url {} --token [MASKED] --id {} --timeout 1h0m0s --response-header-timeout 10m0s --path out/ --artifact-format zip --artifact-type archive",
        git.url(),
        job.id
    );
    assert!(log.contains(&upload), "{log}");
    let out = job.run(
        "build_script",
        "test ! -e /builds/group/demo.tmp/CI_SERVER_TLS_CA_FILE && echo file-variables-removed",
    );
    assert!(
        text(&out).0.contains("file-variables-removed"),
        "{}",
        text(&out).0
    );
    job.cleanup_leaves_nothing();

    // The same clone with another CA in CI_SERVER_TLS_CA_FILE: TLS refuses, and the
    // job fails as the job's (build) failure.
    let other = GitServer::start(&[("README", "x\n")]);
    let job2 = Job::new().project(4_204);
    let mut job2 = {
        let s = settings(&job2);
        job2.settings(&s)
    };
    let wrong = Stages {
        job_id: job2.id.clone(),
        server: git.url(),
        sha: git.sha.clone(),
        ca_pem: other.ca_pem(),
    };
    assert_code(&job2.prepare(), 0);
    let out = job2.run_script("get_sources", &wrap(&wrong.get_sources()));
    assert_code(&out, 1);
    let (stdout, stderr) = text(&out);
    assert!(
        format!("{stdout}{stderr}").contains("certificate"),
        "{stdout}{stderr}"
    );
    job2.cleanup_leaves_nothing();
    let _ = docker(&["volume", "rm", "-f", "runnerx-cachedir-p4204-rootless"]);
}
