//! Signatures and provenance made by the runner: a job pushes a multi-arch image to a
//! real TLS registry with a login; runnerx signs it on the host with the project's key
//! (which no job can read) and attests a provenance built from the job payload. The
//! signature is checked with openssl, independently of runnerx's own code.

use std::path::Path;
use std::process::Command;

use crate::registry::{AuthMode, PASSWORD, TestRegistry, Tls, USER};
use crate::support::{Job, assert_code, bin, require_docker, text};

fn curl(reg: &TestRegistry, path: &str, accept: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(reg.ca_file())
        .args(["-u", &format!("{USER}:{PASSWORD}")])
        .args(["-H", &format!("Accept: {accept}")])
        .arg(format!("https://127.0.0.1:{}{path}", reg.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}: {out:?}");
    out.stdout
}

fn signing_key(dir: &Path) {
    let out = Command::new(bin())
        .args(["certs", "signing-key", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(text(&out).0.contains("-----BEGIN PUBLIC KEY-----"));
}

/// A registry, a fresh key pair in its own directory, and the registry's settings
/// block naming that key (plus `extra` TOML after it).
fn signing_registry(extra: &str) -> (TestRegistry, tempfile::TempDir, String) {
    let reg = TestRegistry::start(Tls::Good, AuthMode::Htpasswd);
    let keys = tempfile::tempdir().unwrap();
    signing_key(keys.path());
    let key = keys.path().join("cosign.key");
    let settings = format!(
        "{}{extra}",
        reg.settings_block(
            &reg.ca_file(),
            &format!("signing_key_file = \"{}\"\n", key.display())
        )
    );
    (reg, keys, settings)
}

fn verify(job: &Job, image: &str, key: &Path) -> std::process::Output {
    job.runnerx(&["verify", image, "--key", key.to_str().unwrap(), "--json"])
}

#[test]
fn a_pushed_image_is_signed_and_attested_by_the_runner_and_verifies() {
    require_docker();
    let (reg, keys, settings) = signing_registry("");
    let key = keys.path().join("cosign.key");
    let mut job = Job::new()
        .with_settings(&settings)
        .env("REG_PW", PASSWORD)
        .var("CI_COMMIT_SHA", "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef");
    assert_code(&job.prepare(), 0);
    let image = format!("{}/demo/signed", reg.host());
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret_line = secret.lines().nth(2).unwrap();
    let out = job.run(
        "build_script",
        &format!(
            "mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
             docker buildx build -q --platform linux/amd64,linux/arm64 --push -t {image}:1 ctx >/dev/null\n\
             docker build -q -t {image}:single ctx >/dev/null && docker push -q {image}:single >/dev/null\n\
             {{ grep -rlsF -- '{secret_line}' /home /etc /run /tmp /builds /root 2>/dev/null || true; }} | sed 's/^/KEY-LEAK /'\n\
             echo 'runnerx: pushed {image}@sha256:{}' >&2\n",
            "0".repeat(64)
        ),
    );
    let (stdout, stderr) = text(&out);
    assert_code(&out, 0);
    assert!(
        !stdout.lines().any(|l| l.starts_with("KEY-LEAK ")),
        "the job could read the signing key"
    );
    let signed: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("runnerx: signed {image}@")))
        .filter_map(|r| r.split_whitespace().next())
        .map(String::from)
        .collect();
    // The multi-platform index (buildx --push) and the single image (docker push).
    assert_eq!(signed.len(), 2, "{stderr}");
    let digest = signed[0].clone();
    // A claim the registry does not confirm is refused, with one warning.
    assert!(
        stderr.contains(&format!("could not sign {image}@sha256:{}", "0".repeat(64))),
        "{stderr}"
    );

    // The signature, checked with openssl against the public key.
    let tag = digest.replacen(':', "-", 1);
    let sig_manifest: serde_json::Value = serde_json::from_slice(&curl(
        &reg,
        &format!("/v2/demo/signed/manifests/{tag}.sig"),
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = curl(
        &reg,
        &format!(
            "/v2/demo/signed/blobs/{}",
            layer["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    let sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("payload.json"), &payload).unwrap();
    std::fs::write(work.path().join("sig.der"), &sig).unwrap();
    let openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(keys.path().join("cosign.pub"))
        .arg("-signature")
        .arg(work.path().join("sig.der"))
        .arg(work.path().join("payload.json"))
        .output()
        .unwrap();
    assert!(openssl.status.success(), "openssl: {openssl:?}");
    let p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );

    // runnerx verify: signature and provenance, from the payload, not job variables.
    let out = verify(&job, &format!("{image}:1"), &keys.path().join("cosign.pub"));
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let ext = &v["provenance"]["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(ext["project"]["path"], "group/demo");
    assert_eq!(ext["job"], job.id.as_str());
    assert_eq!(
        ext["commit"],
        "0".repeat(40),
        "a job variable changed the provenance"
    );
    assert!(
        signed.iter().any(|d| v["digest"] == d.as_str()),
        "{v} is not one of {signed:?}"
    );

    // Another key does not verify it.
    let other = tempfile::tempdir().unwrap();
    signing_key(other.path());
    let out = verify(
        &job,
        &format!("{image}:1"),
        &other.path().join("cosign.pub"),
    );
    assert_code(&out, 2);
    assert!(
        text(&out).1.contains("does not verify with this key"),
        "{}",
        text(&out).1
    );
    job.cleanup_leaves_nothing();
}

#[test]
fn with_signing_required_a_push_that_cannot_be_signed_fails_the_stage_as_ours() {
    require_docker();
    let (reg, _keys, settings) = signing_registry("\n[signing]\nmode = \"require\"\n");
    let mut job = Job::new().with_settings(&settings).env("REG_PW", PASSWORD);
    assert_code(&job.prepare(), 0);
    // A claim the registry cannot confirm (nothing was pushed).
    let out = job.run(
        "build_script",
        &format!(
            "echo 'runnerx: pushed {}/demo/none@sha256:{}' >&2",
            reg.host(),
            "1".repeat(64)
        ),
    );
    assert_code(&out, 2);
    assert!(
        text(&out).1.contains("signing: could not sign"),
        "{}",
        text(&out).1
    );
    job.cleanup_leaves_nothing();
}
