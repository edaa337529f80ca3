//! Every CI template and example is valid YAML of GitLab CI's shape (as runnerx reads
//! it): includes resolve, `extends` targets exist, every visible job has a script.

use std::path::{Path, PathBuf};

use runnerx::gitlab::pipeline::Pipeline;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.to_string_lossy().ends_with(".yml") || p.to_string_lossy().ends_with(".yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_template_and_example_is_valid_gitlab_ci() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    yaml_files(&root.join("ci-templates"), &mut files);
    yaml_files(&root.join("scripts/seed-base"), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let p = Pipeline::load(f).unwrap_or_else(|e| panic!("{e}"));
        for job in p.jobs() {
            let def = p
                .job(&job)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(
                !def.script.is_empty(),
                "{}: job {job} has an empty script",
                f.display()
            );
        }
    }
    // The template's hidden job is what projects extend.
    let template =
        Pipeline::load(&root.join("ci-templates/multiarch-build.gitlab-ci.yml")).unwrap();
    assert!(
        template.jobs().is_empty(),
        "the template must only define hidden jobs"
    );
    let example = Pipeline::load(&root.join("ci-templates/examples/hello/.gitlab-ci.yml")).unwrap();
    let build = example.job("build").unwrap();
    assert!(
        build
            .script
            .iter()
            .any(|l| l.contains("docker buildx build")),
        "{build:?}"
    );
    assert!(
        build
            .script
            .iter()
            .any(|l| l.contains("image-manifest=true,oci-mediatypes=true"))
    );
    assert!(
        build
            .variables
            .iter()
            .any(|(k, v)| k == "RUNNERX_PLATFORMS" && v == "linux/amd64,linux/arm64")
    );
    // Per-arch: each matrix job pushes by digest; the join job uses runnerx itself.
    let per_arch =
        Pipeline::load(&root.join("ci-templates/examples/per-arch/.gitlab-ci.yml")).unwrap();
    let build = per_arch.job("build").unwrap();
    assert!(
        build
            .script
            .iter()
            .any(|l| l.contains("push-by-digest=true")),
        "{build:?}"
    );
    let join = per_arch.job("manifest").unwrap();
    assert!(
        join.script
            .iter()
            .any(|l| l.contains("runnerx manifest create")),
        "{join:?}"
    );
}
