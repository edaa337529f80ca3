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
    // The log ends as gitlab-runner ends it, then the status as GitLab shows it.
    assert!(
        stdout.contains("ERROR: Job failed: exit code 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("job \"flaky\": failed (allowed to fail)"),
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

const WORKFLOW: &str = r#"workflow:
  name: "pipeline of $CI_PROJECT_NAME"
  rules:
    - if: $CI_COMMIT_BRANCH == "release"
      variables:
        WF_VAR: from-workflow

variables:
  REGISTRY: registry.example.com
  IMAGE: $REGISTRY/app
  TAGGED: $IMAGE:$CI_COMMIT_SHORT_SHA

show:
  script:
    - echo "name=$CI_PROJECT_NAME dir=$CI_PROJECT_DIR slug=$CI_PROJECT_PATH_SLUG builds=$CI_BUILDS_DIR pwd=$(pwd)"
    - echo "tagged=$TAGGED wf=[$WF_VAR] pipeline=[$CI_PIPELINE_NAME]"
    - if [ -n "${KUBECONFIG:-}" ]; then echo "kubeconfig=$KUBECONFIG $(stat -c %a "$KUBECONFIG") $(cat "$KUBECONFIG")"; fi
"#;

#[test]
fn project_variables_nested_expansion_and_workflow_are_gitlabs() {
    require_docker();
    let root = tempfile::tempdir().unwrap();
    // A folder named otherwise than the project, as a clone into a renamed directory.
    let project = root.path().join("02_variables");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join(".gitlab-ci.yml"), WORKFLOW).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&project)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.com/team-a/02-variables.git",
    ]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "add",
        ".",
    ]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "x",
    ]);
    let job = Job::new();

    // workflow: rules match nothing on main: no pipeline, said by --list and by a run.
    let (stdout, _) = text(&job.runnerx_in(&project, &["local", "--list"]));
    assert!(
        stdout.contains("no pipeline would be created here: workflow: rules: no rule matches"),
        "{stdout}"
    );
    let kubeconfig = root.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "server: $NOT_EXPANDED").unwrap();
    let file_var = format!("KUBECONFIG={}", kubeconfig.display());
    let out = job.runnerx_in(&project, &["local", "show", "--file-var", &file_var]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    // A file-type variable: its content, unexpanded, in a 0600 file the variable names.
    assert!(
        stdout.contains(
            "kubeconfig=/builds/team-a/02-variables.tmp/KUBECONFIG 600 server: $NOT_EXPANDED"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("no pipeline would be created here (workflow: rules: no rule matches); running job \"show\" because you named it"), "{stdout}");
    assert!(
        stdout.contains("name=02-variables dir=/builds/team-a/02-variables slug=team-a-02-variables builds=/builds pwd=/builds/team-a/02-variables"),
        "{stdout}\n{stderr}"
    );
    let short = {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&project)
            .args(["rev-parse", "--short=8", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(
        stdout.contains(&format!(
            "tagged=registry.example.com/app:{short} wf=[] pipeline=[pipeline of 02-variables]"
        )),
        "{stdout}"
    );
    // Local runs move artifacts themselves: no word about gitlab-runner's helper.
    assert!(!stderr.contains("no gitlab-runner binary"), "{stderr}");

    // On the branch the workflow names, its rule's variables reach the job.
    git(&["checkout", "-q", "-b", "release"]);
    let (stdout, _) = text(&job.runnerx_in(&project, &["local", "show"]));
    assert!(!stdout.contains("no pipeline would be created"), "{stdout}");
    assert!(stdout.contains("wf=[from-workflow]"), "{stdout}");
}
