//! Signing what a job pushed, on the runner host, after its stage (and reading
//! signatures back for `runnerx verify`): the registry side of [`super`].
//!
//! What a job says it pushed (`runnerx: pushed REPO@DIGEST` lines its `docker` wrapper
//! prints) is a claim: each is checked in the registry with the project's own login
//! (the manifest exists there), and the signature is pushed with that login, so a job
//! gets signed only what its project's login may push to, and only with its project's
//! key. The provenance is made from the job payload, never from job variables.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::provenance::Placement;
use super::{
    Artifact, Provenance, SignError, SigningKey, attestation_artifact, signature_artifact, tag_for,
};
use crate::builder::engine::Engine;
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::registry::oci::Reference;
use crate::registry::session::Session;
use crate::registry::{self, RegistryError, host_port};
use crate::settings::{Registry, Settings, SigningMode};

/// The prefix of the wrapper's push lines.
pub(crate) const PUSHED: &str = "runnerx: pushed ";

/// `REPO@sha256:HEX` claims in `line`, if it is a push line.
pub(crate) fn claim(line: &str) -> Option<(String, String)> {
    let rest = line.trim_end().strip_prefix(PUSHED)?;
    let (repo, digest) = rest.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !repo.is_empty())
        .then(|| (repo.to_string(), digest.to_string()))
}

async fn session(
    settings: &Settings,
    reg: &Registry,
) -> std::result::Result<Session, RegistryError> {
    let (host, port) = host_port(reg);
    let addr = registry::resolve(&settings.builder.extra_hosts, &host, port)
        .await?
        .0;
    Session::open(reg, Some(addr)).await
}

async fn push_artifact(
    s: &mut Session,
    repo: &str,
    tag: &str,
    a: &Artifact,
) -> std::result::Result<(), RegistryError> {
    s.upload_blob(repo, &a.config).await?;
    s.upload_blob(repo, &a.layer).await?;
    s.put_manifest(
        repo,
        tag,
        a.manifest.clone(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await?;
    Ok(())
}

/// The provenance facts of `job` (payload, runnerx, builder image, placements).
async fn provenance(settings: &Settings, job: &Job, engine: &Engine) -> Provenance {
    let gitlab = job
        .server_url
        .clone()
        .unwrap_or_else(|| "https://gitlab".into());
    let settings_digest = settings
        .source
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| crate::registry::oci::digest(&b))
        .unwrap_or_default();
    let native = crate::host::binfmt::goarch(std::env::consts::ARCH);
    let placements = settings
        .builder
        .platforms
        .iter()
        .map(|p| {
            let platform = p.to_string();
            let node = settings.nodes.iter().find(|n| n.platforms.contains(p));
            let built_on = match node {
                Some(n) => format!("node {}", n.name),
                None if platform.split('/').nth(1) == Some(native) => {
                    "the job's builder (native)".into()
                }
                None => "the job's builder (QEMU)".into(),
            };
            Placement { platform, built_on }
        })
        .collect();
    Provenance {
        gitlab,
        project_path: job.project_path.clone().unwrap_or_default(),
        project_id: job.project.clone().unwrap_or_default(),
        pipeline: job.pipeline.clone().unwrap_or_default(),
        job: job.id.clone(),
        commit: job.commit.clone().unwrap_or_default(),
        git_ref: job.git_ref.clone().unwrap_or_default(),
        runnerx: env!("CARGO_PKG_VERSION").into(),
        settings_digest,
        builder_image: engine
            .container_image(&job.builder_name())
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        placements,
    }
}

/// A claim that this project's settings give a signing key for.
struct Signable {
    reference: Reference,
    digest: String,
    registry: Registry,
}

/// The claims this job's project has a key for (a claim naming no configured registry,
/// or one without a key for the project, is not ours to sign).
fn signable(
    settings: &Settings,
    job: &Job,
    claims: &BTreeSet<(String, String)>,
) -> Vec<std::result::Result<Signable, String>> {
    let who = job.identity();
    claims
        .iter()
        .filter_map(|(repo, digest)| {
            let reference = match Reference::parse(repo) {
                Ok(r) => r,
                Err(e) => return Some(Err(format!("{repo}: {}", e.0))),
            };
            let registry = settings
                .registries
                .iter()
                .find(|x| x.host == reference.registry)?
                .for_project(&who);
            registry.signing_key.as_ref()?;
            Some(Ok(Signable {
                reference,
                digest: digest.clone(),
                registry,
            }))
        })
        .collect()
}

/// Signs one claimed push with `s` (a session with the project's login); returns the
/// key's path.
async fn sign_one(
    s: &mut Session,
    prov: &Provenance,
    x: &Signable,
) -> std::result::Result<String, SignError> {
    let key_file = x.registry.signing_key.as_ref().ok_or("no signing key")?;
    let key = SigningKey::from_pem(key_file.pem.expose())?;
    let (r, digest) = (&x.reference, x.digest.as_str());
    let name = format!("{}/{}", r.registry, r.repository);
    // The claim holds only if the project's own login finds that manifest there.
    s.get_manifest(&r.repository, digest).await.map_err(|e| {
        format!("{name}@{digest} is not in the registry for this project's login: {e}")
    })?;
    let sig = signature_artifact(&name, digest, &key)?;
    push_artifact(s, &r.repository, &tag_for(digest, "sig"), &sig)
        .await
        .map_err(|e| e.to_string())?;
    let statement = prov.statement(&[(name, digest.to_string())]);
    let att = attestation_artifact(&statement, &key)?;
    push_artifact(s, &r.repository, &tag_for(digest, "att"), &att)
        .await
        .map_err(|e| e.to_string())?;
    Ok(key_file.path.display().to_string())
}

/// Signs every push `claims` names that the project has a key for (nothing else is
/// looked at when it has none); a failure is one warning, or with
/// `[signing] mode = "require"` a system failure. One session per registry.
pub(crate) async fn sign_claims(
    settings: &Settings,
    job: &Job,
    engine: &Engine,
    claims: &BTreeSet<(String, String)>,
) -> Result<()> {
    let todo = signable(settings, job, claims);
    if todo.is_empty() {
        tracing::debug!("no signing key for what this job pushed");
        return Ok(());
    }
    let prov = provenance(settings, job, engine).await;
    let mut sessions: HashMap<String, Session> = HashMap::new();
    for item in todo {
        let started = std::time::Instant::now();
        let outcome = match &item {
            Err(why) => Err(why.clone()),
            Ok(x) => {
                let host = x.registry.host.clone();
                let s = match sessions.entry(host) {
                    Entry::Occupied(e) => Ok(e.into_mut()),
                    Entry::Vacant(e) => session(settings, &x.registry).await.map(|s| e.insert(s)),
                };
                match s {
                    Ok(s) => sign_one(s, &prov, x).await.map_err(|e| e.0),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let what = match &item {
            Ok(x) => format!(
                "{}/{}@{}",
                x.reference.registry, x.reference.repository, x.digest
            ),
            Err(_) => "a pushed image".into(),
        };
        match outcome {
            Ok(key) => eprintln!(
                "runnerx: signed {what} and attested its provenance (key {key}, {} ms)",
                started.elapsed().as_millis()
            ),
            Err(why) => {
                let line = format!("could not sign {what}: {why}");
                match settings.signing {
                    SigningMode::Warn => tracing::warn!("{line}"),
                    SigningMode::Require => return Err(Error::Signing(line)),
                }
            }
        }
    }
    Ok(())
}
