//! Unit tests of the pipeline reader (GitLab conformance cases live in the
//! integration tests' `conformance` module).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn includes_extends_default_and_variables_resolve() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join(".git")).unwrap();
    write(
        d.path(),
        "t/template.yml",
        "variables:\n  PLATFORMS: linux/amd64\n  TAGS: latest\n.build:\n  before_script: [echo before]\n  script:\n    - echo build $IMAGE\n  variables:\n    MODE: template\n",
    );
    let main = write(
        d.path(),
        "app/.gitlab-ci.yml",
        "include:\n  - local: /t/template.yml\nvariables:\n  IMAGE: reg/app\n  TAGS: v1\ndefault:\n  after_script: [echo after]\nbuild:\n  extends: .build\n  variables:\n    MODE: job\n",
    );
    let p = Pipeline::load(&main).unwrap();
    assert_eq!(p.jobs(), ["build"]);
    let j = p.job("build").unwrap();
    assert_eq!(j.before_script, ["echo before"]);
    assert_eq!(j.script, ["echo build $IMAGE"]);
    assert_eq!(j.after_script, ["echo after"]);
    let vars: BTreeMap<_, _> = j.variables.iter().cloned().collect();
    assert_eq!(vars["TAGS"], "v1", "the project overrides the template");
    assert_eq!(vars["PLATFORMS"], "linux/amd64");
    assert_eq!(vars["MODE"], "job");
    assert!(p.job(".build").is_err());
    assert!(
        p.job("nope")
            .unwrap_err()
            .to_string()
            .contains("jobs: build")
    );
}

#[test]
fn shape_errors_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.yml", "build:\n  image: x\n");
    assert!(
        Pipeline::load(&f)
            .unwrap_err()
            .to_string()
            .contains("has no script")
    );
    let f = write(d.path(), "b.yml", "build:\n  extends: .missing\n");
    assert!(
        Pipeline::load(&f)
            .unwrap_err()
            .to_string()
            .contains("not defined")
    );
    let f = write(d.path(), "c.yml", "build:\n  script: [1, 2]\n");
    assert!(
        Pipeline::load(&f)
            .unwrap_err()
            .to_string()
            .contains("must be strings")
    );
    let f = write(d.path(), "d.yml", "build: [\n");
    assert!(
        Pipeline::load(&f)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{}:", f.display()))
    );
    let f = write(
        d.path(),
        "e.yml",
        "include:\n  - remote: https://x/y.yml\nb:\n  script: [x]\n",
    );
    assert!(
        Pipeline::load(&f)
            .unwrap_err()
            .to_string()
            .contains("only `local:`")
    );
}

#[test]
fn variables_expand_like_gitlab() {
    let known = BTreeMap::from([
        ("A".to_string(), "x".to_string()),
        ("B_1".to_string(), "y".to_string()),
    ]);
    assert_eq!(expand("$A/${B_1}:$NOPE-$$A", &known), "x/y:-$A");
    assert_eq!(expand("cost: 5$", &known), "cost: 5$");
}

#[test]
fn references_resolve_nested_and_hidden_keys_hold_lists() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".gitlab-ci.yml");
    std::fs::write(
        &f,
        concat!(
            ".setup: &setup\n  - echo setup\n",
            ".login:\n  script:\n    - echo login\n    - !reference [.setup]\n",
            ".vars:\n  variables:\n    REGION: eu\n",
            "build:\n  variables:\n    REGION: !reference [.vars, variables, REGION]\n",
            "  script:\n    - !reference [.login, script]\n    - *setup\n    - echo build $REGION\n",
        ),
    )
    .unwrap();
    let p = Pipeline::load(&f).unwrap();
    let job = p.job("build").unwrap();
    assert_eq!(
        job.script,
        [
            "echo login",
            "echo setup",
            "echo setup",
            "echo build $REGION"
        ]
    );
    assert_eq!(job.variables, [("REGION".to_string(), "eu".to_string())]);
    assert_eq!(p.jobs(), ["build"]);
    std::fs::write(&f, "build:\n  script:\n    - !reference [.nope, script]\n").unwrap();
    let e = Pipeline::load(&f).unwrap_err().to_string();
    assert!(e.contains("!reference [.nope, script]"), "{e}");
}

#[test]
fn an_unknown_keyword_is_an_error_naming_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".gitlab-ci.yml");
    std::fs::write(&f, "build:\n  imgae: docker:27\n  script: [echo hi]\n").unwrap();
    let e = Pipeline::load(&f).unwrap_err().to_string();
    assert!(
        e.contains("unknown keyword \"imgae\"") && e.contains("did you mean \"image\""),
        "{e}"
    );
    std::fs::write(
        &f,
        "build:\n  rules: [{when: always}]\n  script: [echo hi]\n",
    )
    .unwrap();
    assert!(Pipeline::load(&f).unwrap().job("build").is_ok());
}

#[test]
fn a_matrix_gives_every_combination() {
    let v: Value =
        serde_json::json!([{"ARCH": ["amd64", "arm64"], "OS": "linux"}, {"ARCH": "riscv64"}]);
    let m = matrix_of(&v).unwrap();
    let names: Vec<String> = m
        .iter()
        .map(|c| {
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        names,
        ["ARCH=amd64,OS=linux", "ARCH=arm64,OS=linux", "ARCH=riscv64"]
    );
}

#[test]
fn bash_script_has_gitlab_runner_shape() {
    let files = std::collections::BTreeSet::from(["KUBECONFIG".to_string()]);
    let s = bash_script(
        &[
            ("K".into(), "it's".into()),
            ("KUBECONFIG".into(), "apiVersion: v1".into()),
        ],
        &files,
        Some("/builds/app"),
        &["echo hi".into()],
    );
    // A file-type variable holds the path of a 0600 file with its content.
    assert!(
        s.contains(
            "printf '\\''%s'\\'' '\\''apiVersion: v1'\\'' > '\\''/builds/app.tmp/KUBECONFIG'\\''"
        ),
        "{s}"
    );
    assert!(
        s.contains("export KUBECONFIG='\\''/builds/app.tmp/KUBECONFIG'\\''"),
        "{s}"
    );
    assert!(s.starts_with("#!/usr/bin/env bash\n\ntrap exit 1 TERM\n"));
    assert!(s.contains("set -o errexit"));
    assert!(s.contains("( trap 'exit 1' TERM; eval '"));
    assert!(s.ends_with(") < /dev/null\nexit 0\n"));
    assert!(s.contains(r"export K='\''it'\''\'\'''\''s'\''"), "{s}");
}

fn expanded(vars: &[(&str, &str)], raw: &[&str]) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let raw = raw.iter().map(|s| s.to_string()).collect();
    super::expand_all(&vars, &raw)
}

#[test]
fn variables_inside_variables_are_expanded_at_every_depth() {
    let (v, cycles) = expanded(
        &[
            ("TAGGED", "$IMAGE:$CI_COMMIT_SHORT_SHA"),
            ("IMAGE", "$REGISTRY/override/app"),
            ("REGISTRY", "registry.example.com"),
            ("CI_COMMIT_SHORT_SHA", "53156ff3"),
            ("DEEP", "${LVL2}"),
            ("LVL2", "${LVL1}-2"),
            ("LVL1", "one"),
            ("PRICE", "$$5 and $UNKNOWN."),
        ],
        &[],
    );
    assert_eq!(v["TAGGED"], "registry.example.com/override/app:53156ff3");
    assert_eq!(v["DEEP"], "one-2");
    assert_eq!(v["PRICE"], "$5 and .");
    assert!(cycles.is_empty());
}

#[test]
fn expand_false_holds_at_every_level_and_cycles_keep_their_values() {
    let (v, cycles) = expanded(
        &[
            ("RAW", "$REGISTRY/x"),
            ("USES_RAW", "$RAW:1"),
            ("REGISTRY", "registry.example.com"),
            ("A", "$B"),
            ("B", "a$A"),
            ("C", "c"),
        ],
        &["RAW"],
    );
    assert_eq!(v["RAW"], "$REGISTRY/x");
    assert_eq!(v["USES_RAW"], "$REGISTRY/x:1");
    assert_eq!((v["A"].as_str(), v["B"].as_str()), ("$B", "a$A"));
    assert_eq!(v["C"], "c");
    assert_eq!(cycles, vec![vec!["A".to_string(), "B".to_string()]]);
}
