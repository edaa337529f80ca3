//! `runnerx local JOB [-f .gitlab-ci.yml]`: one pipeline job on this host through the
//! executor's own stages — the replacement for the removed `gitlab-runner exec`.
//!
//! The job is resolved (`pipeline`), predefined `CI_*` variables are added, the project
//! directory is copied into the builder as the checkout (get_sources), and each stage
//! script, in gitlab-runner's bash shape, goes through the same `prepare`, `run` and
//! `cleanup` code gitlab-runner drives. after_script runs even when the build fails;
//! cleanup always runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::builder::engine::Engine;
use crate::cli::LocalArgs;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::gitlab::pipeline::{self, Pipeline};
use crate::gitlab::services::ResponseVariable;
use crate::settings::Settings;

/// Runs the job (every `parallel: matrix` combination, or those `--matrix` picks), or
/// lists the jobs (`--list`), or prints the resolved job (`--preview`).
pub(crate) async fn local(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
) -> Result<()> {
    let pipeline = Pipeline::load(&args.file)?;
    if args.list {
        for name in pipeline.jobs() {
            let def = pipeline.job(&name)?;
            let runs = if def.matrix.is_empty() {
                String::new()
            } else {
                format!(" ({} matrix combinations)", def.matrix.len())
            };
            println!("{name}\tstage {}{runs}", def.stage);
        }
        return Ok(());
    }
    let Some(name) = args.job.as_deref() else {
        return Err(Error::Usage(
            "name the job to run (runnerx local --list shows them)".into(),
        ));
    };
    if args.preview {
        let job = pipeline.preview(name)?;
        // JSON is YAML (1.2): the job as runnerx local reads it.
        println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
        return Ok(());
    }
    let def = pipeline.job(name)?;
    if def.matrix.is_empty() {
        return run_job(settings, args, env, cancel, def).await;
    }
    let picks: Vec<(&str, &str)> = args
        .matrix
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| Error::Usage(format!("--matrix {kv:?} must be KEY=VALUE")))
        })
        .collect::<Result<_>>()?;
    let chosen: Vec<&Vec<(String, String)>> = def
        .matrix
        .iter()
        .filter(|combo| {
            picks
                .iter()
                .all(|(k, v)| combo.iter().any(|(ck, cv)| ck == k && cv == v))
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "no parallel: matrix combination of {name:?} has {}",
            args.matrix.join(", ")
        )));
    }
    let mut first_failure = None;
    for combo in chosen {
        let values: Vec<&str> = combo.iter().map(|(_, v)| v.as_str()).collect();
        let mut one = def.clone();
        // GitLab names each one `job: [v1, v2]` and sets its variables at job level.
        one.name = format!("{name}: [{}]", values.join(", "));
        one.variables.extend(combo.iter().cloned());
        println!("\x1b[36;1m== {}\x1b[0;m", one.name);
        if let Err(e) = run_job(settings, args, env, cancel, one).await {
            first_failure.get_or_insert(e);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Runs one job through the executor's own stages.
async fn run_job(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
    def: pipeline::JobDef,
) -> Result<()> {
    let (project, name) = project_of(&args.file, args.project_dir.as_deref())?;
    let project_dir = format!("{}/local/{name}", crate::gitlab::stages::config::BUILDS_DIR);

    let mut job = Job::local(def.image.clone(), &name, env);
    job.project_path = args.project.clone().or_else(|| {
        git(&project, &["remote", "get-url", "origin"])
            .as_deref()
            .and_then(crate::gitlab::job::repo_path)
    });
    let registry = settings.registries.first().map(|r| r.host.as_str());
    let vars = variables(
        &def,
        &job,
        registry,
        &name,
        &project_dir,
        &project,
        &args.vars,
    )?;
    let job_vars: Vec<ResponseVariable> = vars
        .iter()
        .map(|(key, value)| ResponseVariable {
            key: key.clone(),
            value: value.clone(),
            file: false,
        })
        .collect();
    job.services = crate::gitlab::services::services(&def.services, &job_vars);
    let engine = Engine::connect().await?;
    let tmp = tempdir()?;

    let config = crate::gitlab::stages::config::output(Some(&job));
    tracing::info!(
        "running job {:?} as {} with {} {}",
        def.name,
        job.id,
        config.driver.name,
        config.driver.version
    );
    let result = async {
        crate::gitlab::stages::prepare::prepare(settings, &job, &engine, cancel).await?;
        let run = |stage: &'static str, commands: Vec<String>, vars: Vec<(String, String)>| {
            let tmp = tmp.clone();
            let job = job.clone();
            let engine = engine.clone();
            let project_dir = project_dir.clone();
            async move {
                let path = tmp.join(format!("{stage}.sh"));
                let cd = (stage != "prepare_script").then_some(project_dir.as_str());
                write_private(&path, &pipeline::bash_script(&vars, cd, &commands))?;
                section(stage);
                crate::gitlab::stages::run::run(&job, &engine, &path, stage, cancel).await
            }
        };
        run(
            "prepare_script",
            vec!["echo \"Running on $(hostname) via runnerx local...\"".into()],
            vars.clone(),
        )
        .await?;
        section("get_sources");
        get_sources(&engine, &job, &project, &project_dir).await?;
        let mut build = def.before_script.clone();
        build.extend(def.script.clone());
        let outcome = run("build_script", build, vars.clone()).await;
        if !def.after_script.is_empty() {
            let status = if outcome.is_ok() { "success" } else { "failed" };
            let mut after_vars = vars.clone();
            after_vars.push(("CI_JOB_STATUS".into(), status.into()));
            if let Err(e) = run("after_script", def.after_script.clone(), after_vars).await {
                tracing::warn!("after_script failed (ignored, as in GitLab): {e}");
            }
        }
        outcome
    }
    .await;
    section("cleanup");
    if let Err(e) = crate::gitlab::stages::cleanup::cleanup(settings, &job, &engine).await {
        tracing::warn!("cleanup: {e}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    match &result {
        Ok(()) => println!("\x1b[32;1mJob succeeded\x1b[0;m"),
        Err(Error::Script { code }) => {
            println!("\x1b[31;1mERROR: Job failed: exit code {code}\x1b[0;m")
        }
        Err(_) => {}
    }
    result
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

fn section(stage: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\x1b[36;1m== {stage}\x1b[0;m");
    let _ = out.flush();
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("runnerx-local-{}", crate::host::random_hex(6)));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    Ok(dir)
}

/// Stage scripts hold every variable: owner-only, like gitlab-runner's 0700 scripts.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

fn git(project: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Predefined variables, then the pipeline's, then `--var`s; values expanded in order.
fn variables(
    def: &pipeline::JobDef,
    job: &Job,
    registry: Option<&str>,
    name: &str,
    project_dir: &str,
    project: &Path,
    overrides: &[String],
) -> Result<Vec<(String, String)>> {
    let sha = git(project, &["rev-parse", "HEAD"]).unwrap_or_else(|| "0".repeat(40));
    let branch =
        git(project, &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "local".into());
    let slug: String = branch
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
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
        ("CI_COMMIT_REF_SLUG".into(), slug.trim_matches('-').into()),
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
            path.to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect(),
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
    for (k, _) in &ordered {
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.is_empty() {
            return Err(Error::Usage(format!(
                "variable name {k:?} must be letters, digits and _"
            )));
        }
    }
    // Every value is expanded once against the whole set's values as written, so the
    // order variables appear in does not matter; `expand: false` ones stay as written.
    let known: BTreeMap<String, String> = ordered.iter().cloned().collect();
    let mut out: Vec<(String, String)> = vec![];
    for (k, v) in &known {
        let v = if def.raw.contains(k) {
            v.clone()
        } else {
            pipeline::expand(v, &known)
        };
        out.push((k.clone(), v));
    }
    Ok(out)
}

/// Copies the project into the builder (git-tracked and untracked-not-ignored files
/// when it is a git work tree, else everything but `.git` and `target`).
async fn get_sources(engine: &Engine, job: &Job, project: &Path, project_dir: &str) -> Result<()> {
    let files: Vec<PathBuf> = match git(project, &["ls-files", "-co", "--exclude-standard", "-z"]) {
        Some(list) => list
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => walk(project, Path::new("")),
    };
    // The checkout belongs to the job user, as a clone by the job would (privileged
    // jobs run as root and may write anywhere anyway).
    let owned = |h: &mut tar::Header| {
        h.set_uid(u64::from(crate::builder::ROOTLESS_UID));
        h.set_gid(u64::from(crate::builder::ROOTLESS_UID));
        h.set_mtime(0);
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let root = project_dir.trim_start_matches('/');
    let mut dirs = std::collections::BTreeSet::new();
    for rel in &files {
        let mut dir = Path::new(root).join(rel);
        while dir.pop() && dir.as_os_str().len() > "builds".len() {
            dirs.insert(dir.clone());
        }
    }
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        owned(&mut h);
        b.append_data(&mut h, dir, std::io::empty())
            .map_err(|e| Error::io("pack", dir, e))?;
    }
    for rel in &files {
        let full = project.join(rel);
        let name = Path::new(root).join(rel);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let mut h = tar::Header::new_gnu();
        h.set_metadata(&meta);
        owned(&mut h);
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(|e| Error::io("read project file", &full, e))?;
            b.append_link(&mut h, &name, target)
                .map_err(|e| Error::io("pack", &full, e))?;
        } else if meta.is_file() {
            let f =
                std::fs::File::open(&full).map_err(|e| Error::io("read project file", &full, e))?;
            b.append_data(&mut h, &name, f)
                .map_err(|e| Error::io("read project file", &full, e))?;
        }
    }
    let tar = b.into_inner().map_err(|e| Error::io("pack", project, e))?;
    println!(
        "copying {} files of {} into {project_dir}",
        files.len(),
        project.display()
    );
    engine.upload(&job.builder_name(), tar).await
}

fn walk(root: &Path, rel: &Path) -> Vec<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_one_set_expanded_once_in_gitlabs_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let def = pipeline::JobDef {
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
            &["REGISTRY=registry.test:5443".into()],
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
