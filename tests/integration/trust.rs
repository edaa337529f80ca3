//! Registry trust and credentials: real TLS registries (htpasswd and token auth) with
//! certificates made by `runnerx certs`; jobs use them with no login step, and
//! `runnerx doctor` tells each misconfiguration apart.

use base64::Engine as _;

use crate::registry::{AuthMode, PASSWORD, TEAMS, TestRegistry, Tls, free_port};
use crate::support::{Job, assert_code, docker, require_docker, text};

const PUSH_PULL: &str = r#"
mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\nCOPY busybox /bin/busybox\n' > ctx/Dockerfile
docker build -q -t $REG/demo/app:1 ctx
docker push -q $REG/demo/app:1
docker rmi -f $REG/demo/app:1
docker pull -q $REG/demo/app:1
docker buildx build -q --push -t $REG/demo/app:buildx ctx
echo "curl status: $(curl -s -o /dev/null -w '%{http_code}' https://$REG/v2/)"
"#;

/// Writes a one-file image context `ctx` (static busybox) in the project directory.
const IMAGE: &str = "mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n";

fn job_for(reg: &TestRegistry) -> Job {
    Job::new()
        .with_settings(&reg.settings_block(&reg.ca_file(), ""))
        .env("REG_PW", PASSWORD)
        .var("REG", &reg.host())
}

fn run_push_pull(reg: &TestRegistry) {
    let mut job = job_for(reg);
    let prepare = job.prepare();
    assert_code(&prepare, 0);
    let script = format!("export REG={}\n{PUSH_PULL}", reg.host());
    let run = job.run("build_script", &script);
    assert_code(&run, 0);
    let (stdout, stderr) = text(&run);
    assert!(
        stdout.contains("curl status: 401"),
        "system store must trust the CA: {stdout}\n{stderr}"
    );

    // The password is nowhere in runnerx's output or the builder's inspect data.
    let inspect = docker(&["inspect", &job.builder()]);
    assert!(inspect.status.success());
    let cleanup = job.cleanup();
    assert_code(&cleanup, 0);
    for (what, bytes) in [
        ("prepare output", [prepare.stdout, prepare.stderr].concat()),
        ("run output", [run.stdout, run.stderr].concat()),
        ("cleanup output", [cleanup.stdout, cleanup.stderr].concat()),
        ("docker inspect", inspect.stdout),
    ] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "password leaked into {what}"
        );
    }
}

#[test]
fn job_pushes_and_pulls_to_an_htpasswd_tls_registry_without_login() {
    require_docker();
    run_push_pull(&TestRegistry::start(Tls::Good, AuthMode::Htpasswd));
}

#[test]
fn job_pushes_and_pulls_to_a_token_auth_registry_without_login() {
    require_docker();
    run_push_pull(&TestRegistry::start(Tls::Good, AuthMode::Token));
}

fn doctor(job: &Job) -> (i32, String) {
    let out = job.runnerx(&["doctor"]);
    let (stdout, stderr) = text(&out);
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "doctor leaked the password"
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn failing_line(stdout: &str, check: &str) -> String {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("FAIL  {check}:")))
        .unwrap_or_else(|| panic!("no failing {check} check in:\n{stdout}"))
        .to_string()
}

#[test]
fn doctor_passes_a_healthy_token_registry_with_push_permission() {
    let reg = TestRegistry::start(Tls::Good, AuthMode::Token);
    let (code, out) = doctor(&job_for(&reg));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok    tls: verified"), "{out}");
    assert!(out.contains("401 with Bearer challenge"), "{out}");
    assert!(out.contains("ok    login: Bearer token"), "{out}");
    assert!(out.contains("ok    push: may push to demo/app"), "{out}");
}

#[test]
fn doctor_diagnoses_a_wrong_ca() {
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .args(["certs", "ca", "--out", other.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let job = Job::new()
        .with_settings(&reg.settings_block(&other.path().join("ca.crt"), ""))
        .env("REG_PW", PASSWORD);
    let (code, out) = doctor(&job);
    assert_eq!(code, 2, "{out}");
    assert!(
        failing_line(&out, "tls").contains("x509: certificate signed by unknown authority"),
        "{out}"
    );
    assert!(out.contains("fix: set ca_file"), "{out}");

    // A regenerated CA with the very same name: the issuer matches by name, not by key.
    let same = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .args([
            "certs",
            "ca",
            "--cn",
            "test registry CA",
            "--out",
            same.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let job = Job::new()
        .with_settings(&reg.settings_block(&same.path().join("ca.crt"), ""))
        .env("REG_PW", PASSWORD);
    let (code, out) = doctor(&job);
    assert_eq!(code, 2, "{out}");
    let line = failing_line(&out, "tls");
    assert!(
        line.contains("signed by unknown authority") && line.contains("regenerated CA"),
        "{out}"
    );
}

#[test]
fn doctor_diagnoses_a_certificate_without_the_name() {
    let reg = TestRegistry::start(Tls::WrongName, AuthMode::Htpasswd);
    let (code, out) = doctor(&job_for(&reg));
    assert_eq!(code, 2, "{out}");
    let line = failing_line(&out, "tls");
    assert!(
        line.contains("valid for other.test, not registry.test"),
        "{out}"
    );
    assert!(out.contains("--name registry.test"), "{out}");
}

#[test]
fn doctor_diagnoses_a_wrong_password() {
    for mode in [AuthMode::Htpasswd, AuthMode::Token] {
        let reg = TestRegistry::start(Tls::Good, mode);
        let job = Job::new()
            .with_settings(&reg.settings_block(&reg.ca_file(), ""))
            .env("REG_PW", "wrong-password");
        let (code, out) = doctor(&job);
        assert_eq!(code, 2, "{out}");
        let line = failing_line(&out, "login");
        match mode {
            AuthMode::Htpasswd => assert!(line.contains("incorrect username or password"), "{out}"),
            AuthMode::Token => assert!(
                line.contains("failed to fetch oauth token") && line.contains("401"),
                "{out}"
            ),
            AuthMode::None => unreachable!("only authenticated registries are checked here"),
        }
        assert!(out.contains("check username and the password"), "{out}");
    }
}

#[test]
fn doctor_diagnoses_a_registry_that_is_down() {
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let ca = reg.ca_file();
    let settings = format!(
        "[[registries]]\nhost = \"registry.test:{}\"\nca_file = \"{}\"\n",
        free_port(),
        ca.display()
    );
    let (code, out) = doctor(&Job::new().with_settings(&settings));
    assert_eq!(code, 2, "{out}");
    assert!(
        failing_line(&out, "connect").contains("connection refused"),
        "{out}"
    );
    assert!(out.contains("is the registry running"), "{out}");
}

#[test]
fn doctor_diagnoses_tls_spoken_to_a_plain_http_port_and_the_reverse() {
    let plain = TestRegistry::start(Tls::None, AuthMode::Htpasswd);
    let (code, out) = doctor(&job_for(&plain));
    assert_eq!(code, 2, "{out}");
    assert!(
        failing_line(&out, "tls").contains("server gave HTTP response to HTTPS client"),
        "{out}"
    );
    assert!(out.contains("set http = true"), "{out}");

    // http = true against a TLS port.
    let tls = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let settings = format!("[[registries]]\nhost = \"{}\"\nhttp = true\n", tls.host());
    let (code, out) = doctor(&Job::new().with_settings(&settings));
    assert_eq!(code, 2, "{out}");
    assert!(failing_line(&out, "plain http").contains("HTTPS"), "{out}");
    assert!(out.contains("remove http = true"), "{out}");
}

#[test]
fn doctor_diagnoses_a_ca_served_as_the_server_certificate() {
    let reg = TestRegistry::start(Tls::CaAsLeaf, AuthMode::Htpasswd);
    let (code, out) = doctor(&job_for(&reg));
    assert_eq!(code, 2, "{out}");
    assert!(
        failing_line(&out, "tls").contains("CA certificate (CA:TRUE)"),
        "{out}"
    );
    assert!(out.contains("runnerx certs server"), "{out}");
}

/// A registry block with one login per team (GitLab project globs), no every-project login.
fn per_team_block(reg: &TestRegistry) -> String {
    let [(a, _), (b, _)] = TEAMS;
    format!(
        "[[registries]]\nhost = \"{}\"\nca_file = \"{}\"\n\
         [[registries.credentials]]\nprojects = [\"team-a/*\"]\nusername = \"{a}\"\npassword_env = \"PW_A\"\n\
         [[registries.credentials]]\nproject_ids = [4302]\nusername = \"{b}\"\npassword_env = \"PW_B\"\n",
        reg.host(),
        reg.ca_file().display()
    )
}

fn per_team_job(reg: &TestRegistry, id: u64, path: &str) -> Job {
    Job::new()
        .with_settings(&per_team_block(reg))
        .env("PW_A", TEAMS[0].1)
        .env("PW_B", TEAMS[1].1)
        .project(id)
        .project_path(path)
}

#[test]
fn registry_logins_go_only_to_the_projects_they_are_for() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let build_and_push = |repo: &str| {
        format!(
            "{IMAGE}docker build -q -t {host}/{repo}:1 ctx >/dev/null\ndocker push -q {host}/{repo}:1 && echo pushed"
        )
    };
    // Each team's project pushes with no login step, with its own account.
    for (id, path, user) in [
        (4301, "team-a/app", TEAMS[0].0),
        (4302, "team-b/app", TEAMS[1].0),
    ] {
        let mut job = per_team_job(&reg, id, path);
        assert_code(&job.prepare(), 0);
        let out = job.run(
            "build_script",
            &format!(
                "{}\ngrep -c '\"auths\"' ~/.docker/config.json",
                build_and_push(path)
            ),
        );
        assert_code(&out, 0);
        assert!(text(&out).0.contains("pushed"), "{}", text(&out).0);
        let cfg = job.run_raw("build_script", "cat ~/.docker/config.json\n");
        let decoded = String::from_utf8_lossy(&base64_decode_auths(&text(&cfg).0)).to_string();
        assert!(
            decoded.starts_with(&format!("{user}:")),
            "{path} got {decoded:?}"
        );
        // The same search as below finds a project's own login (it can find one).
        let own = base64::engine::general_purpose::STANDARD.encode(&decoded);
        let out = job.run_raw(
            "build_script",
            &format!("grep -rqsF -- '{own}' /home /etc /run /tmp /builds /root 2>/dev/null && echo LEAK; true\n"),
        );
        assert!(text(&out).0.contains("LEAK"), "{}", text(&out).0);
        job.cleanup_leaves_nothing();
    }

    // Another project — even one claiming a listed path in its own variables — gets
    // the CA (401, not a TLS error) and no login: its push is refused, and no password
    // is anywhere its builder can read.
    let mut other = per_team_job(&reg, 4303, "team-c/app").var("CI_PROJECT_PATH", "team-a/app");
    let out = other.prepare();
    assert_code(&out, 0);
    assert!(
        text(&out)
            .1
            .contains("no [[registries.credentials]] entry is for project team-c/app"),
        "{}",
        text(&out).1
    );
    let mut secrets = vec![];
    for (user, pw) in TEAMS {
        secrets.push(pw.to_string());
        secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")));
    }
    let grep = secrets
        .iter()
        .map(|s| format!("grep -rqsF -- '{s}' /home /etc /run /tmp /builds /root 2>/dev/null && echo LEAK; true"))
        .collect::<Vec<_>>()
        .join("\n");
    // As written (no `$ command` echo lines): the markers below appear only if hit.
    let out = other.run_raw(
        "build_script",
        &format!(
            "curl -s -o /dev/null -w 'v2 %{{http_code}}\\n' https://{host}/v2/\n\
             {IMAGE}docker build -q -t {host}/team-a/app:2 ctx >/dev/null\n\
             docker push -q {host}/team-a/app:2 && echo pushed || echo refused\n{grep}\n"
        ),
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(stdout.contains("v2 401"), "{stdout}{stderr}");
    assert!(
        stdout.contains("refused") && !stdout.contains("pushed"),
        "{stdout}{stderr}"
    );
    assert!(!stdout.contains("LEAK"), "{stdout}");
    other.cleanup_leaves_nothing();
}

/// The `auth` value of the single entry of a docker config.json, decoded.
fn base64_decode_auths(config: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(config.trim()).unwrap();
    let auth = v["auths"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|e| e["auth"].as_str())
        .unwrap_or_default()
        .to_string();
    base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap_or_default()
}

#[test]
fn doctor_shows_and_checks_each_projects_login() {
    require_docker();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let job = per_team_job(&reg, 4304, "team-a/app");
    let out = job.runnerx(&["doctor", "--registry", &reg.host()]);
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stdout.contains(&format!("as {} (for team-a/*)", TEAMS[0].0))
            && stdout.contains(&format!("as {} (for project id 4302)", TEAMS[1].0)),
        "{stdout}{stderr}"
    );
    assert!(
        !stdout.contains(TEAMS[0].1) && !stdout.contains(TEAMS[1].1),
        "{stdout}"
    );
    let out = job.runnerx(&[
        "doctor",
        "--registry",
        &reg.host(),
        "--project",
        "team-c/app",
    ]);
    assert!(
        text(&out).0.contains("a job of team-c/app gets no login"),
        "{}",
        text(&out).0
    );
    let out = job.runnerx(&[
        "doctor",
        "--registry",
        &reg.host(),
        "--project",
        "team-a/app",
    ]);
    assert!(
        text(&out)
            .0
            .contains(&format!("a job of team-a/app logs in as {}", TEAMS[0].0)),
        "{}",
        text(&out).0
    );
    // Each account's login is checked: a wrong team-b password fails doctor.
    let wrong = Job::new()
        .with_settings(&per_team_block(&reg))
        .env("PW_A", TEAMS[0].1)
        .env("PW_B", "not-the-password");
    let out = wrong.runnerx(&["doctor", "--registry", &reg.host()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out).0);
    assert!(text(&out).0.contains("FAIL"), "{}", text(&out).0);
}
