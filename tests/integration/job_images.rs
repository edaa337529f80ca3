//! A job's `image:` is where its script runs, as on GitLab's docker executor: images
//! from the test's TLS registry (with a password), pulled by the builder's daemon with
//! the project's login, and gitlab-runner's stages split between the builder (sources,
//! caches, artifacts) and the job's container (the user's script).

use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls};
use crate::support::{Job, assert_code, require_docker, text};

/// Tools images pushed the way a team pushes its own: `tools/mytool:1` (busybox, no
/// bash, a program in /usr/local/bin) and `tools/ep:1` (the same with an entrypoint
/// that announces itself and runs the command).
fn push_tools_images(settings: &str, host: &str) {
    let mut seed = Job::new().with_settings(settings).env("REG_PW", PASSWORD);
    assert_code(&seed.prepare(), 0);
    let out = seed.run(
        "build_script",
        &format!(
            "mkdir -p tools && cp /bin/busybox tools/\n\
             printf '#!/bin/sh\\necho \"mytool ran as uid $(id -u)\"\\n' > tools/mytool && chmod +x tools/mytool\n\
             printf '#!/bin/sh\\necho entrypoint ran\\nexec \"$@\"\\n' > tools/ep.sh && chmod +x tools/ep.sh\n\
             printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\\nCOPY mytool /usr/local/bin/mytool\\nENV PATH=/usr/local/bin:/bin\\n' > tools/Dockerfile\n\
             docker build -q -t {host}/tools/mytool:1 tools\n\
             printf 'FROM {host}/tools/mytool:1\\nCOPY ep.sh /ep.sh\\nENTRYPOINT [\"/ep.sh\"]\\n' > tools/Dockerfile.ep\n\
             docker build -q -f tools/Dockerfile.ep -t {host}/tools/ep:1 tools\n\
             docker push -q {host}/tools/mytool:1\n\
             docker push -q {host}/tools/ep:1"
        ),
    );
    assert_code(&out, 0);
    seed.cleanup_leaves_nothing();
}

fn image(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "entrypoint": null, "command": null, "pull_policy": null,
                       "executor_opts": {"docker": {"platform": "", "user": ""}}})
}

#[test]
fn a_jobs_image_runs_its_script_stages_and_the_builder_the_rest_on_the_same_files() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let settings = reg.settings_block(&reg.ca_file(), "");
    push_tools_images(&settings, &host);

    let mut job = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .image(image(&format!("{host}/tools/mytool:1")));
    let out = job.prepare();
    assert_code(&out, 0);
    assert!(
        text(&out).1.contains("job image"),
        "prepare names the job image: {}",
        text(&out).1
    );
    // Where a stage ran: only the builder has runnerx's exec wrapper.
    let whereami = "test -e /etc/runnerx/exec.sh && echo ran-in-builder || echo ran-in-job-image";
    let out = job.run(
        "get_sources",
        &format!("{whereami}\necho from-builder > sources.txt"),
    );
    assert_code(&out, 0);
    assert!(text(&out).0.contains("ran-in-builder"), "{}", text(&out).0);

    let out = job.run(
        "build_script",
        &format!(
            "{whereami}\nmytool\ncat sources.txt\necho \"shell $(readlink /proc/$$/exe)\"\necho from-image > built.txt"
        ),
    );
    assert_code(&out, 0);
    let (stdout, stderr) = text(&out);
    let why = format!("{stdout}\n{stderr}");
    assert!(stdout.contains("ran-in-job-image"), "{why}");
    assert!(stdout.contains("mytool ran as uid 0"), "{why}");
    assert!(stdout.contains("from-builder"), "{why}");
    // No bash in the image: gitlab-runner's detection falls back to its sh.
    assert!(stdout.contains("shell /bin/busybox"), "{why}");

    let out = job.run("after_script", &format!("{whereami}\ncat built.txt"));
    assert_code(&out, 0);
    assert!(
        text(&out).0.contains("ran-in-job-image"),
        "{}",
        text(&out).0
    );
    assert!(text(&out).0.contains("from-image"), "{}", text(&out).0);
    let out = job.run("archive_cache", &format!("{whereami}\ncat built.txt"));
    assert_code(&out, 0);
    assert!(text(&out).0.contains("ran-in-builder"), "{}", text(&out).0);
    assert!(text(&out).0.contains("from-image"), "{}", text(&out).0);

    // The script's exit code is the job's, as in the builder.
    let out = job.run("build_script", "exit 3");
    assert_code(&out, 1);
    assert_eq!(job.build_exit_code().as_deref(), Some("3\n"));
    job.cleanup_leaves_nothing();
}

#[test]
fn entrypoints_docker_images_and_unpullable_images_behave_as_on_gitlab() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let settings = reg.settings_block(&reg.ca_file(), "");
    push_tools_images(&settings, &host);

    // The image's entrypoint runs for each stage, then the script; `[""]` clears it.
    let mut kept = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .image(image(&format!("{host}/tools/ep:1")));
    assert_code(&kept.prepare(), 0);
    for _ in 0..2 {
        let out = kept.run("build_script", "mytool");
        assert_code(&out, 0);
        let stdout = text(&out).0;
        assert!(stdout.contains("entrypoint ran"), "{stdout}");
        assert!(stdout.contains("mytool ran"), "{stdout}");
    }
    kept.cleanup_leaves_nothing();
    let mut cleared = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .image(serde_json::json!({"name": format!("{host}/tools/ep:1"), "entrypoint": [""]}));
    assert_code(&cleared.prepare(), 0);
    let out = cleared.run("build_script", "mytool");
    assert_code(&out, 0);
    assert!(!text(&out).0.contains("entrypoint ran"), "{}", text(&out).0);
    assert!(text(&out).0.contains("mytool ran"), "{}", text(&out).0);
    cleared.cleanup_leaves_nothing();

    // Docker's own images are what the builder already is: nothing is pulled (the
    // runner may have no route to Docker Hub) and the script runs in the builder.
    let mut dind = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .image(image("docker:27-dind"));
    assert_code(&dind.prepare(), 0);
    let out = dind.run(
        "build_script",
        "test -e /etc/runnerx/exec.sh && echo ran-in-builder",
    );
    assert_code(&out, 0);
    assert!(text(&out).0.contains("ran-in-builder"), "{}", text(&out).0);
    dind.cleanup_leaves_nothing();

    // An image that cannot be pulled fails the job (GitLab's image pull failure), in
    // one line naming the image.
    let mut missing = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .image(image(&format!("{host}/tools/missing:1")));
    let out = missing.prepare();
    assert_code(&out, 1);
    let stderr = text(&out).1;
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("{host}/tools/missing:1")) && last.contains("could not be pulled"),
        "{stderr}"
    );
    missing.cleanup_leaves_nothing();
}
