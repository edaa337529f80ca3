//! `runnerx local JOB [-f .gitlab-ci.yml]`: one pipeline job on this host through the
//! executor's own stages — the replacement for the removed `gitlab-runner exec`.
//!
//! The job is resolved (`pipeline`), predefined `CI_*` variables are added, the project
//! directory is copied into the builder as the checkout (get_sources), and each stage
//! script, in gitlab-runner's bash shape, goes through the same `prepare`, `run` and
//! `cleanup` code gitlab-runner drives. after_script runs even when the build fails;
//! cleanup always runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::builder::engine::Engine;
use crate::cli::LocalArgs;
use crate::env::Env;
use crate::error::PipelineError;
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::gitlab::pipeline::{self, Decision, Pipeline};
use crate::gitlab::services::ResponseVariable;
use crate::settings::Settings;

mod artifacts;
mod project;

use artifacts::{Kept, Upstream};

pub(crate) use project::project_of;
use project::{git, project_files, rules_context, variables};

/// Runs the job (every `parallel: matrix` combination, or those `--matrix` picks), or
/// lists the jobs (`--list`), or prints the resolved job (`--preview`).
pub(crate) async fn local(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut pipeline = Pipeline::load(&args.file)?;
    let no_pipeline = apply_workflow(settings, args, env, &mut pipeline)?;
    if args.list {
        if let Some(why) = &no_pipeline {
            println!("no pipeline would be created here: {why}");
        }
        for name in pipeline.jobs() {
            let def = pipeline.job(&name)?;
            let runs = if def.matrix.is_empty() {
                String::new()
            } else {
                format!(" ({} matrix combinations)", def.matrix.len())
            };
            let pipeline_says = match decide(settings, args, env, &def)? {
                Decision::Run { when, .. } if when == "on_success" => "runs".to_string(),
                Decision::Run { when, .. } => format!("runs (when: {when})"),
                Decision::Skip(why) => format!("not in the pipeline: {why}"),
            };
            println!("{name}\tstage {}{runs}\t{pipeline_says}", def.stage);
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
    if let Some(why) = &no_pipeline {
        println!(
            "no pipeline would be created here ({why}); running job {name:?} because you named it"
        );
    }
    let def = pipeline.job(name)?;
    let upstream = if args.needs {
        run_upstream(settings, args, env, cancel, &pipeline, &def).await?
    } else {
        if def.needs.is_some() || !def.artifacts.is_empty() {
            println!(
                "job {name:?} has needs/artifacts: runnerx local --needs runs what it needs first and passes artifacts"
            );
        }
        Upstream::default()
    };
    if def.matrix.is_empty() {
        return run_job(settings, args, env, cancel, def, &upstream)
            .await
            .map(drop);
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
        if let Err(e) = run_job(settings, args, env, cancel, one, &upstream).await {
            first_failure.get_or_insert(e);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Decides `workflow:` on the predefined and global variables and gives its variables
/// to every job; returns why no pipeline would be created, if so.
fn apply_workflow(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    pipeline: &mut Pipeline,
) -> Result<Option<String>> {
    let globals = pipeline.globals()?;
    let local = job_variables(settings, args, env, &globals)?;
    let workflow = pipeline.workflow(&rules_context(&local.vars, &local.project))?;
    for what in &workflow.unhonoured {
        tracing::warn!("{what} is not honoured by runnerx local");
    }
    pipeline.set_workflow_variables(workflow.variables);
    Ok(workflow.skip)
}

/// `--needs`: runs every job `def` depends on (its `needs:` chain, or the earlier
/// stages), each with the artifacts and dotenv variables of the jobs it takes them
/// from; returns what `def` takes. A failed job stops the chain, as GitLab skips the
/// jobs that depend on it.
async fn run_upstream(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
    pipeline: &Pipeline,
    def: &pipeline::JobDef,
) -> Result<Upstream> {
    let runs = |d: &pipeline::JobDef| -> std::result::Result<bool, PipelineError> {
        match decide(settings, args, env, d) {
            Ok(decision) => Ok(matches!(decision, Decision::Run { .. })),
            Err(Error::Pipeline(e)) => Err(e),
            Err(e) => Err(e.to_string().into()),
        }
    };
    let order = pipeline.upstream(&def.name, &runs)?;
    if order.is_empty() {
        println!("job {:?} needs no other job", def.name);
    }
    let stages = pipeline.stages();
    let mut kept: Vec<Kept> = Vec::new();
    for name in order {
        let up = pipeline.job(&name)?;
        println!("\x1b[36;1m== needed first: {name}\x1b[0;m");
        let from = Upstream::of(&kept, &up, &stages);
        let dotenv = up.artifacts.dotenv.clone();
        let stage = up.stage.clone();
        if let Some(tar) = run_job(settings, args, env, cancel, up, &from).await? {
            kept.push(Kept {
                job: name,
                stage,
                tar,
                dotenv,
            });
        }
    }
    Ok(Upstream::of(&kept, def, &stages))
}

/// A local job as the executor will see it.
struct Local {
    /// The job (id, project path, image).
    job: Job,
    /// Its variables: predefined, pipeline, `--var`, expanded.
    vars: Vec<(String, String)>,
    /// The project directory on this host.
    project: PathBuf,
    /// Where the checkout goes in the builder.
    project_dir: String,
}

/// The job's predefined and pipeline variables as a local run sets them.
fn job_variables(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    def: &pipeline::JobDef,
) -> Result<Local> {
    let (project, folder) = project_of(&args.file, args.project_dir.as_deref())?;
    let mut job = Job::local(def.image.clone(), &folder, env);
    job.project_path = args.project.clone().or_else(|| {
        git(&project, &["remote", "get-url", "origin"])
            .as_deref()
            .and_then(crate::gitlab::job::repo_path)
    });
    // As GitLab names them: after the project (its path's last part; the folder only
    // when no path is known), checked out at $CI_BUILDS_DIR/<path>.
    let builds = crate::gitlab::stages::config::BUILDS_DIR;
    let (name, project_dir) = match job.project_path.as_deref() {
        Some(path) => (
            path.rsplit('/').next().unwrap_or(path).to_string(),
            format!("{builds}/{path}"),
        ),
        None => (folder.clone(), format!("{builds}/local/{folder}")),
    };
    // The registry build cache's refs: the checkout's branch (or tag), `local` outside
    // git (as CI_COMMIT_REF_NAME), and the remote's default branch as the fallback.
    job.git_ref = git(&project, &["describe", "--tags", "--exact-match"])
        .or_else(|| git(&project, &["rev-parse", "--abbrev-ref", "HEAD"]))
        .filter(|r| r != "HEAD")
        .or_else(|| Some("local".into()));
    job.default_branch = git(
        &project,
        &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
    )
    .and_then(|r| r.strip_prefix("origin/").map(String::from));
    let registry = settings.registries.first().map(|r| r.host.as_str());
    let vars = variables(
        def,
        &job,
        registry,
        &name,
        &project_dir,
        &project,
        &project::Given {
            vars: &args.vars,
            files: &file_vars(args)?,
        },
    )?;
    Ok(Local {
        job,
        vars,
        project,
        project_dir,
    })
}

/// `--file-var KEY=PATH`: each key with the content of its host file.
fn file_vars(args: &LocalArgs) -> Result<Vec<(String, String)>> {
    args.file_vars
        .iter()
        .map(|kv| {
            let (k, path) = kv
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--file-var {kv:?} must be KEY=PATH")))?;
            let content = std::fs::read_to_string(path)
                .map_err(|e| Error::Usage(format!("--file-var {k}: cannot read {path}: {e}")))?;
            Ok((k.to_string(), content))
        })
        .collect()
}

/// Whether the job would be in a pipeline here (`rules`, `only`, `except`, `when`).
fn decide(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    def: &pipeline::JobDef,
) -> Result<Decision> {
    let local = job_variables(settings, args, env, def)?;
    Ok(def.decide(&rules_context(&local.vars, &local.project))?)
}

/// Runs one job the user named: says so when a pipeline would leave it out or hold
/// it, applies the matching rule's variables and `allow_failure`, then runs it.
async fn run_job(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
    mut def: pipeline::JobDef,
    upstream: &Upstream,
) -> Result<Option<Vec<u8>>> {
    match decide(settings, args, env, &def)? {
        Decision::Skip(why) => println!(
            "job {:?} would not run in a pipeline ({why}); running it because you named it",
            def.name
        ),
        Decision::Run {
            when,
            variables,
            allow_failure,
        } => {
            if when != "on_success" && when != "always" {
                println!(
                    "job {:?} has when: {when}; running it because you named it",
                    def.name
                );
            }
            if let Some(v) = allow_failure {
                def.allow_failure = pipeline::AllowFailure::parse(&v)
                    .map_err(|e| PipelineError::from(format!("job {:?} rules: {e}", def.name)))?;
            }
            // Rules variables rank above job variables (and below --var).
            def.variables.extend(variables);
        }
    }
    let allow = def.allow_failure.clone();
    let name = def.name.clone();
    match run_decided(settings, args, env, cancel, def, upstream).await {
        // The log ends as gitlab-runner ends it ("ERROR: Job failed: exit code N", its
        // setTraceStatus knows nothing of allow_failure); the status is GitLab's badge.
        Err(Error::Script { code }) if allow.allows(code) => {
            println!(
                "\x1b[33;1mjob {name:?}: failed (allowed to fail), the pipeline goes on\x1b[0;m"
            );
            Ok(None)
        }
        other => other,
    }
}

/// Runs one job through the executor's own stages, with what it takes from the
/// jobs before it; returns the artifacts it kept (after a successful build).
async fn run_decided(
    settings: &Settings,
    args: &LocalArgs,
    env: &Env,
    cancel: &CancellationToken,
    mut def: pipeline::JobDef,
    upstream: &Upstream,
) -> Result<Option<Vec<u8>>> {
    // Dotenv variables of the jobs it takes artifacts from rank above its own.
    def.variables.extend(upstream.dotenv.iter().cloned());
    let Local {
        job,
        vars,
        project,
        project_dir,
    } = job_variables(settings, args, env, &def)?;
    let mut job = job;
    let file_keys: std::collections::BTreeSet<String> = args
        .file_vars
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    // File-type variables never reach services (as under GitLab).
    let job_vars: Vec<ResponseVariable> = vars
        .iter()
        .map(|(key, value)| ResponseVariable {
            key: key.clone(),
            value: value.clone(),
            file: file_keys.contains(key),
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
            let files = file_keys.clone();
            async move {
                let path = tmp.join(format!("{stage}.sh"));
                let cd = (stage != "prepare_script").then_some(project_dir.as_str());
                write_private(&path, &pipeline::bash_script(&vars, &files, cd, &commands))?;
                section(stage);
                let loaded = || Ok(settings.clone());
                crate::gitlab::stages::run::run(&job, &engine, &path, stage, cancel, &loaded).await
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
        if !upstream.tars.is_empty() {
            section("download_artifacts");
            for (from, tar) in &upstream.tars {
                println!("downloading artifacts of {from}");
                let tar = artifacts::rerooted(tar, &project_dir, crate::builder::ROOTLESS_UID)?;
                engine.upload(&job.builder_name(), tar).await?;
            }
        }
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
        outcome?;
        if def.artifacts.is_empty() {
            return Ok(None);
        }
        let tar_path = format!("{project_dir}/../.runnerx-artifacts-{}.tar", job.id);
        run(
            "upload_artifacts_on_success",
            vec![artifacts::pack_command(&def.artifacts, &tar_path)],
            vars.clone(),
        )
        .await?;
        Ok(Some(
            artifacts::fetch(&engine, &job.builder_name(), &tar_path).await?,
        ))
    }
    .await;
    section("cleanup");
    if let Err(e) = crate::gitlab::stages::cleanup::cleanup(settings, &job, &engine).await {
        tracing::warn!("cleanup: {e}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    match &result {
        Ok(_) => println!("\x1b[32;1mJob succeeded\x1b[0;m"),
        Err(Error::Script { code }) => {
            println!("\x1b[31;1mERROR: Job failed: exit code {code}\x1b[0;m")
        }
        Err(_) => {}
    }
    result
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

/// Copies the project into the builder (git-tracked and untracked-not-ignored files
/// when it is a git work tree, else everything but `.git` and `target`).
async fn get_sources(engine: &Engine, job: &Job, project: &Path, project_dir: &str) -> Result<()> {
    let files = project_files(project);
    // The checkout belongs to the job user, as a clone by the job would (privileged
    // jobs run as root and may write anywhere anyway).
    let owned = |h: &mut tar::Header| {
        h.set_uid(u64::from(crate::builder::ROOTLESS_UID));
        h.set_gid(u64::from(crate::builder::ROOTLESS_GID));
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
