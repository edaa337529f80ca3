//! Conformance of `runnerx local`'s pipeline reading with GitLab: one small pipeline
//! per rule, each asserting what GitLab does with it, as its CI/CD YAML reference and
//! gitlab-runner's source describe it (not what runnerx happened to do). No Docker:
//! these drive the same reader `runnerx local` uses.

use std::collections::BTreeMap;

use runnerx::gitlab::pipeline::{AllowFailure, Context, Decision, JobDef, Pipeline, expand};

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
