//! A GitLab stand-in for what jobs fetch from GitLab itself: a repository served by
//! `git http-backend` over HTTPS with a private CA (fixtures/git-https.py), behind
//! Basic auth as `gitlab-ci-token:<job token>`, on the runner host's loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::registry::{free_port, runnerx_certs};
use crate::support::JOB_TOKEN;

/// Host name jobs use for the stand-in (mapped to the runner host by extra_hosts).
pub(crate) const HOST: &str = "gitlab.test";

/// A running stand-in with one project, `group/demo`.
pub(crate) struct GitServer {
    pub(crate) port: u16,
    pub(crate) sha: String,
    dir: tempfile::TempDir,
    child: Child,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    /// Serves `group/demo` holding `files` (path, content) on branch `main`.
    pub(crate) fn start(files: &[(&str, &str)]) -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = d.join("pki");
        runnerx_certs(&[
            "ca",
            "--out",
            pki.join("ca").to_str().unwrap(),
            "--cn",
            "GitLab test CA",
        ]);
        runnerx_certs(&[
            "server",
            "--ca",
            pki.join("ca").to_str().unwrap(),
            "--name",
            HOST,
            "--name",
            "127.0.0.1",
            "--out",
            pki.join("server").to_str().unwrap(),
        ]);
        let bare = d.join("root/group/demo.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = d.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "initial"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let sha = git(&work, &["rev-parse", "HEAD"]);

        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration/fixtures/git-https.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(pki.join("server/server.crt"))
            .arg(pki.join("server/server.key"))
            .arg(d.join("root"))
            .arg(JOB_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the git stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the git stand-in did not start");
        GitServer {
            port,
            sha,
            dir,
            child,
        }
    }

    /// The CA that signed the server certificate (`CI_SERVER_TLS_CA_FILE`'s content).
    pub(crate) fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/ca/ca.crt")).unwrap()
    }

    /// `https://gitlab.test:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("https://{HOST}:{}", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$'…'` (bash ANSI-C quoting), as gitlab-runner's bash writer quotes.
pub(crate) fn ansi_c(s: &str) -> String {
    let mut out = String::from("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\x1b' => out.push_str("\\x1b"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A stage script as gitlab-runner 19.x's bash writer wraps a body (`shells/bash.go`).
pub(crate) fn wrap(body: &str) -> String {
    format!(
        "#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\ncase \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\nset +o noclobber\n(trap 'exit 1' TERM; eval {}) < /dev/null\nexit 0\n",
        ansi_c(body)
    )
}

/// The stage scripts gitlab-runner 19.3 writes for one job of project `group/demo`
/// (fetch strategy, depth 20, the CA as the file variable `CI_SERVER_TLS_CA_FILE`,
/// cache key `key-1` of `vendor/`, artifacts `out/`), shaped like `shells/abstract.go`
/// writes them: exports (file variables into `<project>.tmp`), the git template
/// config with the CA and the token in `insteadOf`, the helper behind a `--version`
/// guard, and the file variables removed at the end.
pub(crate) struct Stages {
    pub(crate) job_id: String,
    pub(crate) server: String,
    pub(crate) sha: String,
    pub(crate) ca_pem: String,
}

const PROJECT: &str = "/builds/group/demo";
const TMP: &str = "/builds/group/demo.tmp";

impl Stages {
    fn exports(&self) -> String {
        let host_port = self.server.trim_start_matches("https://");
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "443"));
        let s = format!(
            "export CI_BUILDS_DIR=/builds\nexport CI_PROJECT_DIR={PROJECT}\nexport CI_CONCURRENT_ID=0\n\
             export CI_CONCURRENT_PROJECT_ID=0\nexport CI_SERVER=yes\nexport CI_JOB_STATUS=running\n\
             mkdir -p \"{TMP}\"\nprintf '%s' {ca} > \"{TMP}/CI_SERVER_TLS_CA_FILE\"\n\
             export CI_SERVER_TLS_CA_FILE=\"{TMP}/CI_SERVER_TLS_CA_FILE\"\n\
             export CI_JOB_ID={id}\nexport CI_JOB_TOKEN={token}\n\
             export CI_REPOSITORY_URL={repo}\nexport CI_COMMIT_SHA={sha}\nexport CI_COMMIT_REF_NAME=main\n\
             export CI_PROJECT_PATH=group/demo\nexport CI_SERVER_URL={server}\nexport CI_SERVER_HOST={host}\n\
             export CI_SERVER_PORT={port}\nexport GIT_DEPTH=20\nexport GIT_STRATEGY=fetch\n\
             export CI_SHARED_ENVIRONMENT=true\nexport RUNNER_TEMP_PROJECT_DIR={TMP}\n\
             export GITLAB_ENV={TMP}/gitlab_runner_env\nmkdir -p \"{TMP}\"\ntouch \"{TMP}/gitlab_runner_env\"\n\
             while read -r line; do export \"$line\"; done < \"{TMP}/gitlab_runner_env\"\n",
            ca = ansi_c(&self.ca_pem),
            id = self.job_id,
            token = JOB_TOKEN,
            repo = ansi_c(&self.repo_with_token()),
            sha = self.sha,
            server = ansi_c(&self.server),
        );
        s
    }

    fn repo_with_token(&self) -> String {
        self.server.replacen(
            "https://",
            &format!("https://gitlab-ci-token:{JOB_TOKEN}@"),
            1,
        ) + "/group/demo.git"
    }

    fn guarded(what: &str, commands: &str) -> String {
        format!(
            "if gitlab-runner --version >/dev/null 2>&1 ; then\n{commands}else\n  echo $'\\x1b[0;33mMissing gitlab-runner. {what} is disabled.\\x1b[0;m'\nfi\n"
        )
    }

    /// prepare_script.
    pub(crate) fn prepare_script(&self) -> String {
        "echo \"Running on $(hostname) via runnerx...\"\n".to_string()
    }

    /// get_sources: git init with the template config, fetch, checkout.
    pub(crate) fn get_sources(&self) -> String {
        let ext = format!("{TMP}/.gitlab-runner.ext.conf");
        let server = &self.server;
        let repo = format!("{server}/group/demo.git");
        let token_url = self.repo_with_token();
        let token_server = server.replacen(
            "https://",
            &format!("https://gitlab-ci-token:{JOB_TOKEN}@"),
            1,
        );
        format!(
            "{exports}export GIT_TERMINAL_PROMPT=0\nexport GCM_INTERACTIVE=Never\nexport GIT_LFS_SKIP_SMUDGE=1\n\
             rm \"-f\" \"{PROJECT}/.git/index.lock\"\nrm \"-f\" \"{TMP}/git-template/config\"\n\
             mkdir -p {TMP}/git-template\n\
             git config -f {TMP}/git-template/config init.defaultBranch none\n\
             git config -f {TMP}/git-template/config fetch.recurseSubmodules false\n\
             git config -f {TMP}/git-template/config credential.interactive never\n\
             git config -f {TMP}/git-template/config gc.autoDetach false\n\
             rm \"-f\" \"{ext}\"\n\
             git \"config\" \"-f\" \"{ext}\" \"http.{server}.sslCAInfo\" \"$CI_SERVER_TLS_CA_FILE\"\n\
             git \"config\" \"--file\" \"{ext}\" \"--replace-all\" \"url.{token_url}.insteadOf\" \"{repo}\"\n\
             git \"config\" \"--file\" \"{ext}\" \"--replace-all\" \"url.{token_server}.insteadOf\" \"{server}\"\n\
             git \"config\" \"--file\" \"{TMP}/git-template/config\" \"--replace-all\" \"include.path\" \"{ext}\" \"\\.gitlab-runner\\.ext\\.conf$\"\n\
             export GLR_EXT_GIT_CONFIG_PATH=\"{ext}\"\n\
             echo $'\\x1b[32;1mFetching changes with git depth set to 20...\\x1b[0;m'\n\
             git init {PROJECT} --template {TMP}/git-template\ncd {PROJECT}\n\
             if git remote add origin {repo_q} >/dev/null 2>&1 ; then\n  echo $'\\x1b[32;1mCreated fresh repository.\\x1b[0;m'\nelse\n  git remote set-url origin {repo_q}\nfi\n\
             git -c $'http.userAgent=gitlab-runner 19.3.0 linux/amd64' fetch origin --no-recurse-submodules $'+refs/heads/main:refs/remotes/origin/main' --depth 20 --prune --quiet\n\
             echo $'\\x1b[32;1mChecking out {short} as detached HEAD (ref is main)...\\x1b[0;m'\n\
             git -c $'submodule.recurse=false' checkout -f -q {sha}\ngit clean -ffdx\n\
             echo $'\\x1b[32;1mSkipping Git submodules setup\\x1b[0;m'\n",
            exports = self.exports(),
            repo_q = ansi_c(&repo),
            short = &self.sha[..8],
            sha = self.sha,
        )
    }

    /// restore_cache for `key-1`.
    pub(crate) fn restore_cache(&self) -> String {
        format!(
            "{}cd {PROJECT}\n{}",
            self.exports(),
            Self::guarded(
                "Extracting cache",
                "  echo $'\\x1b[32;1mChecking cache for key-1...\\x1b[0;m'\n  if gitlab-runner cache-extractor --file ../../../cache/group/demo/key-1/cache.zip --timeout 10 ; then\n    echo $'\\x1b[32;1mSuccessfully extracted cache\\x1b[0;m'\n  else\n    echo $'\\x1b[0;33mFailed to extract cache\\x1b[0;m'\n  fi\n"
            )
        )
    }

    /// build_script (or after_script) running `commands`, each echoed as `$ command`.
    pub(crate) fn user_script(&self, commands: &[&str]) -> String {
        let mut s = format!("{}cd {PROJECT}\n", self.exports());
        for c in commands {
            s.push_str(&format!(
                "echo {}\n{c}\n",
                ansi_c(&format!("\x1b[32;1m$ {c}\x1b[0;m"))
            ));
        }
        s
    }

    /// archive_cache for `key-1` of `vendor/`.
    pub(crate) fn archive_cache(&self) -> String {
        format!(
            "{}cd {PROJECT}\n{}",
            self.exports(),
            Self::guarded(
                "Creating cache",
                &format!(
                    "  echo $'\\x1b[32;1mCreating cache key-1...\\x1b[0;m'\n  cat << EOF > {TMP}/gitlab_runner_cache_env\nCACHE_METADATA=\"{{\\\"cachekey\\\":\\\"key-1\\\"}}\"\nEOF\n\n  if gitlab-runner cache-archiver --file ../../../cache/group/demo/key-1/cache.zip --timeout 10 --path vendor/ --env-file {TMP}/gitlab_runner_cache_env ; then\n    echo $'\\x1b[32;1mCreated cache\\x1b[0;m'\n  else\n    echo $'\\x1b[0;33mFailed to create cache\\x1b[0;m'\n  fi\n  rm \"-f\" \"{TMP}/gitlab_runner_cache_env\"\n"
                )
            )
        )
    }

    /// upload_artifacts_on_success of `out/`.
    pub(crate) fn upload_artifacts(&self) -> String {
        format!(
            "{}cd {PROJECT}\n{}",
            self.exports(),
            Self::guarded(
                "Uploading artifacts",
                &format!(
                    "  echo $'\\x1b[32;1mUploading artifacts...\\x1b[0;m'\n  gitlab-runner artifacts-uploader --url {} --token {JOB_TOKEN} --id {} --timeout 1h0m0s --response-header-timeout 10m0s --path out/ --artifact-format zip --artifact-type archive\n",
                    ansi_c(&self.server),
                    self.job_id
                )
            )
        )
    }

    /// cleanup_file_variables.
    pub(crate) fn cleanup_file_variables(&self) -> String {
        format!(
            "rm \"-f\" \"{TMP}/gitlab_runner_env\"\nrm \"-f\" \"{TMP}/masking.db\"\nrm \"-f\" \"{TMP}/.gitlab-runner.ext.conf\"\n\
             rm \"-f\" \"{TMP}/CI_SERVER_TLS_CA_FILE\"\nrm \"-f\" \"{PROJECT}/.git/index.lock\"\n\
             rm \"-f\" \"{TMP}/git-template/config\"\nrm \"-f\" \"{PROJECT}/.git/config\"\n\
             rm \"-r\" \"-f\" \"{PROJECT}/.git/hooks\"\n"
        )
    }
}
