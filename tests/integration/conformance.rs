//! Conformance of `runnerx local`'s pipeline reading with GitLab: one small pipeline
//! per rule, each asserting what GitLab does with it, as its CI/CD YAML reference and
//! gitlab-runner's source describe it (not what runnerx happened to do). No Docker:
//! these drive the same reader `runnerx local` uses.

use std::collections::BTreeMap;

use runnerx::gitlab::pipeline::{
    AllowFailure, Context, Decision, JobDef, Pipeline, expand, expand_all,
};

fn load(yaml: &str) -> Pipeline {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".gitlab-ci.yml");
    std::fs::write(&file, yaml).unwrap();
    Pipeline::load(&file).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn job(yaml: &str, name: &str) -> JobDef {
    load(yaml).job(name).unwrap()
}

/// A push pipeline on `branch` (or a tag when it starts with `tag:`).
fn on(reference: &str, extra: &[(&str, &str)]) -> Context {
    let mut variables = BTreeMap::from([("CI_PIPELINE_SOURCE".to_string(), "push".to_string())]);
    match reference.strip_prefix("tag:") {
        Some(tag) => variables.insert("CI_COMMIT_TAG".into(), tag.into()),
        None => variables.insert("CI_COMMIT_BRANCH".into(), reference.into()),
    };
    for (k, v) in extra {
        variables.insert((*k).into(), (*v).into());
    }
    Context {
        variables,
        files: vec![],
        changed: Some(vec![]),
    }
}

fn runs(def: &JobDef, ctx: &Context) -> bool {
    matches!(def.decide(ctx).unwrap(), Decision::Run { .. })
}

fn when(def: &JobDef, ctx: &Context) -> String {
    match def.decide(ctx).unwrap() {
        Decision::Run { when, .. } => when,
        Decision::Skip(why) => format!("skipped: {why}"),
    }
}

#[test]
fn rules_if_compares_variables_and_the_first_matching_rule_wins() {
    // Docs (rules:if): a job with rules runs when a rule matches; no match, no job.
    let yaml = "deploy:\n  script: [x]\n  rules:\n    - if: $CI_COMMIT_BRANCH == \"main\"\n";
    let def = job(yaml, "deploy");
    assert!(runs(&def, &on("main", &[])));
    assert!(!runs(&def, &on("feature", &[])));
    // The MR-pipeline pattern: when: never first, then a catch-all.
    let yaml = "test:\n  script: [x]\n  rules:\n    - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"\n      when: never\n    - when: always\n";
    let def = job(yaml, "test");
    assert_eq!(when(&def, &on("main", &[])), "always");
    let mr = on("main", &[("CI_PIPELINE_SOURCE", "merge_request_event")]);
    assert!(!runs(&def, &mr));
}

#[test]
fn expressions_follow_gitlabs_operators_and_precedence() {
    let case = |expr: &str, vars: &[(&str, &str)]| {
        let yaml = format!("j:\n  script: [x]\n  rules:\n    - if: '{expr}'\n");
        runs(&job(&yaml, "j"), &on("main", vars))
    };
    // A variable alone: defined and not empty.
    assert!(case("$A", &[("A", "1")]));
    assert!(!case("$A", &[("A", "")]));
    assert!(!case("$A", &[]));
    // null is an undefined variable; an empty one is "".
    assert!(case("$UNSET == null", &[]));
    assert!(case("$EMPTY == \"\"", &[("EMPTY", "")]));
    assert!(!case("$EMPTY == null", &[("EMPTY", "")]));
    // Variable against variable.
    assert!(case("$A == $B", &[("A", "x"), ("B", "x")]));
    assert!(case("$A != $B", &[("A", "x"), ("B", "y")]));
    // Regexes (RE2), flags, negation, and a pattern held in a variable.
    assert!(case("$CI_COMMIT_BRANCH =~ /^ma/", &[]));
    assert!(case("$CI_COMMIT_BRANCH =~ /^MA/i", &[]));
    assert!(case("$CI_COMMIT_BRANCH !~ /^release/", &[]));
    assert!(case(
        "$CI_COMMIT_BRANCH =~ $PATTERN",
        &[("PATTERN", "/^main$/")]
    ));
    // && binds tighter than ||; parentheses group.
    let v = [("A", "1"), ("B", "0"), ("C", "0")];
    assert!(case("$A == \"1\" || $B == \"1\" && $C == \"1\"", &v));
    assert!(!case("($A == \"1\" || $B == \"1\") && $C == \"1\"", &v));
}

#[test]
fn rules_exists_and_changes_match_path_globs() {
    let yaml = "build:\n  script: [x]\n  rules:\n    - exists: [Dockerfile, \"**/*.go\"]\n";
    let def = job(yaml, "build");
    let mut ctx = on("main", &[]);
    assert!(!runs(&def, &ctx));
    ctx.files = vec!["cmd/tool/main.go".into()];
    assert!(runs(&def, &ctx), "**/ spans directories");
    ctx.files = vec!["Dockerfile".into()];
    assert!(runs(&def, &ctx));

    let yaml = "docs:\n  script: [x]\n  rules:\n    - changes: [\"manual/**/*.txt\", \"{NOTES,HISTORY}.txt\"]\n";
    let def = job(yaml, "docs");
    let mut ctx = on("main", &[]);
    ctx.changed = Some(vec!["src/main.rs".into()]);
    assert!(!runs(&def, &ctx));
    ctx.changed = Some(vec!["manual/guide/setup.txt".into()]);
    assert!(runs(&def, &ctx));
    ctx.changed = Some(vec!["HISTORY.txt".into()]);
    assert!(runs(&def, &ctx), "braces alternate");
    // Without a diff base (new branch, scheduled pipeline), changes is true.
    ctx.changed = None;
    assert!(runs(&def, &ctx));
}

#[test]
fn rules_set_when_variables_and_allow_failure() {
    let yaml = "variables:\n  TARGET: staging\nrelease:\n  script: [x]\n  variables:\n    TARGET: job\n  rules:\n    - if: $CI_COMMIT_TAG\n      when: manual\n      allow_failure: true\n      variables:\n        TARGET: production\n    - when: on_success\n";
    let def = job(yaml, "release");
    match def.decide(&on("tag:v1.0", &[])).unwrap() {
        Decision::Run {
            when,
            variables,
            allow_failure,
        } => {
            assert_eq!(when, "manual");
            assert_eq!(
                variables,
                [("TARGET".to_string(), "production".to_string())]
            );
            assert_eq!(allow_failure, Some(serde_json::Value::Bool(true)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(when(&def, &on("main", &[])), "on_success");
}

#[test]
fn only_and_except_match_refs_keywords_regexes_and_variables() {
    let def = job("j:\n  script: [x]\n  only: [main, /^release-.*$/]\n", "j");
    assert!(runs(&def, &on("main", &[])));
    assert!(runs(&def, &on("release-1.2", &[])));
    assert!(!runs(&def, &on("feature", &[])));
    let def = job("j:\n  script: [x]\n  except: [tags]\n", "j");
    assert!(runs(&def, &on("main", &[])));
    assert!(!runs(&def, &on("tag:v1", &[])));
    let def = job(
        "j:\n  script: [x]\n  only:\n    refs: [branches]\n    variables: [$DEPLOY == \"true\"]\n",
        "j",
    );
    assert!(runs(&def, &on("main", &[("DEPLOY", "true")])));
    assert!(!runs(&def, &on("main", &[])));
    assert!(!runs(&def, &on("tag:v1", &[("DEPLOY", "true")])));
    // Neither only nor rules: GitLab's default only: [branches, tags].
    let def = job("j:\n  script: [x]\n", "j");
    assert!(runs(&def, &on("tag:v1", &[])));
    let detached = Context {
        variables: BTreeMap::from([("CI_PIPELINE_SOURCE".into(), "push".into())]),
        ..Context::default()
    };
    assert!(!runs(&def, &detached));
    // rules with only/except is a GitLab error.
    let def = job(
        "j:\n  script: [x]\n  only: [main]\n  rules:\n    - when: always\n",
        "j",
    );
    assert!(def.decide(&on("main", &[])).is_err());
}

#[test]
fn inherit_limits_what_default_and_global_variables_give_a_job() {
    let base =
        "default:\n  image: alpine:3\n  before_script: [echo setup]\nvariables:\n  A: a\n  B: b\n";
    let all = job(&format!("{base}j:\n  script: [x]\n"), "j");
    assert_eq!(all.image.as_deref(), Some("alpine:3"));
    assert_eq!(all.before_script, ["echo setup"]);
    let none = job(
        &format!("{base}j:\n  script: [x]\n  inherit:\n    default: false\n    variables: false\n"),
        "j",
    );
    assert_eq!(none.image, None);
    assert!(none.before_script.is_empty());
    assert!(none.variables.is_empty(), "{:?}", none.variables);
    let some = job(
        &format!("{base}j:\n  script: [x]\n  inherit:\n    default: [image]\n    variables: [B]\n"),
        "j",
    );
    assert_eq!(some.image.as_deref(), Some("alpine:3"));
    assert!(some.before_script.is_empty());
    assert_eq!(some.variables, [("B".to_string(), "b".to_string())]);
}

#[test]
fn allow_failure_exit_codes_allow_only_those_codes() {
    let def = job(
        "j:\n  script: [exit 137]\n  allow_failure:\n    exit_codes: [137, 255]\n",
        "j",
    );
    assert_eq!(def.allow_failure, AllowFailure::ExitCodes(vec![137, 255]));
    assert!(def.allow_failure.allows(137) && !def.allow_failure.allows(1));
    let one = job(
        "j:\n  script: [x]\n  allow_failure:\n    exit_codes: 3\n",
        "j",
    );
    assert!(one.allow_failure.allows(3));
    assert!(
        job("j:\n  script: [x]\n  allow_failure: true\n", "j")
            .allow_failure
            .allows(1)
    );
    assert!(!job("j:\n  script: [x]\n", "j").allow_failure.allows(1));
}

#[test]
fn yaml_features_resolve_as_gitlab_reads_them() {
    // !reference (nested), anchors of lists in hidden keys, extends + default.
    let yaml = ".login: &login\n  - echo login\n.base:\n  script:\n    - !reference [.setup, script]\n    - echo base\n.setup:\n  script: [echo setup]\nj:\n  extends: .base\n  before_script: *login\n";
    let def = job(yaml, "j");
    assert_eq!(def.script, ["echo setup", "echo base"]);
    assert_eq!(def.before_script, ["echo login"]);
    // An unknown keyword is an error naming the nearest valid one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".gitlab-ci.yml");
    std::fs::write(&file, "j:\n  imgae: alpine\n  script: [x]\n").unwrap();
    let e = Pipeline::load(&file).unwrap_err().to_string();
    assert!(e.contains("\"imgae\"") && e.contains("\"image\""), "{e}");
}

#[test]
fn variables_expand_as_gitlab_runner_does() {
    // gitlab-runner's JobVariables.Expand: each value goes once through os.Expand
    // with the other variables' values as written, so order does not matter and a
    // reference is followed one level.
    let known: BTreeMap<String, String> = [
        ("IMAGE", "$REGISTRY/library/app"),
        ("REGISTRY", "registry.test:5443"),
        ("A", "$B"),
        ("B", "$C"),
        ("C", "c"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    assert_eq!(
        expand(&known["IMAGE"], &known),
        "registry.test:5443/library/app"
    );
    assert_eq!(expand(&known["A"], &known), "$C");
    assert_eq!(expand("${REGISTRY}/x", &known), "registry.test:5443/x");
    // $$ is a literal $, an unknown variable is empty.
    assert_eq!(expand("$$HOME and $NOPE.", &known), "$HOME and .");
}

#[test]
fn parallel_matrix_expands_in_the_order_written() {
    // Docs (parallel:matrix): one job per combination, named `job: [values]` with the
    // values in the order the keys are written.
    let def = job(
        "deploystacks:\n  script: [x]\n  parallel:\n    matrix:\n      - STACK: [monitoring, app1]\n        PROVIDER: aws\n      - PROVIDER: [gcp, vultr]\n        STACK: data\n",
        "deploystacks",
    );
    let names: Vec<String> = def
        .matrix
        .iter()
        .map(|combo| {
            let values: Vec<&str> = combo.iter().map(|(_, v)| v.as_str()).collect();
            format!("deploystacks: [{}]", values.join(", "))
        })
        .collect();
    assert_eq!(
        names,
        [
            "deploystacks: [monitoring, aws]",
            "deploystacks: [app1, aws]",
            "deploystacks: [gcp, data]",
            "deploystacks: [vultr, data]",
        ]
    );
    // Jobs are listed in the order of the file.
    let p = load("zeta:\n  script: [x]\nalpha:\n  script: [x]\n");
    assert_eq!(p.jobs(), ["zeta", "alpha"]);
}

#[test]
fn variables_inside_variables_expand_as_gitlab_and_gitlab_runner_together_do() {
    // GitLab expands variables inside variables before the job reaches the runner
    // (nested expansion), and gitlab-runner expands once more: a chain resolves at any
    // depth, in any order; `expand: false` holds at every level; a cycle keeps its
    // values as written.
    let p = load(
        "variables:\n  REGISTRY: registry.example.com\n  IMAGE: $REGISTRY/override/app\n  TAGGED: $IMAGE:$CI_COMMIT_SHORT_SHA\n  LVL1: one\n  LVL2: ${LVL1}-two\n  DEEP: ${LVL2}\n  RAW:\n    value: $REGISTRY/raw\n    expand: false\n  USES_RAW: $RAW:1\n  A: $B\n  B: x$A\nj:\n  variables:\n    JOBREF: $REG/job/app:$CI_COMMIT_REF_NAME\n    REG: $REGISTRY\n  script: [x]\n",
    );
    let def = p.job("j").unwrap();
    let mut known: BTreeMap<String, String> = def.variables.iter().cloned().collect();
    known.insert("CI_COMMIT_SHORT_SHA".into(), "53156ff3".into());
    known.insert("CI_COMMIT_REF_NAME".into(), "main".into());
    let (v, cycles) = expand_all(&known, &def.raw);
    assert_eq!(v["TAGGED"], "registry.example.com/override/app:53156ff3");
    assert_eq!(v["DEEP"], "one-two");
    assert_eq!(v["JOBREF"], "registry.example.com/job/app:main");
    assert_eq!(v["RAW"], "$REGISTRY/raw");
    assert_eq!(v["USES_RAW"], "$REGISTRY/raw:1");
    assert_eq!((v["A"].as_str(), v["B"].as_str()), ("$B", "x$A"));
    assert_eq!(cycles.len(), 1);
}

#[test]
fn workflow_rules_decide_whether_a_pipeline_exists_and_add_variables() {
    // CI/CD YAML reference, workflow: rules are evaluated like job rules; no match or
    // `when: never` means no pipeline; the matching rule's variables rank above global
    // ones and below the job's; workflow: name is CI_PIPELINE_NAME.
    let yaml = "workflow:\n  name: 'Pipeline for $CI_COMMIT_BRANCH'\n  auto_cancel:\n    on_new_commit: interruptible\n  rules:\n    - if: $CI_COMMIT_BRANCH == \"wip\"\n      when: never\n    - if: $CI_COMMIT_BRANCH == \"main\"\n      variables:\n        WF_VAR: from-workflow\n        SHARED: workflow\nvariables:\n  SHARED: global\n  WF_VAR: global\nj:\n  variables:\n    SHARED: job\n  script: [x]\n";
    let mut p = load(yaml);
    let main = p.workflow(&on("main", &[])).unwrap();
    assert_eq!(main.skip, None);
    assert_eq!(main.unhonoured, ["workflow: auto_cancel"]);
    assert!(p.workflow(&on("feature", &[])).unwrap().skip.is_some());
    let wip = p.workflow(&on("wip", &[])).unwrap().skip.unwrap();
    assert!(wip.contains("when: never"), "{wip}");
    p.set_workflow_variables(main.variables);
    let vars: BTreeMap<String, String> = p.job("j").unwrap().variables.into_iter().collect();
    assert_eq!(vars["WF_VAR"], "from-workflow");
    assert_eq!(vars["SHARED"], "job");
    assert_eq!(vars["CI_PIPELINE_NAME"], "Pipeline for $CI_COMMIT_BRANCH");
    // Without workflow: every push creates a pipeline.
    assert_eq!(
        load("j:\n  script: [x]\n")
            .workflow(&on("x", &[]))
            .unwrap()
            .skip,
        None
    );
}

#[test]
fn artifacts_come_from_earlier_stages_or_needs_never_from_the_same_stage() {
    // CI/CD YAML reference (artifacts, dependencies, needs): a job gets the artifacts
    // of every job of earlier stages, or of the `dependencies:` listed, or with needs:
    // of the jobs it needs; a job of its own stage only through needs:.
    let p = load(
        "stages: [build, test]\nb1:\n  stage: build\n  script: [x]\nb2:\n  stage: build\n  script: [x]\nt1:\n  stage: test\n  script: [x]\nt2:\n  stage: test\n  dependencies: [b2]\n  script: [x]\nt3:\n  stage: test\n  needs: [t1]\n  script: [x]\n",
    );
    let stages = p.stages();
    let takes = |job: &str, from: &str, stage: &str| {
        p.job(job).unwrap().takes_artifacts_of(from, stage, &stages)
    };
    assert!(takes("t1", "b1", "build") && takes("t1", "b2", "build"));
    assert!(!takes("b2", "b1", "build"), "same stage, not needed");
    assert!(!takes("t2", "b1", "build") && takes("t2", "b2", "build"));
    assert!(takes("t3", "t1", "test") && !takes("t3", "b1", "build"));
}

#[test]
fn every_unknown_keyword_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".gitlab-ci.yml");
    std::fs::write(
        &file,
        "a:\n  scirpt: [x]\n  script: [x]\nb:\n  imgae: alpine\n  stgae: test\n  script: [x]\n",
    )
    .unwrap();
    let e = Pipeline::load(&file).unwrap_err().to_string();
    for bad in ["\"scirpt\"", "\"imgae\"", "\"stgae\""] {
        assert!(e.contains(bad), "{bad} missing from: {e}");
    }
    assert!(!e.contains('\n'), "one line: {e}");
}
