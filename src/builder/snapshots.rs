//! Snapshots (insta) of everything that lands in a builder, so a reviewer sees each
//! change to it in the diff: the container body per rights, the inner daemon.json, the
//! boot files uploaded before start (boot/ns-init/exec shell, boot.env, trust files),
//! buildkitd.toml, the docker config.json, and the `config` stage's JSON.
//!
//! Run `cargo insta review` (or `INSTA_UPDATE=always cargo test --lib`) after an
//! intended change; CI fails on any unreviewed difference.

use std::io::Read;

use super::spec::{BuilderSpec, DataRoot, InnerNet, Rights, bundle, container_body, daemon_json};
use crate::settings::{ClientIdentity, Credentials, Limits, Proxy, Registry, Secret};
use crate::trust;

fn registry() -> Registry {
    Registry {
        host: "harbor.example.com:8443".into(),
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into()),
        ca_file: Some("/etc/runnerx/harbor-ca.crt".into()),
        client: Some(ClientIdentity {
            cert_pem: "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n".into(),
            key_pem: Secret::new("-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"),
        }),
        credentials: Some(Credentials {
            username: "robot$ci".into(),
            password: Secret::new("s3cret"),
        }),
        insecure: false,
        http: false,
        mirror_for: vec!["docker.io".into()],
        check_repository: None,
        cache_repository: None,
        signing_key: None,
        credential_rules: vec![],
    }
}

fn proxy() -> Proxy {
    Proxy {
        http_proxy: Some("http://proxy.example.com:3128".into()),
        https_proxy: Some("http://proxy.example.com:3128".into()),
        no_proxy: Some("localhost,.example.com".into()),
    }
}

fn spec() -> BuilderSpec {
    BuilderSpec {
        job_id: "42".into(),
        name: "runnerx-42".into(),
        image: "runnerx-builder:local".into(),
        host_loopback: true,
        publish_on_host: false,
        build_cache: None,
        extra_hosts: vec!["harbor.example.com:10.0.0.5".into()],
        created: 1_700_000_000,
        registries: vec![registry()],
        proxy: proxy(),
        binfmt: vec!["aarch64".into()],
        data_root: DataRoot::Cache {
            name: "runnerx-cache-77-0".into(),
            warm: false,
        },
        inner_net: InnerNet::of("10.213.0.0/16".parse().unwrap()),
        limits: Limits {
            memory: 8 << 30,
            cpus: Some(1.5),
            pids: 16384,
        },
        lease: Some("77:1234".into()),
        helper: Some("/usr/bin/gitlab-runner".into()),
        runnerx: Some("/usr/local/libexec/runnerx".into()),
        cache_dir: Some("runnerx-cachedir-p77-rootless".into()),
        dind_aliases: vec!["docker".into()],
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        gc_keep_storage: Some(20_000_000_000),
        apparmor: "apparmor=runnerx-builder".into(),
    }
}

/// The container body as JSON, with the (vendored, 800-line) seccomp profile named
/// rather than inlined.
/// `v` with every object's keys sorted: the body holds hash maps (labels, tmpfs),
/// whose order serde_json keeps as it meets them.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn body_json(rights: Rights) -> serde_json::Value {
    let mut v = serde_json::to_value(container_body(&spec(), rights)).unwrap();
    if let Some(opts) = v["HostConfig"]["SecurityOpt"].as_array_mut() {
        for o in opts {
            if o.as_str().is_some_and(|s| s.starts_with("seccomp={")) {
                *o = "seccomp=<src/builder/seccomp.json>".into();
            }
        }
    }
    sorted(v)
}

/// Every file of the boot bundle: path, mode, owner, then its content.
fn bundle_listing(rights: Rights) -> String {
    let tar = bundle(&spec(), rights);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = String::new();
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let header = e.header().clone();
        let path = e.path().unwrap().display().to_string();
        let mut content = String::new();
        e.read_to_string(&mut content).unwrap();
        out.push_str(&format!(
            "=== {path} mode {:o} uid {} ({:?})\n{content}\n",
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.entry_type(),
        ));
    }
    out
}

#[test]
fn container_body_rootless() {
    insta::assert_json_snapshot!(body_json(Rights::Rootless));
}

#[test]
fn container_body_privileged() {
    insta::assert_json_snapshot!(body_json(Rights::Privileged));
}

#[test]
fn container_body_capabilities() {
    insta::assert_json_snapshot!(body_json(Rights::Capabilities));
}

#[test]
fn daemon_json_rootless() {
    insta::assert_snapshot!(daemon_json(&spec(), Rights::Rootless));
}

#[test]
fn daemon_json_privileged() {
    insta::assert_snapshot!(daemon_json(&spec(), Rights::Privileged));
}

#[test]
fn boot_bundle_rootless() {
    insta::assert_snapshot!(bundle_listing(Rights::Rootless));
}

#[test]
fn boot_bundle_privileged() {
    insta::assert_snapshot!(bundle_listing(Rights::Privileged));
}

#[test]
fn buildkitd_toml() {
    insta::assert_snapshot!(trust::buildkitd_toml(&[registry()]));
}

#[test]
fn docker_config_json() {
    insta::assert_snapshot!(trust::docker_config_json(&[registry()], &proxy()).unwrap());
}

#[test]
fn config_stage_output() {
    let env = crate::env::Env::from_pairs([("CUSTOM_ENV_CI_JOB_ID", "42")]);
    let job = crate::gitlab::job::Job::from_env(&env, None, false).unwrap();
    insta::assert_json_snapshot!(crate::gitlab::stages::config::output(Some(&job)));
}
