//! `runnerx manifest create|inspect`: the seed workflow for per-arch tags
//! (`…:3.8.5-amd64` + `…:3.8.5-arm64` → `…:3.8.5`) with the settings' CA and
//! credentials, and a platform listing of any image. Never falls back to plain HTTP.

use crate::error::{Error, Result};
use crate::registry::RegistryError::BadAnswer;
use crate::registry::oci::{self, Descriptor, Platform, Reference};
use crate::registry::session::Session;
use crate::registry::{self, host_port, registry_for};
use crate::settings::Settings;

async fn session(settings: &Settings, r: &Reference) -> Result<Session> {
    let reg = registry_for(settings, &r.registry);
    let (host, port) = host_port(&reg);
    let addr = registry::resolve(&settings.builder.extra_hosts, &host, port)
        .await?
        .0;
    Ok(Session::open(&reg, Some(addr)).await?)
}

/// One child of the index to build, and where it lives now.
struct Child {
    repo: String,
    desc: Descriptor,
    /// Manifest bytes when already fetched.
    bytes: Option<Vec<u8>>,
}

/// `manifest create`.
pub(crate) async fn create(
    settings: &Settings,
    target: &str,
    sources: &[String],
    platforms: &[String],
) -> Result<()> {
    let target = Reference::parse(target).map_err(|e| Error::Usage(e.0))?;
    if target.reference.starts_with("sha256:") {
        return Err(Error::Usage("TARGET must be a tag, not a digest".into()));
    }
    let sources = sources
        .iter()
        .map(|s| Reference::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Usage(e.0))?;
    if let Some(other) = sources.iter().find(|s| s.registry != target.registry) {
        return Err(Error::Usage(format!(
            "{other} is in another registry than {target}; copy it into {} first (children must live in the target's registry)",
            target.registry
        )));
    }
    if !platforms.is_empty() && platforms.len() != sources.len() {
        return Err(Error::Usage(format!(
            "{} --platform values for {} sources; give one per SRC, in order, or none",
            platforms.len(),
            sources.len()
        )));
    }
    let overrides = platforms
        .iter()
        .map(|p| {
            p.parse::<crate::settings::Platform>()
                .map(Platform::from)
                .map_err(|m| Error::Usage(format!("--platform {p:?} {m}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut s = session(settings, &target).await?;

    let mut children: Vec<Child> = vec![];
    for (i, src) in sources.iter().enumerate() {
        let (bytes, media, digest) = s.get_manifest(&src.repository, &src.reference).await?;
        if oci::is_index(&media) {
            if !overrides.is_empty() {
                return Err(Error::Usage(format!(
                    "{src} is already multi-platform; --platform only applies to single-platform sources"
                )));
            }
            // Flatten: its platform entries become ours; attestations are dropped.
            for d in oci::index_entries(&bytes)? {
                if d.is_attestation() {
                    continue;
                }
                children.push(Child {
                    repo: src.repository.clone(),
                    desc: Descriptor {
                        annotations: None,
                        ..d
                    },
                    bytes: None,
                });
            }
            continue;
        }
        let (config, _) =
            oci::manifest_blobs(&bytes).map_err(|m| BadAnswer(format!("{src}: {m}")))?;
        let platform = match overrides.get(i) {
            Some(p) => p.clone(),
            None => {
                let cfg = s.get_blob(&src.repository, &config.digest).await?;
                oci::config_platform(&cfg)
                    .map_err(|m| BadAnswer(format!("{src}: {m}; pass --platform")))?
            }
        };
        children.push(Child {
            repo: src.repository.clone(),
            desc: Descriptor {
                media_type: media,
                digest,
                size: bytes.len() as u64,
                platform: Some(platform),
                annotations: None,
            },
            bytes: Some(bytes),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &children {
        let p = c
            .desc
            .platform
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        if p.is_empty() || !seen.insert(p.clone()) {
            return Err(Error::Usage(format!(
                "two sources provide platform {p:?}; an index holds each platform once"
            )));
        }
    }

    // Children must exist in the target repository: mount their blobs, then push the
    // child manifests' exact bytes by digest.
    for c in &mut children {
        if c.repo == target.repository {
            continue;
        }
        let bytes = match c.bytes.take() {
            Some(b) => b,
            None => s.get_manifest(&c.repo, &c.desc.digest).await?.0,
        };
        let (config, layers) = oci::manifest_blobs(&bytes)?;
        for blob in std::iter::once(&config).chain(&layers) {
            s.mount_blob(&target.repository, &c.repo, &blob.digest)
                .await?;
        }
        s.put_manifest(
            &target.repository,
            &c.desc.digest,
            bytes,
            &c.desc.media_type,
        )
        .await?;
        tracing::info!(
            "copied {} ({}) from {}",
            c.desc.digest,
            c.desc
                .platform
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            c.repo
        );
    }
    let descs: Vec<Descriptor> = children.into_iter().map(|c| c.desc).collect();
    let (index, media) = oci::build_index(&descs);
    let digest = s
        .put_manifest(&target.repository, &target.reference, index, media)
        .await?;
    println!("pushed {target} ({media})");
    println!("digest {digest}");
    for d in &descs {
        println!(
            "  {:<16} {}",
            d.platform
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            d.digest
        );
    }
    Ok(())
}

/// `manifest inspect`.
pub(crate) async fn inspect(settings: &Settings, reference: &str) -> Result<()> {
    let r = Reference::parse(reference).map_err(|e| Error::Usage(e.0))?;
    let mut s = session(settings, &r).await?;
    let (bytes, media, digest) = s.get_manifest(&r.repository, &r.reference).await?;
    println!("{r}");
    println!("media type {media}");
    println!("digest {digest}");
    if oci::is_index(&media) {
        for d in oci::index_entries(&bytes)? {
            let platform = d
                .platform
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "?".into());
            if d.is_attestation() {
                println!("  {:<16} {} (attestation)", "-", d.digest);
            } else {
                println!("  {platform:<16} {}", d.digest);
            }
        }
    } else {
        let (config, _) = oci::manifest_blobs(&bytes)?;
        let cfg = s.get_blob(&r.repository, &config.digest).await?;
        let p = oci::config_platform(&cfg).map_or_else(|e| format!("? ({e})"), |p| p.to_string());
        println!("  {p:<16} {digest}");
    }
    Ok(())
}
