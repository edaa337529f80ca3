//! `runnerx local` reads `.gitlab-ci.yml` as GitLab does: each case's expected output
//! is GitLab's (its CI/CD YAML reference and gitlab-runner's variable expansion), not
//! runnerx's own.

use crate::support::{Job, assert_code, require_docker, text};

const PIPELINE: &str = r#"variables:
  IMAGE: $REGISTRY/library/app

.login:
  script:
    - echo logged-in

.setup: &setup
  - echo set-up

build:
  stage: package
  rules:
    - if: $CI_COMMIT_BRANCH == "no-such-branch"
      when: never
    - when: always
      variables:
        FROM_RULE: rule-wins
  variables:
    FROM_RULE: job-loses
    PRICE: $$5
    TEMPLATE:
      value: ${CI_JOB_NAME}-x
      expand: false
  script:
    - !reference [.login, script]
    - *setup
    - echo "image=$IMAGE stage=$CI_JOB_STAGE price=$PRICE source=$CI_PIPELINE_SOURCE template=$TEMPLATE rule=$FROM_RULE"
  cache:
    paths: [target/]

flaky:
  rules:
    - if: $CI_COMMIT_TAG
  allow_failure:
    exit_codes: [3]
  script:
    - exit 3
"#;

#[test]
fn variables_references_and_unhonoured_keywords_behave_as_in_gitlab() {
    require_docker();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), PIPELINE).unwrap();
    let job = Job::new();
    let out = job.runnerx_in(
        project.path(),
        &["local", "build", "--var", "REGISTRY=registry.test:5443"],
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    // A global variable using a --var (defined "later") still sees it: one set.
    assert!(
        stdout.contains(
            "image=registry.test:5443/library/app stage=package price=$5 source=push template=${CI_JOB_NAME}-x rule=rule-wins"
        ),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("logged-in") && stdout.contains("set-up"),
        "{stdout}"
    );
    // rules are decided (the matching rule's variables rank above the job's); a
    // keyword runnerx local cannot honour is named once.
    assert!(!stderr.contains("rules is not honoured"), "{stderr}");
    assert!(
        stderr.contains("cache is not honoured by runnerx local"),
        "{stderr}"
    );

    // A job the pipeline would leave out runs when named, saying so; exit code 3 is
    // one its allow_failure allows, so the run succeeds with a warning.
    let out = job.runnerx_in(project.path(), &["local", "flaky"]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stdout.contains("job \"flaky\" would not run in a pipeline (no rule matches); running it because you named it"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Job failed: exit code 3 (allowed to fail)"),
        "{stdout}"
    );
    let out = job.runnerx_in(project.path(), &["local", "--list"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("flaky\tstage test\tnot in the pipeline: no rule matches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("build\tstage package\truns (when: always)"),
        "{stdout}"
    );

    // A typo is an error naming the keyword GitLab would suggest; nothing runs.
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        "build:\n  imgae: docker:27\n  script: [echo hi]\n",
    )
    .unwrap();
    let out = job.runnerx_in(project.path(), &["local", "build"]);
    assert_code(&out, 2);
    assert!(
        text(&out).1.contains("did you mean \"image\""),
        "{}",
        text(&out).1
    );
}

#[test]
fn a_matrix_runs_every_combination_or_the_one_picked_and_list_and_preview_show_jobs() {
    require_docker();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        "default:\n  before_script: [echo from-default]\n\n.base:\n  stage: package\n\nbuild:\n  extends: .base\n  parallel:\n    matrix:\n      - ARCH: [amd64, arm64]\n  script:\n    - echo \"arch=$ARCH job=$CI_JOB_NAME\"\n",
    )
    .unwrap();
    let job = Job::new();
    let out = job.runnerx_in(project.path(), &["local", "build"]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    // GitLab runs one job per combination, named `build: [value]`.
    assert!(
        stdout.contains("arch=amd64 job=build: [amd64]"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("arch=arm64 job=build: [arm64]"),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("parallel is not honoured"), "{stderr}");

    let out = job.runnerx_in(
        project.path(),
        &["local", "build", "--matrix", "ARCH=arm64"],
    );
    let stdout = text(&out).0;
    assert_code(&out, 0);
    assert!(
        stdout.contains("arch=arm64") && !stdout.contains("arch=amd64"),
        "{stdout}"
    );

    let out = job.runnerx_in(project.path(), &["local", "--list"]);
    assert_code(&out, 0);
    assert_eq!(
        text(&out).0.trim(),
        "build\tstage package (2 matrix combinations)\truns"
    );

    let out = job.runnerx_in(project.path(), &["local", "build", "--preview"]);
    assert_code(&out, 0);
    let preview: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(preview["stage"], "package");
    assert_eq!(preview["before_script"][0], "echo from-default");
}

#[test]
fn needs_runs_the_chain_first_and_passes_artifacts_and_dotenv() {
    require_docker();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        r#"stages: [build, deploy]

build:
  stage: build
  script:
    - mkdir -p dist && echo app-binary > dist/app
    - echo VERSION=1.2.3 > build.env
  artifacts:
    paths: [dist/]
    untracked: true
    reports:
      dotenv: build.env

only-on-tags:
  stage: build
  rules:
    - if: $CI_COMMIT_TAG
  script: [exit 1]

deploy:
  stage: deploy
  needs: [build]
  variables:
    VERSION: from-job
  script:
    - cat dist/app
    - echo "version=$VERSION"

report:
  stage: deploy
  script:
    - ls dist
"#,
    )
    .unwrap();
    let job = Job::new();
    // needs: [build] runs build first; its dotenv variable outranks the job's own.
    let out = job.runnerx_in(project.path(), &["local", "deploy", "--needs"]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stdout.contains("== needed first: build"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("artifacts: 2 path(s) kept"), "{stdout}");
    assert!(
        stdout.contains("downloading artifacts of build"),
        "{stdout}"
    );
    assert!(stdout.contains("\napp-binary\n"), "{stdout}");
    assert!(stdout.contains("version=1.2.3"), "{stdout}");
    assert!(
        stderr.contains("artifacts: untracked is not honoured by runnerx local"),
        "{stderr}"
    );
    // Without needs: every job of the earlier stages the pipeline runs (not the one
    // its rules leave out).
    let out = job.runnerx_in(project.path(), &["local", "report", "--needs"]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stdout.contains("== needed first: build"),
        "{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("needed first: only-on-tags"), "{stdout}");
    assert!(stdout.contains("\napp\n"), "{stdout}");
    // Without --needs the job runs alone, and says how to run its chain.
    let out = job.runnerx_in(project.path(), &["local", "deploy"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("runnerx local --needs runs what it needs first"),
        "{stdout}"
    );
}
