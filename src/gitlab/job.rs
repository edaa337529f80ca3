//! What GitLab tells runnerx about the job, split by trust.
//!
//! * Trusted: the runner-set variables (`BUILD_FAILURE_EXIT_CODE`, …) and
//!   `JOB_RESPONSE_FILE`, the job payload gitlab-runner received from GitLab.
//! * Untrusted: `CUSTOM_ENV_*`, which users can set from `.gitlab-ci.yml`. Values read
//!   from there are validated, and only an allow-list may change settings.
//!
//! The job id names everything runnerx creates, so it comes from the response file
//! first: a job could set `CI_JOB_ID` to another job's id, and must not be able to
//! reach that job's builder.

use std::path::PathBuf;

use serde::Deserialize;

use crate::builder::job_image::{JobImage, PullPolicy};
use crate::builder::services::Service;
use crate::env::Env;
use crate::error::{Error, Invalid, Result};
use crate::gitlab::services::{self, ResponseService, ResponseVariable};
use crate::host::random_hex;
use crate::settings::BuilderSettings;

/// Exit codes and files gitlab-runner passes to every driver call.
#[derive(Debug, Clone)]
pub struct ExitCodes {
    /// `$BUILD_FAILURE_EXIT_CODE` (1 by default outside GitLab).
    pub build_failure: i32,
    /// `$SYSTEM_FAILURE_EXIT_CODE` (2 by default outside GitLab).
    pub system_failure: i32,
}

impl ExitCodes {
    /// Reads the codes; missing or unparsable values fall back to GitLab's 1 and 2.
    pub fn from_env(env: &Env) -> Self {
        let code = |name, default| {
            env.get(name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        ExitCodes {
            build_failure: code("BUILD_FAILURE_EXIT_CODE", 1),
            system_failure: code("SYSTEM_FAILURE_EXIT_CODE", 2),
        }
    }
}

/// Where the job id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSource {
    /// `--job-id` on the command line.
    Flag,
    /// `id` in `JOB_RESPONSE_FILE` (trusted).
    ResponseFile,
    /// `CUSTOM_ENV_CI_JOB_ID` (only when there is no response file).
    CiJobId,
    /// Made up by a manual `runnerx prepare`.
    Generated,
}

/// The subset of the job payload runnerx reads.
#[derive(Debug, Default, Deserialize)]
struct JobResponse {
    id: Option<u64>,
    #[serde(default)]
    image: Option<ResponseImage>,
    #[serde(default)]
    job_info: Option<JobInfo>,
    #[serde(default)]
    git_info: Option<GitInfo>,
    #[serde(default)]
    services: Option<Vec<ResponseService>>,
    #[serde(default)]
    variables: Option<Vec<ResponseVariable>>,
}

#[derive(Debug, Default, Deserialize)]
struct GitInfo {
    #[serde(default)]
    repo_url: Option<String>,
    /// The branch or tag the job runs for.
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    /// The commit.
    #[serde(default)]
    sha: Option<String>,
}

/// The project path of a clone URL: `https://gitlab-ci-token:…@host:port/group/app.git`
/// → `group/app`.
pub(crate) fn repo_path(url: &str) -> Option<String> {
    let (scp, rest) = match url.split_once("://") {
        Some((_, r)) => (false, r),
        None => (true, url),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    // `host[:port]/path`, or scp-like `host:path` (a local remote over ssh).
    let (_, path) = if scp {
        rest.split_once(':')?
    } else {
        rest.split_once('/')?
    };
    let path = path
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .trim_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

#[derive(Debug, Default, Deserialize)]
struct JobInfo {
    project_id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseImage {
    #[serde(default)]
    name: String,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pull_policy: Option<Vec<String>>,
    #[serde(default)]
    executor_opts: Option<ExecutorOpts>,
}

#[derive(Debug, Default, Deserialize)]
struct ExecutorOpts {
    #[serde(default)]
    docker: Option<DockerOpts>,
}

/// `image: docker:` options (gitlab-runner's ImageDockerOptions; `user` is a string
/// or a number there).
#[derive(Debug, Default, Deserialize)]
struct DockerOpts {
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    user: Option<serde_json::Value>,
}

impl ResponseImage {
    /// The job's image as runnerx uses it; an unknown pull policy is the job's error.
    fn job_image(&self) -> Result<JobImage> {
        let pull_policy = self
            .pull_policy
            .iter()
            .flatten()
            .map(|p| {
                PullPolicy::parse(p).ok_or_else(|| Error::JobInput {
                    name: "image:pull_policy".into(),
                    message: format!(
                        "{p:?} is not a pull policy; use always, if-not-present or never"
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let docker = self.executor_opts.as_ref().and_then(|o| o.docker.as_ref());
        let user = docker.and_then(|d| d.user.as_ref()).and_then(|u| match u {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Ok(JobImage {
            name: self.name.trim().to_string(),
            entrypoint: self.entrypoint.clone().filter(|e| !e.is_empty()),
            pull_policy,
            platform: docker
                .and_then(|d| d.platform.clone())
                .filter(|p| !p.is_empty()),
            user,
        })
    }
}

/// Untrusted job variables runnerx looks at (`CUSTOM_ENV_` stripped, lower-cased).
#[derive(Debug, Default, Deserialize)]
struct JobVars {
    ci_job_id: Option<String>,
    ci_job_image: Option<String>,
}

/// The first value of `key` among the payload's variables.
fn first_variable(response: Option<&JobResponse>, key: &str) -> Option<String> {
    response?
        .variables
        .as_deref()?
        .iter()
        .find(|v| v.key == key)
        .map(|v| v.value.clone())
}

/// One job as seen by a driver call.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Validated id; names the builder `runnerx-<id>`.
    pub id: String,
    /// Where `id` came from.
    pub id_source: IdSource,
    /// True when called by gitlab-runner (response file or `CUSTOM_ENV_*` present).
    pub under_gitlab: bool,
    /// `$BUILD_EXIT_CODE_FILE`.
    pub build_exit_code_file: Option<PathBuf>,
    /// The job's `image:` with its options (untrusted), if any.
    pub job_image: Option<JobImage>,
    /// The project, for the per-project cache; only from trusted input (the job
    /// response file, or `runnerx local`), so no job can reach another project's cache.
    pub project: Option<String>,
    /// runnerx's own `$PATH` (gitlab-runner's environment, trusted): where the helper
    /// binary is looked for.
    pub runner_path: Option<String>,
    /// `services:` from the job payload (trusted).
    pub services: Vec<Service>,
    /// The project's path, from the payload's `git_info.repo_url` (trusted; a job can
    /// override `CI_PROJECT_PATH`, not this), or `runnerx local`'s `--project`/remote.
    pub project_path: Option<String>,
    /// The branch or tag, from the payload's `git_info.ref` (or the local checkout's).
    pub git_ref: Option<String>,
    /// The project's default branch (`CI_DEFAULT_BRANCH` of the payload's variables;
    /// a job may set its own, which only picks another of its project's own caches).
    pub default_branch: Option<String>,
    /// `runnerx local`: it moves artifacts itself and has no use for gitlab-runner's
    /// helper binary.
    pub local_run: bool,
    /// The commit (`git_info.sha`; a job's `CI_COMMIT_SHA` variable never changes it).
    pub commit: Option<String>,
    /// The pipeline id and GitLab's URL: the payload's first `CI_PIPELINE_ID` and
    /// `CI_SERVER_URL` (GitLab lists its predefined variables before the job's own).
    pub pipeline: Option<String>,
    /// See `pipeline`.
    pub server_url: Option<String>,
}

impl Job {
    /// Reads the job context. `flag_id` is `--job-id`; `generate` allows making an id
    /// up when there is none (manual `prepare`).
    pub(crate) fn from_env(env: &Env, flag_id: Option<&str>, generate: bool) -> Result<Job> {
        let response = match env.non_empty("JOB_RESPONSE_FILE") {
            Some(path) => Some(read_response(path)?),
            None => None,
        };
        let vars: JobVars = envy::prefixed("CUSTOM_ENV_")
            .from_iter(env.with_prefix("CUSTOM_ENV_"))
            .unwrap_or_default();
        let under_gitlab = response.is_some() || env.with_prefix("CUSTOM_ENV_").next().is_some();

        let (id, id_source) = if let Some(id) = flag_id {
            (id.to_string(), IdSource::Flag)
        } else if let Some(id) = response.as_ref().and_then(|r| r.id) {
            (id.to_string(), IdSource::ResponseFile)
        } else if let Some(id) = vars.ci_job_id.clone().filter(|s| !s.is_empty()) {
            (id, IdSource::CiJobId)
        } else if generate {
            (format!("manual-{}", random_hex(4)), IdSource::Generated)
        } else {
            return Err(Error::Usage(
                "no job id: pass --job-id ID (the one `runnerx prepare` printed), or run under gitlab-runner"
                    .into(),
            ));
        };
        // CI_JOB_ID comes from gitlab-runner's environment: a bad one is not the job's
        // script failing, so it is a system failure like any bad protocol input.
        validate_job_id(&id).map_err(|message| match id_source {
            IdSource::CiJobId => Error::Protocol(format!(
                "CUSTOM_ENV_CI_JOB_ID {id:?} {message}; it should be GitLab's numeric job id"
            )),
            _ => Error::Usage(format!("job id {id:?} {message}")),
        })?;

        let image = response
            .as_ref()
            .and_then(|r| r.image.as_ref())
            .map(|i| i.name.clone())
            .or(vars.ci_job_image)
            .filter(|s| !s.trim().is_empty());
        let job_image = match response.as_ref().and_then(|r| r.image.as_ref()) {
            Some(i) if !i.name.trim().is_empty() => Some(i.job_image()?),
            _ => image.clone().map(|name| JobImage {
                name,
                ..JobImage::default()
            }),
        };

        let project = response
            .as_ref()
            .and_then(|r| r.job_info.as_ref())
            .and_then(|i| i.project_id)
            .map(|p| p.to_string());
        Ok(Job {
            id,
            id_source,
            project,
            under_gitlab,
            build_exit_code_file: env.non_empty("BUILD_EXIT_CODE_FILE").map(PathBuf::from),
            job_image,
            runner_path: env.non_empty("PATH").map(String::from),
            project_path: response
                .as_ref()
                .and_then(|r| r.git_info.as_ref())
                .and_then(|g| g.repo_url.as_deref())
                .and_then(repo_path),
            git_ref: response
                .as_ref()
                .and_then(|r| r.git_info.as_ref())
                .and_then(|g| g.git_ref.clone())
                .filter(|r| !r.is_empty()),
            default_branch: response.as_ref().and_then(|r| {
                r.variables
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .rev()
                    .find(|v| v.key == "CI_DEFAULT_BRANCH" && !v.value.is_empty())
                    .map(|v| v.value.clone())
            }),
            local_run: false,
            commit: response
                .as_ref()
                .and_then(|r| r.git_info.as_ref())
                .and_then(|g| g.sha.clone()),
            pipeline: first_variable(response.as_ref(), "CI_PIPELINE_ID"),
            server_url: first_variable(response.as_ref(), "CI_SERVER_URL"),
            services: response.as_ref().map_or_else(Vec::new, |r| {
                services::services(
                    r.services.as_deref().unwrap_or_default(),
                    r.variables.as_deref().unwrap_or_default(),
                )
            }),
        })
    }

    /// A job run by `runnerx local` (no gitlab-runner): a generated id, the pipeline
    /// job's `image:`, logs like under GitLab.
    pub(crate) fn local(image: Option<String>, project: &str, env: &Env) -> Job {
        Job {
            id: format!("local-{}", random_hex(4)),
            project: Some(local_project_key(project)),
            id_source: IdSource::Generated,
            under_gitlab: true,
            build_exit_code_file: None,
            job_image: image.clone().map(|name| JobImage {
                name,
                ..JobImage::default()
            }),
            runner_path: env.non_empty("PATH").map(String::from),
            services: vec![],
            project_path: None,
            git_ref: None,
            default_branch: None,
            local_run: true,
            commit: None,
            pipeline: None,
            server_url: None,
        }
    }

    /// Who the job is, for per-project registry logins.
    pub(crate) fn identity(&self) -> crate::settings::Project {
        crate::settings::Project {
            id: self.project.clone(),
            path: self.project_path.clone(),
        }
    }

    /// Name of the builder container (also the `hostname` reported by `config`).
    pub(crate) fn builder_name(&self) -> String {
        format!("runnerx-{}", self.id)
    }

    /// Where this job's script runs: the builder image (the settings' image, or the
    /// job's `image:` where `builder.builder_images` lets it pick the builder), and
    /// the job's own image as a container of the builder's daemon unless the builder
    /// is already a superset of it (Docker's own `docker` images: the CLI and DinD
    /// that docker+dind pipelines name, and `builder.images_in_builder`).
    pub(crate) fn placement(&self, builder: &BuilderSettings) -> Placement {
        let Some(img) = self.job_image.as_ref() else {
            return Placement {
                builder_image: builder.image.clone(),
                job_image: None,
            };
        };
        let name = img.name.as_str();
        if name == builder.image || builder.builder_images.iter().any(|a| a == name) {
            return Placement {
                builder_image: name.to_string(),
                job_image: None,
            };
        }
        let job_image = if runs_in_builder(name, &builder.images_in_builder) {
            tracing::info!(
                "job image {name:?} is Docker's own (or in builder.images_in_builder): the script runs in the builder, which has its docker CLI, buildx and daemon"
            );
            None
        } else {
            Some(img.clone())
        };
        Placement {
            builder_image: builder.image.clone(),
            job_image,
        }
    }
}

/// Where a job's script runs ([`Job::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub builder_image: String,
    /// The job's image, when its user-script stages run in a container of it.
    pub job_image: Option<JobImage>,
}

/// Docker's own images (`docker`, `docker:<tag>`, in any registry or mirror path)
/// and the operator's `builder.images_in_builder` (names or globs).
pub(crate) fn runs_in_builder(image: &str, globs: &[String]) -> bool {
    let image = image.trim();
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last);
    repo == "docker"
        || globs
            .iter()
            .any(|g| g == image || crate::settings::glob(g, image))
}

fn read_response(path: &str) -> Result<JobResponse> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("read JOB_RESPONSE_FILE", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Protocol(format!(
            "JOB_RESPONSE_FILE {path} is not the job JSON gitlab-runner writes: {e}; is runnerx called by gitlab-runner's custom executor (or with a file of that shape)?"
        ))
    })
}

/// The cache key of a `runnerx local` project named `name` (`local-<slug>`): it never
/// collides with GitLab's numeric project ids.
pub(crate) fn local_project_key(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    format!("local-{slug}")
}

/// Job ids name containers, volumes and labels: keep them to a safe alphabet.
fn validate_job_id(id: &str) -> std::result::Result<(), Invalid> {
    let ok = !id.is_empty()
        && id.len() <= 48
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "must be 1-48 characters of [A-Za-z0-9_.-], starting with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_project_path_comes_from_the_clone_url() {
        assert_eq!(
            repo_path("https://gitlab-ci-token:glcbt-x@gitlab.example.com:8443/team-a/sub/app.git")
                .as_deref(),
            Some("team-a/sub/app")
        );
        assert_eq!(
            repo_path("git@gitlab.example.com:team/app.git").as_deref(),
            Some("team/app")
        );
        assert_eq!(repo_path("https://gitlab.example.com/").as_deref(), None);
    }

    #[test]
    fn response_file_id_beats_untrusted_ci_job_id() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            r#"{{"id": 4242, "token": "secret", "image": {{"name": "docker:28-dind"}}, "job_info": {{"project_id": 77}}}}"#
        )
        .unwrap();
        let env = Env::from_pairs([
            ("JOB_RESPONSE_FILE", f.path().to_str().unwrap()),
            ("CUSTOM_ENV_CI_JOB_ID", "1"),
        ]);
        let job = Job::from_env(&env, None, false).unwrap();
        assert_eq!(job.id, "4242");
        assert_eq!(job.id_source, IdSource::ResponseFile);
        assert!(job.under_gitlab);
        assert_eq!(job.job_image.unwrap().name, "docker:28-dind");
        assert_eq!(job.project.as_deref(), Some("77"));
    }

    fn job_with_image(image: &str) -> Result<Job> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, r#"{{"id": 7, "image": {image}}}"#).unwrap();
        let env = Env::from_pairs([("JOB_RESPONSE_FILE", f.path().to_str().unwrap())]);
        Job::from_env(&env, None, false)
    }

    #[test]
    fn the_payloads_image_options_are_read_as_gitlab_runner_writes_them() {
        let job = job_with_image(
            r#"{"name": "reg.test/tools:1", "entrypoint": [""], "pull_policy": ["always", "if-not-present"], "executor_opts": {"docker": {"platform": "linux/arm64", "user": 1000}}}"#,
        )
        .unwrap();
        let img = job.job_image.unwrap();
        assert_eq!(img.name, "reg.test/tools:1");
        assert_eq!(img.entrypoint, Some(vec![String::new()]));
        assert_eq!(
            img.pull_policy,
            [PullPolicy::Always, PullPolicy::IfNotPresent]
        );
        assert_eq!(img.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(img.user.as_deref(), Some("1000"));
        let err = job_with_image(r#"{"name": "a:1", "pull_policy": ["sometimes"]}"#).unwrap_err();
        assert_eq!(err.fault(), crate::error::Fault::Build);
        assert!(err.to_string().contains("if-not-present"), "{err}");
    }

    #[test]
    fn docker_images_run_in_the_builder_and_other_images_in_their_own_container() {
        let settings = crate::settings::Settings::from_toml("").unwrap().builder;
        for (image, own) in [
            ("docker:28-dind", false),
            ("docker", false),
            ("harbor.test/mirror/library/docker:27-cli", false),
            ("reg.test/devops/my-builder:v0.0.1", true),
            ("golang:1.23", true),
        ] {
            let job = job_with_image(&format!(r#"{{"name": "{image}"}}"#)).unwrap();
            let p = job.placement(&settings);
            assert_eq!(p.builder_image, settings.image, "{image}");
            assert_eq!(p.job_image.is_some(), own, "{image}");
        }
        let job = job_with_image(r#"{"name": "golang:1.23"}"#).unwrap();
        let mut settings = settings;
        settings.images_in_builder = vec!["golang:*".into()];
        assert!(job.placement(&settings).job_image.is_none());
        settings.builder_images = vec!["golang:1.23".into()];
        assert_eq!(job.placement(&settings).builder_image, "golang:1.23");
    }

    #[test]
    fn flag_wins_and_generated_ids_are_manual() {
        let env = Env::from_pairs([("CUSTOM_ENV_CI_JOB_ID", "7")]);
        assert_eq!(Job::from_env(&env, Some("abc"), false).unwrap().id, "abc");
        let job = Job::from_env(&Env::default(), None, true).unwrap();
        assert!(job.id.starts_with("manual-"), "{}", job.id);
        assert!(!job.under_gitlab);
        assert!(Job::from_env(&Env::default(), None, false).is_err());
    }

    #[test]
    fn bad_job_id_from_gitlab_runner_is_a_system_failure() {
        let env = Env::from_pairs([("CUSTOM_ENV_CI_JOB_ID", "1; rm -rf /")]);
        let e = Job::from_env(&env, None, false).unwrap_err();
        assert_eq!(e.fault(), crate::error::Fault::System);
        assert!(e.to_string().contains("CI_JOB_ID"));
    }

    #[test]
    fn exit_codes_default_to_gitlab_values() {
        let c = ExitCodes::from_env(&Env::default());
        assert_eq!((c.build_failure, c.system_failure), (1, 2));
        let c = ExitCodes::from_env(&Env::from_pairs([
            ("BUILD_FAILURE_EXIT_CODE", "17"),
            ("SYSTEM_FAILURE_EXIT_CODE", "18"),
        ]));
        assert_eq!((c.build_failure, c.system_failure), (17, 18));
    }
}
