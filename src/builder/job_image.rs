//! A job's own `image:` as the container its script runs in (pure): the container is
//! made by the builder's own Docker daemon, inside the builder's namespaces, so it can
//! reach nothing the job could not already reach with `docker run` in its builder.
//!
//! As gitlab-runner's docker executor does it: one container per job, created with
//! the image's entrypoint (or the job's `entrypoint:`; `[""]` clears it) and the
//! command `sh -c <detect shell>` (bash where the image has one, else sh), stdin open
//! once; every stage that carries the user's script starts it again with the stage
//! script on stdin (`docker start -ai`), so the entrypoint runs for each stage and the
//! script's exit code is the container's. Stages gitlab-runner runs in its helper
//! (sources, caches, artifacts) stay in the builder.
//!
//! Invariants:
//! * The project directory, `CI_PROJECT_DIR.tmp` (under the builds dir), the cache dir,
//!   the daemon's socket and the job user's Docker config are the same paths in the
//!   builder and in the job container: what one stage writes, the next one reads.
//! * Nothing secret is in the container's argv, env or labels (the inner daemon's
//!   `docker inspect` shows them): credentials stay in the Docker config file, mounted.
//! * The job container shares the namespace's network (`--network host` of the inner
//!   daemon): services by alias, the egress policy and `builder.host_loopback` hold
//!   for it exactly as for scripts run in the builder.

use super::labels::LABEL_JOB;
use super::spec::{BUILDS_DIR, CACHE_DIR};

/// The job container's name in the builder's daemon (one per job).
pub(crate) const JOB_CONTAINER: &str = "runnerx-job";

/// Written at prepare when the job has a container; `exec.sh job` runs the stage
/// script there when it exists, in the builder otherwise.
pub(crate) const JOB_CONTAINER_FILE: &str = "/etc/runnerx/job-container";

/// The job container's environment file (`--env-file`: one literal `KEY=VALUE` a line).
pub(crate) const JOB_CONTAINER_ENV: &str = "/etc/runnerx/job-container.env";

/// gitlab-runner's shell detection (shells/bash.go): the first bash, else the first sh.
pub(crate) const DETECT_SHELL: &str = "if [ -x /usr/local/bin/bash ]; then\n\texec /usr/local/bin/bash \nelif [ -x /usr/bin/bash ]; then\n\texec /usr/bin/bash \nelif [ -x /bin/bash ]; then\n\texec /bin/bash \nelif [ -x /usr/local/bin/sh ]; then\n\texec /usr/local/bin/sh \nelif [ -x /usr/bin/sh ]; then\n\texec /usr/bin/sh \nelif [ -x /bin/sh ]; then\n\texec /bin/sh \nelif [ -x /busybox/sh ]; then\n\texec /busybox/sh \nelse\n\techo shell not found\n\texit 1\nfi\n\n";

/// The stages gitlab-runner runs in its predefined (helper) environment; every other
/// stage carries the user's script (`step_script`, `build_script`, `after_script`,
/// `step_*`) and runs in the job's image. From gitlab-runner's `getPredefinedEnv`.
const PREDEFINED_STAGES: &[&str] = &[
    "prepare_script",
    "get_sources",
    "clear_worktree",
    "restore_cache",
    "download_artifacts",
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
    "cleanup_file_variables",
];

/// Whether `stage` carries the user's script (runs in the job's image when it has one).
pub(crate) fn runs_in_job_image(stage: &str) -> bool {
    !PREDEFINED_STAGES.contains(&stage)
}

/// GitLab's image pull policies (`image: pull_policy`): the settings' own type.
pub(crate) use crate::settings::PullPolicy;

/// The job's `image:` as the job payload gives it (untrusted values: the job chose
/// them; they only ever become argv elements of the builder's own docker CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JobImage {
    pub name: String,
    /// `entrypoint:`; `None` keeps the image's, `Some([""])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `pull_policy:` in order of preference (empty: the runner's default).
    pub pull_policy: Vec<PullPolicy>,
    /// `docker: platform` (e.g. `linux/arm64`, run under QEMU where not native).
    pub platform: Option<String>,
    /// `docker: user`.
    pub user: Option<String>,
}

/// Where the job container finds the builder's daemon and the job user's Docker
/// config: the builder's own paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonPaths {
    /// `unix:///…/docker.sock`.
    pub docker_host: String,
    /// The job user's `~/.docker` (logins, buildx builders).
    pub docker_config: String,
}

impl DaemonPaths {
    pub(crate) fn of(rootless: bool) -> DaemonPaths {
        let (home, _) = super::spec::job_home(rootless);
        DaemonPaths {
            docker_host: if rootless {
                super::spec::ROOTLESS_DOCKER_HOST.to_string()
            } else {
                "unix:///var/run/docker.sock".to_string()
            },
            docker_config: format!("{home}/.docker"),
        }
    }

    fn socket(&self) -> &str {
        self.docker_host
            .strip_prefix("unix://")
            .unwrap_or(&self.docker_host)
    }
}

/// The environment file of the job container: the builder's daemon and Docker config,
/// and the runner's proxies (`proxy`: `KEY=VALUE` pairs, values as they are).
pub(crate) fn env_file(paths: &DaemonPaths, proxy: &[(String, String)]) -> String {
    let mut out = format!(
        "DOCKER_HOST={}\nDOCKER_CONFIG={}\n",
        paths.docker_host, paths.docker_config
    );
    for (k, v) in proxy {
        // --env-file has no quoting: a value with a newline cannot be passed; the
        // settings never make one.
        if !v.contains('\n') {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

/// `docker create` of the job container, run as the job user in the builder.
pub(crate) fn create_cmd(image: &JobImage, job_id: &str, paths: &DaemonPaths) -> Vec<String> {
    let mut c: Vec<String> = ["docker", "create", "--name", JOB_CONTAINER]
        .map(String::from)
        .to_vec();
    let bind = |c: &mut Vec<String>, path: &str| {
        c.push("--volume".into());
        c.push(format!("{path}:{path}"));
    };
    c.extend([
        "--label".into(),
        format!("{LABEL_JOB}={job_id}"),
        // stdin open once per start: the stage script goes in, EOF ends the shell.
        "--interactive".into(),
        "--network".into(),
        "host".into(),
        "--env-file".into(),
        JOB_CONTAINER_ENV.into(),
    ]);
    bind(&mut c, BUILDS_DIR);
    bind(&mut c, CACHE_DIR);
    bind(&mut c, paths.socket());
    bind(&mut c, &paths.docker_config);
    if let Some(p) = &image.platform {
        c.extend(["--platform".into(), p.clone()]);
    }
    if let Some(u) = &image.user {
        c.extend(["--user".into(), u.clone()]);
    }
    // The CLI takes one entrypoint word; the rest of an entrypoint list goes before
    // the command, which is what the engine would run anyway (entrypoint + cmd).
    let mut rest: Vec<String> = Vec::new();
    if let Some(ep) = &image.entrypoint {
        let (first, more) = ep
            .split_first()
            .map_or(("", &[][..]), |(f, m)| (f.as_str(), m));
        c.extend(["--entrypoint".into(), first.to_string()]);
        rest.extend(more.iter().cloned());
    }
    c.push("--".into());
    c.push(image.name.clone());
    c.extend(rest);
    c.extend(["sh".into(), "-c".into(), DETECT_SHELL.into()]);
    c
}

/// The order in which to try pulling under `policies` (the job's, else the runner's
/// default `if-not-present`): each is tried until one gives the image, as
/// gitlab-runner does.
pub(crate) fn pull_order(policies: &[PullPolicy]) -> Vec<PullPolicy> {
    if policies.is_empty() {
        vec![PullPolicy::IfNotPresent]
    } else {
        policies.to_vec()
    }
}

/// `sh -c` that makes `image` present under `policy`, as the job user in the builder;
/// prints the daemon's answer on failure.
pub(crate) fn pull_cmd(image: &JobImage, policy: PullPolicy) -> Vec<String> {
    let platform = image
        .platform
        .as_ref()
        .map(|p| format!("--platform {}", shell_word(p)))
        .unwrap_or_default();
    let name = shell_word(&image.name);
    let script = match policy {
        PullPolicy::Always => format!("docker pull -q {platform} {name}"),
        PullPolicy::IfNotPresent => format!(
            "docker image inspect {name} >/dev/null 2>&1 || docker pull -q {platform} {name}"
        ),
        PullPolicy::Never => format!(
            "docker image inspect {name} >/dev/null 2>&1 || {{ echo 'not in the builder, and pull_policy is never' >&2; exit 1; }}"
        ),
    };
    ["sh", "-c", &script].map(String::from).to_vec()
}

/// `text` as one shell word.
fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> JobImage {
        JobImage {
            name: name.into(),
            ..JobImage::default()
        }
    }

    #[test]
    fn user_script_stages_run_in_the_job_image_and_helper_stages_in_the_builder() {
        for s in [
            "step_script",
            "build_script",
            "after_script",
            "step_release",
        ] {
            assert!(runs_in_job_image(s), "{s}");
        }
        for s in [
            "get_sources",
            "restore_cache",
            "upload_artifacts_on_success",
        ] {
            assert!(!runs_in_job_image(s), "{s}");
        }
    }

    #[test]
    fn the_container_shares_the_builders_paths_and_network_and_keeps_the_entrypoint() {
        let paths = DaemonPaths::of(true);
        let cmd = create_cmd(&image("registry.test/tools:1"), "42", &paths);
        let text = cmd.join(" ");
        assert!(text.starts_with("docker create --name runnerx-job --label runnerx.job=42 --interactive --network host --env-file /etc/runnerx/job-container.env"), "{text}");
        for v in [
            "/builds:/builds",
            "/cache:/cache",
            "/run/user/1000/docker.sock:/run/user/1000/docker.sock",
            "/home/rootless/.docker:/home/rootless/.docker",
        ] {
            assert!(cmd.iter().any(|a| a == v), "{v}: {text}");
        }
        assert!(!text.contains("--entrypoint"), "{text}");
        let tail = &cmd[cmd.len() - 5..];
        assert_eq!(tail[..4], ["--", "registry.test/tools:1", "sh", "-c"]);
        assert_eq!(tail[4], DETECT_SHELL);
    }

    #[test]
    fn entrypoint_platform_and_user_as_the_job_names_them() {
        let mut i = image("alpine:3");
        i.entrypoint = Some(vec![String::new()]);
        i.platform = Some("linux/arm64".into());
        i.user = Some("1000:1000".into());
        let cmd = create_cmd(&i, "7", &DaemonPaths::of(false));
        let text = cmd.join("|");
        assert!(text.contains("|--entrypoint||--|alpine:3|sh|"), "{text}");
        assert!(text.contains("|--platform|linux/arm64|"), "{text}");
        assert!(text.contains("|--user|1000:1000|"), "{text}");
        assert!(
            text.contains("/var/run/docker.sock:/var/run/docker.sock"),
            "{text}"
        );
        i.entrypoint = Some(vec!["/bin/tini".into(), "--".into()]);
        let text = create_cmd(&i, "7", &DaemonPaths::of(false)).join("|");
        assert!(
            text.contains("|--entrypoint|/bin/tini|--|alpine:3|--|sh|-c|"),
            "{text}"
        );
    }

    #[test]
    fn pulls_follow_gitlabs_policies_and_quote_the_image() {
        let mut i = image("reg.test/a b'c");
        assert_eq!(pull_order(&[]), [PullPolicy::IfNotPresent]);
        let cmd = pull_cmd(&i, PullPolicy::IfNotPresent);
        assert_eq!(
            cmd[2],
            r"docker image inspect 'reg.test/a b'\''c' >/dev/null 2>&1 || docker pull -q  'reg.test/a b'\''c'"
        );
        i.platform = Some("linux/arm64".into());
        assert!(pull_cmd(&i, PullPolicy::Always)[2].contains("--platform 'linux/arm64'"));
        assert!(pull_cmd(&i, PullPolicy::Never)[2].contains("pull_policy is never"));
        assert_eq!(
            PullPolicy::parse("if-not-present"),
            Some(PullPolicy::IfNotPresent)
        );
        assert_eq!(PullPolicy::parse("sometimes"), None);
    }

    #[test]
    fn the_env_file_names_the_daemon_and_literal_proxies() {
        let env = env_file(
            &DaemonPaths::of(true),
            &[("HTTPS_PROXY".into(), "http://proxy.test:3128".into())],
        );
        assert_eq!(
            env,
            "DOCKER_HOST=unix:///run/user/1000/docker.sock\nDOCKER_CONFIG=/home/rootless/.docker\nHTTPS_PROXY=http://proxy.test:3128\n"
        );
    }
}
