//! What a local run knows of the project on this host: git facts, the predefined
//! `CI_*` variables and the pipeline's in GitLab's precedence (expanded once, as
//! gitlab-runner does), its files, and the context `rules:` are decided in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::gitlab::pipeline;

/// `git -C project args…`'s output, or `None` when git fails. Answers are kept for
/// the process: a local run asks the same questions for every job it decides (`--list`,
/// `--needs`) and again when it runs one, and the project does not change meanwhile.
pub(super) fn git(project: &Path, args: &[&str]) -> Option<String> {
    type Key = (PathBuf, Vec<String>);
    static ANSWERS: std::sync::Mutex<BTreeMap<Key, Option<String>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let key = (
        project.to_path_buf(),
        args.iter().map(|a| (*a).to_string()).collect(),
    );
    if let Some(known) = ANSWERS.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return known;
    }
    let answer = std::process::Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .output()
        .ok()
        .and_then(|out| {
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        });
    if let Ok(mut m) = ANSWERS.lock() {
        m.insert(key, answer.clone());
    }
    answer
}

/// What the command line adds: `--var KEY=VALUE`s, and `--file-var`s as (key, content).
pub(super) struct Given<'a> {
    /// `--var`s.
    pub vars: &'a [String],
    /// `--file-var`s, read.
    pub files: &'a [(String, String)],
}

/// Predefined variables, then the pipeline's, then `--var`s; values expanded in order.
pub(super) fn variables(
    def: &pipeline::JobDef,
    job: &Job,
    registry: Option<&str>,
    name: &str,
    project_dir: &str,
    project: &Path,
    given: &Given,
) -> Result<Vec<(String, String)>> {
    let (overrides, files) = (given.vars, given.files);
    let sha = git(project, &["rev-parse", "HEAD"]).unwrap_or_else(|| "0".repeat(40));
    let branch =
        git(project, &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "local".into());
    let slug = crate::builder::build_cache::slug(&branch);
    let mut ordered: Vec<(String, String)> = vec![
        ("CI".into(), "true".into()),
        ("GITLAB_CI".into(), "true".into()),
        ("CI_JOB_ID".into(), job.id.clone()),
        ("CI_JOB_NAME".into(), def.name.clone()),
        ("CI_JOB_STAGE".into(), def.stage.clone()),
        ("CI_PIPELINE_SOURCE".into(), "push".into()),
        ("CI_PROJECT_NAME".into(), name.into()),
        ("CI_PROJECT_DIR".into(), project_dir.into()),
        (
            "CI_BUILDS_DIR".into(),
            crate::gitlab::stages::config::BUILDS_DIR.into(),
        ),
        ("CI_COMMIT_SHA".into(), sha.clone()),
        ("CI_COMMIT_SHORT_SHA".into(), sha[..8.min(sha.len())].into()),
        ("CI_COMMIT_REF_NAME".into(), branch.clone()),
        ("CI_COMMIT_REF_SLUG".into(), slug),
    ];
    match git(project, &["describe", "--tags", "--exact-match"]) {
        Some(tag) => ordered.push(("CI_COMMIT_TAG".into(), tag)),
        None if branch != "HEAD" => ordered.push(("CI_COMMIT_BRANCH".into(), branch)),
        None => {}
    }
    if let Some(path) = job.project_path.as_deref() {
        ordered.push(("CI_PROJECT_PATH".into(), path.into()));
        ordered.push((
            "CI_PROJECT_NAMESPACE".into(),
            path.rsplit_once('/').map_or("", |(ns, _)| ns).into(),
        ));
        ordered.push((
            "CI_PROJECT_PATH_SLUG".into(),
            crate::builder::build_cache::slug(path),
        ));
    }
    if let Some(url) = git(project, &["remote", "get-url", "origin"])
        && let Some(host) = url
            .split_once("://")
            .and_then(|(_, r)| r.rsplit_once('@').map_or(Some(r), |(_, h)| Some(h)))
            .and_then(|r| r.split('/').next())
    {
        ordered.push(("CI_SERVER_URL".into(), format!("https://{host}")));
        ordered.push((
            "CI_SERVER_HOST".into(),
            host.split(':').next().unwrap_or(host).into(),
        ));
    }
    if let Some(reg) = registry {
        ordered.push(("CI_REGISTRY".into(), reg.to_string()));
        if let Some(path) = job.project_path.as_deref() {
            ordered.push((
                "CI_REGISTRY_IMAGE".into(),
                format!("{reg}/{}", path.to_lowercase()),
            ));
        }
    }
    // One set, in GitLab's precedence: predefined < global < job < --var (the last
    // definition of a key wins).
    ordered.extend(def.variables.iter().cloned());
    for kv in overrides {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--var {kv:?} must be KEY=VALUE")))?;
        ordered.push((k.to_string(), v.to_string()));
    }
    // File-type variables: their content is never expanded.
    ordered.extend(files.iter().cloned());
    let mut raw = def.raw.clone();
    raw.extend(files.iter().map(|(k, _)| k.clone()));
    for (k, _) in &ordered {
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.is_empty() {
            return Err(Error::Usage(format!(
                "variable name {k:?} must be letters, digits and _"
            )));
        }
    }
    // GitLab expands variables inside variables over the whole set (the order they
    // appear in does not matter; `expand: false` ones stay as written at every level),
    // then gitlab-runner expands once more.
    let known: BTreeMap<String, String> = ordered.iter().cloned().collect();
    let (expanded, cycles) = pipeline::expand_all(&known, &raw);
    // Once per cycle: the variables are worked out for every decision and run.
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<Vec<String>>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    for cycle in cycles.into_iter().filter(|c| warned.insert(c.clone())) {
        tracing::warn!(
            "variables {} -> {} refer to each other; they keep their values as written",
            cycle.join(" -> "),
            cycle[0]
        );
    }
    Ok(expanded.into_iter().collect())
}

/// The project's files, relative: git-tracked and untracked-not-ignored ones in a git
/// work tree, else everything but `.git` and `target`.
pub(super) fn project_files(project: &Path) -> Vec<PathBuf> {
    match git(project, &["ls-files", "-co", "--exclude-standard", "-z"]) {
        Some(list) => list
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => walk(project, Path::new("")),
    }
}

/// What `rules:` and `only:` see in a local run: the job's variables, the project's
/// files (`exists`), and as `changes` the files the last commit and the work tree
/// change (unknown without git, where GitLab takes `changes` as true).
pub(super) fn rules_context(vars: &[(String, String)], project: &Path) -> pipeline::Context {
    let mut changed: Option<Vec<String>> = git(project, &["diff", "--name-only", "HEAD~1", "HEAD"])
        .map(|l| l.lines().map(String::from).collect());
    if let Some(list) = changed.as_mut() {
        for extra in [
            git(project, &["diff", "--name-only", "HEAD"]),
            git(project, &["ls-files", "-o", "--exclude-standard"]),
        ]
        .into_iter()
        .flatten()
        {
            list.extend(extra.lines().map(String::from));
        }
    }
    pipeline::Context {
        variables: vars.iter().cloned().collect(),
        files: project_files(project)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        changed,
    }
}

pub(super) fn walk(root: &Path, rel: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name == ".git" || name == "target" {
            continue;
        }
        let r = rel.join(&name);
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(root, &r)),
            Ok(_) => out.push(r),
            Err(_) => {}
        }
    }
    out
}

/// The project directory (`--project-dir`, else the pipeline file's directory) and its
/// name, which names the checkout and the per-project cache.
pub(crate) fn project_of(file: &Path, project_dir: Option<&Path>) -> Result<(PathBuf, String)> {
    let dir = match project_dir {
        Some(d) => d.to_path_buf(),
        // `.gitlab-ci.yml` has the parent "" (not None): that is the current directory.
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let dir =
        std::fs::canonicalize(&dir).map_err(|e| Error::io("open project directory", &dir, e))?;
    let name = dir
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_string_lossy().to_lowercase());
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_one_set_expanded_once_in_gitlabs_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let def = pipeline::JobDef {
            policy: Default::default(),
            allow_failure: Default::default(),
            needs: None,
            dependencies: None,
            artifacts: Default::default(),
            name: "build".into(),
            image: None,
            variables: vec![
                ("IMAGE".into(), "$REGISTRY/library/app".into()),
                ("PRICE".into(), "$$5".into()),
                ("TEMPLATE".into(), "${CI_JOB_NAME}-$REGISTRY".into()),
                ("REGISTRY".into(), "from-yaml".into()),
            ],
            before_script: vec![],
            script: vec![],
            after_script: vec![],
            services: vec![],
            stage: "deploy".into(),
            raw: ["TEMPLATE".to_string()].into(),
            matrix: vec![],
        };
        let env = crate::env::Env::default();
        let mut job = Job::local(None, "app", &env);
        job.project_path = Some("team-a/App".into());
        let vars = variables(
            &def,
            &job,
            Some("harbor.example.com"),
            "app",
            "/builds/local/app",
            dir.path(),
            &Given {
                vars: &["REGISTRY=registry.test:5443".into()],
                files: &[("KUBECONFIG".into(), "server: $NOT_EXPANDED".into())],
            },
        )
        .unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("IMAGE"),
            Some("registry.test:5443/library/app"),
            "--var wins, order-free"
        );
        assert_eq!(get("PRICE"), Some("$5"));
        assert_eq!(
            get("KUBECONFIG"),
            Some("server: $NOT_EXPANDED"),
            "file-type: unexpanded"
        );
        assert_eq!(
            get("TEMPLATE"),
            Some("${CI_JOB_NAME}-$REGISTRY"),
            "expand: false"
        );
        assert_eq!(get("CI_JOB_STAGE"), Some("deploy"));
        assert_eq!(get("CI_PIPELINE_SOURCE"), Some("push"));
        assert_eq!(get("CI_PROJECT_PATH"), Some("team-a/App"));
        assert_eq!(get("CI_PROJECT_NAMESPACE"), Some("team-a"));
        assert_eq!(get("CI_REGISTRY"), Some("harbor.example.com"));
        assert_eq!(
            get("CI_REGISTRY_IMAGE"),
            Some("harbor.example.com/team-a/app")
        );
        assert_eq!(vars.iter().filter(|(k, _)| k == "REGISTRY").count(), 1);
    }

    #[test]
    fn a_bare_pipeline_file_means_the_current_directory() {
        let (dir, name) = project_of(Path::new(".gitlab-ci.yml"), None).unwrap();
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(dir, here);
        assert_eq!(
            name,
            here.file_name().unwrap().to_string_lossy().to_lowercase()
        );
        let (dir, _) = project_of(Path::new("src/main.rs"), None).unwrap();
        assert_eq!(dir, here.join("src"));
    }
}
