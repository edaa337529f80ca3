//! Native BuildKit nodes (`[[nodes]]`) and the docker-container driver, end to end:
//! a BuildKit image built from Debian packages (docker/build-buildkit-image.sh), two
//! nodes started by `runnerx node --start` on loopback with mTLS certificates from
//! `runnerx certs`, a real TLS registry with a password, jobs run by `runnerx local`
//! through the executor's stages. Which node built which platform is read from the
//! nodes' own build records (`buildctl du`), not from runnerx's output.

use std::path::Path;

use crate::multiarch::busybox;
use crate::registry::{AuthMode, TestRegistry, Tls, runnerx_certs};
use crate::support::{BUILDER_IMAGE, Job, assert_code, docker, require_docker, text};

/// The BuildKit image scripts/setup-host.sh builds.
const BUILDKIT_IMAGE: &str = "runnerx-buildkit:local";

fn require_buildkit() {
    require_docker();
    assert!(
        docker(&["image", "inspect", BUILDKIT_IMAGE])
            .status
            .success(),
        "these tests need the image {BUILDKIT_IMAGE}: run scripts/test.sh (or \
         docker/build-buildkit-image.sh), which builds it from Debian packages"
    );
}

/// Node containers started by a test, removed with their volumes on drop.
struct Nodes(Vec<String>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.0 {
            let c = format!("runnerx-node-{n}");
            let _ = docker(&["rm", "-f", &c]);
            let _ = docker(&["volume", "rm", "-f", &c]);
        }
    }
}

/// A build context whose per-platform stage is chosen by `TARGETARCH`, so each
/// platform's RUN step has its own literal command: the node's build records then
/// say which platforms it built.
fn project(dir: &Path, script: &str) {
    busybox("amd64", dir);
    busybox("arm64", dir);
    let mut dockerfile = String::new();
    for arch in ["amd64", "arm64"] {
        dockerfile.push_str(&format!(
            "FROM scratch AS build-{arch}\nCOPY busybox-{arch} /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built-for-{arch} > /p\"]\n\n"
        ));
    }
    dockerfile.push_str("FROM build-${TARGETARCH}\n");
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        format!("build:\n  script:\n{script}"),
    )
    .unwrap();
}

/// The runner's settings: builder, registry, loopback names for the registry and
/// the nodes, plus `extra`.
fn settings(reg: &TestRegistry, names: &[&str], extra: &str) -> String {
    let hosts: Vec<String> = std::iter::once("registry.test")
        .chain(names.iter().copied())
        .map(|h| format!("\"{h}:127.0.0.1\""))
        .collect();
    format!(
        "[builder]\nimage = \"{BUILDER_IMAGE}\"\npull_policy = \"never\"\nhost_loopback = true\n\
         extra_hosts = [{}]\n{extra}\n{}",
        hosts.join(", "),
        reg.settings_block(&reg.ca_file(), "")
    )
}

/// `runnerx node --start` for `platform` on a free loopback port; returns its
/// `[[nodes]]` entry.
fn start_node(
    job: &Job,
    ca: &Path,
    out: &Path,
    name: &str,
    address: &str,
    platform: &str,
) -> String {
    let port = crate::registry::free_port().to_string();
    let run = job.runnerx(&[
        "node",
        "--name",
        name,
        "--address",
        address,
        "--listen",
        "127.0.0.1",
        "--port",
        &port,
        "--platform",
        platform,
        "--ca",
        ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--image",
        BUILDKIT_IMAGE,
        "--start",
    ]);
    assert_code(&run, 0);
    let (stdout, stderr) = text(&run);
    assert!(
        stdout.contains(&format!(
            "node {name} answers at tcp://{address}:{port} over mTLS"
        )),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains(platform), "{stdout}");
    // The printed entry is what the runner host pastes; its files are in out/runner/.
    let runner = out.join("runner");
    format!(
        "[[nodes]]\nname = \"{name}\"\nendpoint = \"tcp://{address}:{port}\"\nplatforms = [\"{platform}\"]\n\
         ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        runner.join("ca.crt").display(),
        runner.join("client.crt").display(),
        runner.join("client.key").display()
    )
}

/// The platforms a node built, from its own build history: per record, the keys of
/// its per-platform results (buildx's solves, with attestations), else the
/// architecture of its image config (a plain single-platform solve).
fn node_built(name: &str) -> Vec<String> {
    let format = "{{range $p, $_ := .Record.Results}}{{$p}} {{end}}|\
                  {{index .Record.ExporterResponse \"containerimage.config\"}}";
    let out = docker(&[
        "exec",
        &format!("runnerx-node-{name}"),
        "buildctl",
        "--addr",
        "unix:///run/buildkit/buildkitd.sock",
        "debug",
        "histories",
        "--format",
        format,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut built: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (results, config) = line.split_once('|').unwrap_or((line, ""));
        let mut platforms: Vec<String> = results
            .split_whitespace()
            .filter(|p| p.contains('/'))
            .map(str::to_string)
            .collect();
        if platforms.is_empty() && !config.trim().is_empty() {
            let c: serde_json::Value = serde_json::from_str(config)
                .unwrap_or_else(|e| panic!("node {name} history: {e}: {line}"));
            platforms.push(format!(
                "linux/{}",
                c["architecture"].as_str().unwrap_or("?")
            ));
        }
        built.extend(platforms);
    }
    built.sort();
    built.dedup();
    built
}

/// Puts the BuildKit image into the registry as an operator mirrors it into Harbor:
/// loaded into a builder, tagged and pushed from there.
fn mirror_buildkit_image(reg: &TestRegistry) -> String {
    let target = format!("{}/mirror/buildkit:local", reg.host());
    let mut job = reg.job();
    assert_code(&job.prepare(), 0);
    let load = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "docker save {BUILDKIT_IMAGE} | docker exec -i {} bash /etc/runnerx/exec.sh do docker load",
            job.builder()
        ))
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let out = job.run(
        "build_script",
        &format!("docker tag {BUILDKIT_IMAGE} {target} && docker push -q {target}"),
    );
    assert_code(&out, 0);
    assert_code(&job.cleanup(), 0);
    target
}

#[test]
fn nodes_build_their_platforms_a_silent_node_falls_back_and_docker_container_works() {
    require_buildkit();
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let host = reg.host();
    let job = Job::new();
    let id = job.id.clone();
    let (amd, arm) = (format!("amd{id}"), format!("arm{id}"));
    // One node by a name mapped to the host's loopback (extra_hosts), the other by the
    // literal loopback address: a rootless builder reaches both through the host alias.
    let (amd_addr, arm_addr) = (format!("{amd}.test"), "127.0.0.1".to_string());
    let names = [amd_addr.as_str()];
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca");
    runnerx_certs(&["ca", "--out", ca.to_str().unwrap()]);

    let job = job
        .settings(&settings(&reg, &names, ""))
        .env("REG_PW", crate::registry::PASSWORD);
    let _nodes = Nodes(vec![amd.clone(), arm.clone()]);
    let node_a = start_node(
        &job,
        &ca,
        &work.path().join("a"),
        &amd,
        &amd_addr,
        "linux/amd64",
    );
    let node_b = start_node(
        &job,
        &ca,
        &work.path().join("b"),
        &arm,
        &arm_addr,
        "linux/arm64",
    );
    // The node's files: mTLS only, pinned, trusting the registry; its key stays on it.
    let toml = std::fs::read_to_string(work.path().join("b/node/buildkitd.toml")).unwrap();
    assert!(toml.contains("ca = \"/etc/buildkit/tls/ca.crt\""), "{toml}");
    assert!(toml.contains("platforms = [\"linux/arm64\"]"), "{toml}");
    assert!(toml.contains(&format!("[registry.\"{host}\"]")), "{toml}");
    assert!(!work.path().join("b/node/client.key").exists());

    // Without host_loopback a rootless builder cannot reach the literal-loopback node:
    // prepare says so in one line (system failure) and leaves nothing. (First: its
    // settings make another egress policy, which it holds until dropped.)
    let mut closed = Job::new()
        .settings(
            &settings(
                &reg,
                &names,
                &format!(
                    "{node_a}
{node_b}"
                ),
            )
            .replace("host_loopback = true", "host_loopback = false"),
        )
        .env("REG_PW", crate::registry::PASSWORD);
    let out = closed.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .contains(&format!(
                "node {arm} listens on the runner host's loopback (tcp://127.0.0.1:"
            ))
            && stderr.contains("builder.host_loopback = true"),
        "{stderr}"
    );
    assert_code(&closed.cleanup(), 0);
    // Its settings make another egress policy than the job's below.
    drop(closed);

    let job = job.settings(&settings(&reg, &names, &format!("{node_a}\n{node_b}")));
    // doctor: both nodes answer with the client certificate and refuse one without.
    let out = job.runnerx(&["doctor"]);
    let (stdout, _) = text(&out);
    assert_eq!(
        stdout
            .matches("ok    client certificates: a client without a certificate is refused")
            .count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("ok    platforms: linux/arm64"), "{stdout}");
    assert!(!stdout.contains("FAIL  mTLS"), "{stdout}");

    // A plain multi-platform build: each platform goes to its node.
    let image = format!("{host}/demo/nodes:1");
    let proj = tempfile::tempdir().unwrap();
    project(
        proj.path(),
        "    - docker buildx build --platform linux/amd64,linux/arm64 --push -t \"$IMAGE\" .\n    - runnerx manifest inspect \"$IMAGE\"\n",
    );
    let out = job.runnerx_in(
        proj.path(),
        &["local", "build", "--var", &format!("IMAGE={image}")],
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stderr.contains(&format!("linux/amd64 on node {amd}"))
            && stderr.contains(&format!("linux/arm64 on node {arm}")),
        "{stderr}"
    );
    assert!(!stderr.contains("in this builder"), "{stderr}");
    // runnerx inside the job lists the index it pushed, with the job's own login.
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );
    // The build ends with where each platform was built (the job's stderr, which
    // `runnerx local` prints on its own).
    assert!(stderr.contains("runnerx build report:"), "{stderr}");
    assert!(
        stderr.contains(&format!("linux/arm64    node {arm} (BuildKit v0.13.2)")),
        "{stderr}"
    );
    // The nodes' own records: each built only the platform declared for it.
    assert_eq!(node_built(&amd), ["linux/amd64"]);
    assert_eq!(node_built(&arm), ["linux/arm64"]);

    // The arm64 node stops: with fallback = "qemu" (the default) the job builds arm64
    // in its own docker-container BuildKit under QEMU, with one warning naming the node.
    let mirrored = mirror_buildkit_image(&reg);
    assert!(
        docker(&["stop", &format!("runnerx-node-{arm}")])
            .status
            .success()
    );
    let job = job.settings(&settings(
        &reg,
        &names,
        &format!("buildkit_image = \"{mirrored}\"\n{node_a}\n{node_b}"),
    ));
    let out = job.runnerx_in(
        proj.path(),
        &[
            "local",
            "build",
            "--var",
            &format!("IMAGE={host}/demo/nodes:fallback"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stderr.contains(&format!("node {arm} does not answer"))
            && stderr.contains("linux/arm64 under QEMU"),
        "{stderr}"
    );
    assert!(stderr.contains("linux/arm64 in this builder"), "{stderr}");
    assert!(stdout.contains("linux/arm64"), "{stdout}");

    // A node kept to some projects (its build cache is shared by whoever uses it):
    // a job of another project builds that platform in its own builder.
    let team_a = node_a.replace("[[nodes]]\n", "[[nodes]]\nprojects = [\"team-a/*\"]\n");
    let job = job.settings(&settings(
        &reg,
        &names,
        &format!("buildkit_image = \"{mirrored}\"\n{team_a}\n{node_b}"),
    ));
    for (project, on_node) in [("team-b/app", false), ("team-a/app", true)] {
        let out = job.runnerx_in(
            proj.path(),
            &[
                "local",
                "build",
                "--project",
                project,
                "--var",
                &format!("IMAGE={host}/demo/nodes:{}", project.replace('/', "-")),
            ],
        );
        let (_, stderr) = text(&out);
        assert_code(&out, 0);
        let uses = stderr.contains(&format!("linux/amd64 on node {amd}"));
        assert_eq!(uses, on_node, "{project}: {stderr}");
        assert_eq!(
            stderr.contains(&format!("node {amd} serves other projects")),
            !on_node,
            "{project}: {stderr}"
        );
    }

    // With fallback = "fail" the same silence is a system failure naming the node.
    let failing = node_b.replace("[[nodes]]\n", "[[nodes]]\nfallback = \"fail\"\n");
    let mut strict = Job::new()
        .settings(&settings(&reg, &names, &format!("{node_a}\n{failing}")))
        .env("REG_PW", crate::registry::PASSWORD);
    let out = strict.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!("node {arm} does not answer"))
            && stderr.contains("fallback = \"fail\""),
        "{stderr}"
    );
    assert_code(&strict.cleanup(), 0);

    // No nodes, builder.driver = "docker-container": the job's default builder is
    // runnerx's docker-container one, with the registry's trust, for both platforms.
    let job = job.settings(&settings(
        &reg,
        &[],
        &format!("driver = \"docker-container\"\nbuildkit_image = \"{mirrored}\""),
    ));
    let image = format!("{host}/demo/container-driver:1");
    let out = job.runnerx_in(
        proj.path(),
        &["local", "build", "--var", &format!("IMAGE={image}")],
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        stderr.contains("buildx docker-container builder ready"),
        "{stderr}"
    );
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );
}
