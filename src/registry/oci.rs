//! OCI/Docker manifest data (pure): references, media types, descriptors, platforms,
//! and multi-platform index assembly (OCI distribution and image-index specs).
//!
//! Invariant: manifests are handled as the exact bytes the registry stored; digests are
//! sha256 of those bytes; nothing fetched is re-serialized before being pushed again.

use super::RegistryError::{self, BadAnswer};
use crate::error::Invalid;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 2 manifest.
#[cfg(test)]
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Every type runnerx reads; registry 2.x hides OCI content unless asked for
/// (docs/background.md#registry-quirks).
pub(crate) const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether a media type is an index/list.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// An image reference split into registry, repository and tag/digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `host[:port]` (`docker.io` when none is written).
    pub registry: String,
    /// Repository path, e.g. `base/busybox` (`library/x` on Docker Hub).
    pub repository: String,
    /// Tag, or digest (`sha256:…`).
    pub reference: String,
}

impl Reference {
    /// Parses `[registry/]repo[:tag][@digest]`.
    pub(crate) fn parse(text: &str) -> Result<Reference, Invalid> {
        let bad = |why: &str| {
            Invalid(format!(
                "{text:?} is not an image reference ({why}); write e.g. harbor.example.com/project/app:1.0"
            ))
        };
        if text.is_empty() || text.contains(char::is_whitespace) || text.contains("://") {
            return Err(bad("empty, whitespace or a URL"));
        }
        let (name, reference) = if let Some((n, d)) = text.split_once('@') {
            (n.to_string(), d.to_string())
        } else {
            let last_slash = text.rfind('/').map_or(0, |i| i + 1);
            match text[last_slash..].rfind(':') {
                Some(i) => (
                    text[..last_slash + i].to_string(),
                    text[last_slash + i + 1..].to_string(),
                ),
                None => (text.to_string(), "latest".to_string()),
            }
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ if name.contains('/') => ("docker.io".to_string(), name.clone()),
            _ => ("docker.io".to_string(), format!("library/{name}")),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !repo_ok {
            return Err(bad("repository must be lowercase path components"));
        }
        if reference.is_empty() || (reference.starts_with("sha256:") && reference.len() != 71) {
            return Err(bad("bad tag or digest"));
        }
        Ok(Reference {
            registry,
            repository,
            reference,
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

/// `platform` of an index entry / image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Platform {
    /// GOARCH.
    pub architecture: String,
    /// GOOS.
    pub os: String,
    /// `v7`, `v8`, …
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    /// Windows only.
    #[serde(
        rename = "os.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_version: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl From<crate::settings::Platform> for Platform {
    fn from(p: crate::settings::Platform) -> Platform {
        Platform {
            architecture: p.arch,
            os: p.os,
            variant: p.variant,
            os_version: None,
        }
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Descriptor {
    /// BuildKit's provenance/SBOM entries (`unknown/unknown`, reference-type annotation).
    pub(crate) fn is_attestation(&self) -> bool {
        let annotated = self.annotations.as_ref().is_some_and(|a| {
            a.get("vnd.docker.reference.type").and_then(|v| v.as_str())
                == Some("attestation-manifest")
        });
        let unknown = self
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
        annotated || unknown
    }
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Entries of an index/list document.
pub(crate) fn index_entries(bytes: &[u8]) -> Result<Vec<Descriptor>, RegistryError> {
    serde_json::from_slice::<IndexDoc>(bytes)
        .map(|d| d.manifests)
        .map_err(|e| {
            BadAnswer(format!(
                "the index is not valid JSON of an OCI index/Docker list: {e}"
            ))
        })
}

/// Config and layer descriptors of an image manifest.
pub(crate) fn manifest_blobs(bytes: &[u8]) -> Result<(Descriptor, Vec<Descriptor>), RegistryError> {
    serde_json::from_slice::<ManifestDoc>(bytes)
        .map(|d| (d.config, d.layers))
        .map_err(|e| BadAnswer(format!("the manifest is not a valid image manifest: {e}")))
}

/// The platform an image config declares.
pub(crate) fn config_platform(bytes: &[u8]) -> Result<Platform, RegistryError> {
    let p: Platform = serde_json::from_slice(bytes)
        .map_err(|e| BadAnswer(format!("image config without os/architecture: {e}")))?;
    if p.os.is_empty() || p.architecture.is_empty() {
        return Err(BadAnswer(
            "image config has an empty os or architecture".into(),
        ));
    }
    Ok(Platform {
        os_version: None,
        ..p
    })
}

/// Serializes an index of `children`: an OCI index if any child is OCI, else a Docker
/// list (what `docker manifest` and registries expect). Returns (bytes, media type).
pub(crate) fn build_index(children: &[Descriptor]) -> (Vec<u8>, &'static str) {
    let oci = children
        .iter()
        .any(|c| c.media_type.starts_with("application/vnd.oci."));
    let media_type = if oci { OCI_INDEX } else { DOCKER_LIST };
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": children,
    });
    (
        serde_json::to_vec_pretty(&doc).expect("index serializes"),
        media_type,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r = Reference::parse("registry.test:5443/base/busybox:1-arm64").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("registry.test:5443", "base/busybox", "1-arm64")
        );
        assert_eq!(r.to_string(), "registry.test:5443/base/busybox:1-arm64");
        let r = Reference::parse("harbor.example.com/p/app").unwrap();
        assert_eq!(r.reference, "latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("h.test/p/app@{d}")).unwrap();
        assert_eq!(r.reference, d);
        assert_eq!(r.to_string(), format!("h.test/p/app@{d}"));
        assert_eq!(
            Reference::parse("busybox").unwrap().repository,
            "library/busybox"
        );
        assert!(Reference::parse("https://h/p").is_err());
        assert!(Reference::parse("h.test/P/App:1").is_err());
    }

    #[test]
    fn index_is_oci_when_children_are_and_skips_nothing_itself() {
        let child = |mt: &str, arch: &str| Descriptor {
            media_type: mt.into(),
            digest: digest(arch.as_bytes()),
            size: 10,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
                os_version: None,
            }),
            annotations: None,
        };
        let (bytes, mt) =
            build_index(&[child(OCI_MANIFEST, "amd64"), child(OCI_MANIFEST, "arm64")]);
        assert_eq!(mt, OCI_INDEX);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["mediaType"], OCI_INDEX,
            "body mediaType must equal Content-Type"
        );
        assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
        let (_, mt) = build_index(&[child(DOCKER_MANIFEST, "amd64")]);
        assert_eq!(mt, DOCKER_LIST);
        assert_eq!(index_entries(&bytes).unwrap().len(), 2);
    }

    #[test]
    fn attestations_are_recognized() {
        let d: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:x","size":1,
                "platform":{"architecture":"unknown","os":"unknown"},
                "annotations":{"vnd.docker.reference.type":"attestation-manifest"}}"#,
        )
        .unwrap();
        assert!(d.is_attestation());
        assert_eq!(
            config_platform(br#"{"architecture":"arm64","os":"linux","variant":"v8"}"#)
                .unwrap()
                .to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
