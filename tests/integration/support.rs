//! Drives the built `runnerx` binary the way gitlab-runner does: per-job temp dir as
//! cwd and TMPDIR, BUILD_FAILURE_EXIT_CODE=1, SYSTEM_FAILURE_EXIT_CODE=2,
//! BUILD_EXIT_CODE_FILE, JOB_RESPONSE_FILE, CUSTOM_ENV_* for job variables, and stage
//! scripts of gitlab-runner's bash shape written fresh for every `run` call.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The builder image built by docker/build-builder-image.sh.
pub(crate) const BUILDER_IMAGE: &str = "runnerx-builder:local";
/// A fake job token: it must never show up where it should not.
pub(crate) const JOB_TOKEN: &str = "glcbt-64_runnerxTestTokenDoNotLeak";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Path of the binary under test.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_runnerx")
}

/// The documented host step for builders that use the host's QEMU handlers
/// (privileged builders; rootless ones on Linux < 6.7): `runnerx host binfmt`, with
/// the default platforms. Idempotent; the tests that need it call it first.
pub(crate) fn register_host_handlers() {
    let settings = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(bin())
        .args(["host", "binfmt"])
        .env("RUNNERX_CONFIG", settings.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
}

/// Fails loudly (never skips) when the engine or the builder image is missing.
pub(crate) fn require_docker() {
    let ok = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", BUILDER_IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need a running Docker engine and the image {BUILDER_IMAGE}: \
         run scripts/test.sh (or .ci/run), which installs and builds both"
    );
}

/// `docker …` output as a string (panics on failure to spawn).
pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// Number of containers + volumes labelled for a job.
pub(crate) fn labelled_objects(job_id: &str) -> usize {
    let filter = format!("label=runnerx.job={job_id}");
    let c = docker(&["ps", "-aq", "--filter", &filter]);
    let v = docker(&["volume", "ls", "-q", "--filter", &filter]);
    String::from_utf8_lossy(&c.stdout).lines().count()
        + String::from_utf8_lossy(&v.stdout).lines().count()
}

/// One job, as gitlab-runner would run it through runnerx.
pub(crate) struct Job {
    /// Numeric id, like GitLab's.
    pub(crate) id: String,
    dir: tempfile::TempDir,
    settings: PathBuf,
    vars: Vec<(String, String)>,
    host_env: Vec<(String, String)>,
    project: u64,
    project_path: String,
    services: Vec<serde_json::Value>,
    image: Option<serde_json::Value>,
    cleaned: bool,
    /// The egress policy this job's builder runs under, held from prepare to drop.
    policy: std::sync::Mutex<Option<crate::policy::Lease>>,
}

impl Job {
    /// A job with a fresh id and default test settings (local builder image, never pull).
    pub(crate) fn new() -> Job {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id =
            ((ms % 1_000_000_000) * 100 + COUNTER.fetch_add(1, Ordering::SeqCst) % 100).to_string();
        let dir = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()
            .unwrap();
        let job = Job {
            settings: dir.path().join("runnerx.toml"),
            id,
            dir,
            vars: vec![],
            host_env: vec![],
            project: 1,
            project_path: "group/demo".into(),
            services: vec![],
            image: None,
            cleaned: false,
            policy: std::sync::Mutex::new(None),
        };
        job.with_settings("")
    }

    /// A second handle on the job `id` (another gitlab-runner call for the same job,
    /// with its own settings and environment).
    pub(crate) fn with_id(id: &str) -> Job {
        let mut job = Job::new();
        job.id = id.to_string();
        job
    }

    /// Replaces the settings file.
    pub(crate) fn settings(self, toml: &str) -> Job {
        std::fs::write(&self.settings, toml).unwrap();
        self
    }

    /// Adds a job variable (CUSTOM_ENV_<k>).
    pub(crate) fn var(mut self, k: &str, v: &str) -> Job {
        self.vars.push((k.into(), v.into()));
        self
    }

    /// Adds a `services:` entry to the job payload, as gitlab-runner writes it.
    pub(crate) fn service(mut self, entry: serde_json::Value) -> Job {
        self.services.push(entry);
        self
    }

    /// Sets the job payload's `image:` entry, as gitlab-runner writes it.
    pub(crate) fn image(mut self, entry: serde_json::Value) -> Job {
        self.image = Some(entry);
        self
    }

    /// Sets the project path in the job payload (`git_info.repo_url`).
    pub(crate) fn project_path(mut self, path: &str) -> Job {
        self.project_path = path.to_string();
        self
    }

    /// Sets the project id in the job payload (the per-project cache key).
    pub(crate) fn project(mut self, id: u64) -> Job {
        self.project = id;
        self
    }

    /// Adds a variable to runnerx's own environment (as gitlab-runner's would be).
    pub(crate) fn env(mut self, k: &str, v: &str) -> Job {
        self.host_env.push((k.into(), v.into()));
        self
    }

    /// Default test settings plus `extra` TOML.
    pub(crate) fn with_settings(self, extra: &str) -> Job {
        self.settings(&format!(
            "[builder]\nimage = \"{BUILDER_IMAGE}\"\npull_policy = \"never\"\nhost_loopback = true\nextra_hosts = [\"registry.test:127.0.0.1\"]\n\n{extra}"
        ))
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_via(bin(), args)
    }

    /// `runnerx args` run as `program args` (e.g. through a shell).
    fn command_via(&self, program: &str, args: &[&str]) -> Command {
        let tmp = self.dir.path();
        let response = serde_json::json!({
            "id": self.id.parse::<u64>().unwrap(),
            "token": JOB_TOKEN,
            "job_info": {"name": "build", "stage": "build", "project_id": self.project, "project_name": "demo"},
            "git_info": {"repo_url": format!("https://gitlab-ci-token:{JOB_TOKEN}@gitlab.test/{}.git", self.project_path),
                         "ref": "main", "sha": "0".repeat(40), "before_sha": "0".repeat(40),
                         "ref_type": "branch", "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 20},
            "variables": [{"key": "CI_JOB_TOKEN", "value": JOB_TOKEN, "masked": true, "public": false}],
            "services": self.services,
            // gitlab-runner always writes the job's image; its name is empty without one.
            "image": self.image.clone().unwrap_or_else(|| serde_json::json!({"name": ""})),
        });
        std::fs::write(tmp.join("response.json"), response.to_string()).unwrap();
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(tmp)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TMPDIR", tmp)
            .env("RUNNERX_CONFIG", &self.settings)
            .env("BUILD_FAILURE_EXIT_CODE", "1")
            .env("SYSTEM_FAILURE_EXIT_CODE", "2")
            .env("BUILD_EXIT_CODE_FILE", tmp.join("build_exit_code"))
            .env("JOB_RESPONSE_FILE", tmp.join("response.json"))
            .env("CUSTOM_ENV_CI_JOB_ID", &self.id)
            .env("CUSTOM_ENV_CI_JOB_TOKEN", JOB_TOKEN)
            .env("CUSTOM_ENV_CI_PROJECT_PATH_SLUG", "group-demo")
            .env("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0")
            .env("CUSTOM_ENV_CI_JOB_SERVICES", "");
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            c.env("DOCKER_HOST", h);
        }
        for (k, v) in &self.vars {
            c.env(format!("CUSTOM_ENV_{k}"), v);
        }
        for (k, v) in &self.host_env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// `runnerx config`.
    pub(crate) fn config(&self) -> Output {
        self.command(&["config"]).output().unwrap()
    }

    /// Holds the egress policy for this job's settings (loading it first if need be)
    /// until the job is dropped; prepare, `local` and `doctor` take it themselves. A
    /// test that compares the host's state takes it before the first look.
    pub(crate) fn hold_policy(&self) {
        let mut held = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(crate::policy::lease(|args| {
                self.command(args).output().unwrap()
            }));
        }
    }

    /// `runnerx prepare`.
    pub(crate) fn prepare(&self) -> Output {
        self.hold_policy();
        self.command(&["prepare"]).output().unwrap()
    }

    /// `runnerx prepare` from a shell that exits right after: the builder's lease
    /// holder is gone, as when gitlab-runner died.
    pub(crate) fn prepare_orphaned(&self) -> Output {
        self.hold_policy();
        self.command_via("sh", &["-c", "\"$0\" prepare; rc=$?; exit $rc", bin()])
            .output()
            .unwrap()
    }

    /// `runnerx prepare`, spawned (to be signalled).
    pub(crate) fn spawn_prepare(&self) -> Child {
        self.hold_policy();
        self.command(&["prepare"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Writes a stage script of gitlab-runner's bash shape (`shells/bash.go`) holding
    /// `commands`, and returns its path. Like gitlab-runner: a fresh dir per call.
    pub(crate) fn script(&self, commands: &str) -> PathBuf {
        let mut body = String::new();
        for line in commands.lines().filter(|l| !l.trim().is_empty()) {
            body.push_str(&format!(
                "echo {}\n{line}\n",
                shell_quote(&format!("$ {line}"))
            ));
        }
        self.script_raw(&body)
    }

    /// Like [`Job::script`], but `body` goes in as written: the sections gitlab-runner
    /// generates itself (cache, artifacts) print no `$ command` lines.
    pub(crate) fn script_raw(&self, body: &str) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join(format!("script{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        let project = "/builds/group/demo";
        let body = format!(
            "export CI_JOB_ID={id}\nexport CI_JOB_TOKEN={JOB_TOKEN}\nexport CI_PROJECT_DIR={project}\n\
             export CI_JOB_STATUS=running\nmkdir -p {project}\ncd {project}\n{body}",
            id = self.id
        );
        let script = format!(
            "#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\nif set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit\nset +o noclobber\n( trap 'exit 1' TERM; eval {} ) < /dev/null\nexit 0\n",
            shell_quote(&body)
        );
        let path = dir.join("script");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        path
    }

    /// `runnerx run <script> <stage>` with a gitlab-shaped script of `commands`.
    pub(crate) fn run(&self, stage: &str, commands: &str) -> Output {
        let script = self.script(commands);
        self.command(&["run", script.to_str().unwrap(), stage])
            .output()
            .unwrap()
    }

    /// `runnerx run <script> <stage>` with a script whose body is `body` as written.
    pub(crate) fn run_raw(&self, stage: &str, body: &str) -> Output {
        let script = self.script_raw(body);
        self.command(&["run", script.to_str().unwrap(), stage])
            .output()
            .unwrap()
    }

    /// `runnerx run <script> <stage>` with `script` exactly as written (a full stage
    /// script, e.g. from gitlab-runner's shell writer).
    pub(crate) fn run_script(&self, stage: &str, script: &str) -> Output {
        let dir = self
            .dir
            .path()
            .join(format!("script{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("script");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        self.command(&["run", path.to_str().unwrap(), stage])
            .output()
            .unwrap()
    }

    /// A file in the job's temporary directory (on the host), made executable.
    pub(crate) fn host_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    }

    /// Like [`Job::run`], but spawned with piped output.
    pub(crate) fn spawn_run(&self, stage: &str, commands: &str) -> Child {
        let script = self.script(commands);
        self.command(&["run", script.to_str().unwrap(), stage])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts a build_script stage of `commands` and returns once it printed a line
    /// `started` (so the script really runs), with stdout still readable.
    pub(crate) fn start_stage(&self, commands: &str) -> Child {
        use std::io::Read;
        let mut child = self.spawn_run("build_script", commands);
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("started\n") {
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "stage ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        child.stdout = Some(stdout);
        child
    }

    /// `runnerx cleanup`.
    pub(crate) fn cleanup(&mut self) -> Output {
        self.cleaned = true;
        self.command(&["cleanup"]).output().unwrap()
    }

    /// `runnerx cleanup` succeeds and nothing labelled for the job is left.
    #[track_caller]
    pub(crate) fn cleanup_leaves_nothing(&mut self) {
        assert_code(&self.cleanup(), 0);
        assert_eq!(
            labelled_objects(&self.id),
            0,
            "objects labelled for job {} remain",
            self.id
        );
    }

    /// Commands that start builders or check the host's policy hold it first.
    fn hold_policy_for(&self, args: &[&str]) {
        if matches!(args.first(), Some(&("prepare" | "local" | "doctor"))) {
            self.hold_policy();
        }
    }

    /// `runnerx args` run as `program prefix… runnerx args` (e.g. in another mount
    /// namespace), in this job's environment.
    pub(crate) fn runnerx_via(&self, program: &str, prefix: &[&str], args: &[&str]) -> Output {
        let mut all: Vec<&str> = prefix.to_vec();
        all.push(bin());
        all.extend_from_slice(args);
        self.command_via(program, &all).output().unwrap()
    }

    /// Runs the runnerx binary with extra args in this job's environment.
    pub(crate) fn runnerx(&self, args: &[&str]) -> Output {
        self.hold_policy_for(args);
        self.command(args).output().unwrap()
    }

    /// Like [`Job::runnerx`], from the directory `dir` (as an operator in a project).
    pub(crate) fn runnerx_in(&self, dir: &std::path::Path, args: &[&str]) -> Output {
        self.hold_policy_for(args);
        self.command(args).current_dir(dir).output().unwrap()
    }

    /// Content of BUILD_EXIT_CODE_FILE, if any.
    pub(crate) fn build_exit_code(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("build_exit_code")).ok()
    }

    /// Name of the builder container.
    pub(crate) fn builder(&self) -> String {
        format!("runnerx-{}", self.id)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.cleaned {
            let _ = self.command(&["cleanup"]).output();
        }
    }
}

/// Single-quotes a string for bash.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Asserts a command's exit code, showing its output when it differs.
#[track_caller]
pub(crate) fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout and stderr as strings.
pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
