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
    - when: always
  variables:
    PRICE: $$5
    TEMPLATE:
      value: ${CI_JOB_NAME}-x
      expand: false
  script:
    - !reference [.login, script]
    - *setup
    - echo "image=$IMAGE stage=$CI_JOB_STAGE price=$PRICE source=$CI_PIPELINE_SOURCE template=$TEMPLATE"
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
            "image=registry.test:5443/library/app stage=package price=$5 source=push template=${CI_JOB_NAME}-x"
        ),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("logged-in") && stdout.contains("set-up"),
        "{stdout}"
    );
    assert!(
        stderr.contains("rules is not honoured by runnerx local"),
        "{stderr}"
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
