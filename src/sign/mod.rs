//! Signatures and build provenance made by the runner (pure): cosign's formats, built
//! here because they are small and the `sigstore` crate is still experimental.
//!
//! - A signature is cosign's "simple signing" payload (the image's repository and
//!   manifest digest), signed with ECDSA P-256 / SHA-256 (ASN.1 DER, base64 in the
//!   layer annotation `dev.cosignproject.cosign/signature`), stored as an OCI image
//!   manifest under the tag `sha256-<hex>.sig` in the image's repository: the tag form
//!   Harbor shows as "signed" (cosign v3's referrers bundles it does not).
//! - A provenance is an in-toto Statement v1 with an SLSA provenance v1 predicate,
//!   made only from trusted inputs ([`Provenance`]: the job payload, runnerx, the
//!   builder image), in a DSSE envelope signed with the same key, stored under
//!   `sha256-<hex>.att` as cosign stores attestations.
//!
//! Invariant: the key never leaves runnerx's process on the host; nothing here takes
//! a job variable.

use base64::Engine as _;
use serde_json::{Value, json};

pub(crate) use crate::keys::{PublicKey, SignError, SigningKey};
use crate::registry::oci;

pub(crate) mod provenance;
pub(crate) mod push;
pub(crate) mod verify;

pub(crate) use provenance::Provenance;

/// The layer annotation holding the signature.
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a simple-signing payload layer.
pub(crate) const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of a DSSE envelope layer (attestations).
pub(crate) const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// The in-toto payload type inside DSSE.
pub(crate) const IN_TOTO: &str = "application/vnd.in-toto+json";
/// SLSA provenance v1.
pub(crate) const SLSA_V1: &str = "https://slsa.dev/provenance/v1";

/// `sha256:abc…` → `sha256-abc….sig` (`suffix` = `sig` or `att`).
pub(crate) fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// cosign's simple-signing payload for `repository` at `digest`.
pub(crate) fn simple_signing(repository: &str, digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    serde_json::to_vec(&v).expect("static JSON")
}

/// DSSE's pre-authentication encoding of `body` with `payload_type`.
pub(crate) fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A DSSE envelope of an in-toto statement, signed with `key`.
pub(crate) fn envelope(statement: &[u8], key: &SigningKey) -> Result<Vec<u8>, SignError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = key.sign(&pae(IN_TOTO, statement))?;
    let v = json!({
        "payloadType": IN_TOTO,
        "payload": b64.encode(statement),
        "signatures": [{"keyid": "", "sig": b64.encode(sig)}]
    });
    Ok(serde_json::to_vec(&v).expect("static JSON"))
}

/// The blobs and manifest of one cosign artifact (`.sig` or `.att`).
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    /// The config blob.
    pub config: Vec<u8>,
    /// The one layer (payload or envelope).
    pub layer: Vec<u8>,
    /// The OCI image manifest.
    pub manifest: Vec<u8>,
}

/// A cosign-style single-layer OCI image manifest around `layer`.
pub(crate) fn artifact(layer: Vec<u8>, media: &str, annotations: Value) -> Artifact {
    let layer_digest = oci::digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .expect("static JSON");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": oci::digest(&config)
        },
        "layers": [{
            "mediaType": media,
            "size": layer.len(),
            "digest": layer_digest,
            "annotations": annotations
        }]
    }))
    .expect("static JSON");
    Artifact {
        config,
        layer,
        manifest,
    }
}

/// The `.sig` artifact for `repository` at `digest`.
pub(crate) fn signature_artifact(
    repository: &str,
    digest: &str,
    key: &SigningKey,
) -> Result<Artifact, SignError> {
    let payload = simple_signing(repository, digest);
    let sig = key.sign(&payload)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    Ok(artifact(
        payload,
        SIMPLESIGNING,
        json!({ SIGNATURE_ANNOTATION: b64 }),
    ))
}

/// The `.att` artifact: `statement` in a signed DSSE envelope.
pub(crate) fn attestation_artifact(
    statement: &[u8],
    key: &SigningKey,
) -> Result<Artifact, SignError> {
    let env = envelope(statement, key)?;
    Ok(artifact(env, DSSE, json!({ "predicateType": SLSA_V1 })))
}

/// What a `.sig` layer proves, checked against `key`: `Ok(digest it signs)`.
pub(crate) fn check_signature(
    payload: &[u8],
    sig_b64: &str,
    key: &PublicKey,
) -> Result<String, SignError> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .map_err(|_| "the signature annotation is not base64")?;
    if !key.verifies(payload, &sig) {
        return Err("the signature does not verify with this key".into());
    }
    let v: Value = serde_json::from_slice(payload).map_err(|_| "the signed payload is not JSON")?;
    v["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| "the signed payload names no manifest digest".into())
}

/// The statement inside a DSSE envelope, checked against `key`.
pub(crate) fn check_envelope(env: &[u8], key: &PublicKey) -> Result<Value, SignError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let v: Value =
        serde_json::from_slice(env).map_err(|_| "the attestation is not a DSSE envelope")?;
    let payload = b64
        .decode(v["payload"].as_str().unwrap_or_default())
        .map_err(|_| "the envelope's payload is not base64")?;
    let ptype = v["payloadType"].as_str().unwrap_or_default();
    let ok = v["signatures"].as_array().into_iter().flatten().any(|s| {
        b64.decode(s["sig"].as_str().unwrap_or_default())
            .is_ok_and(|sig| key.verifies(&pae(ptype, &payload), &sig))
    });
    if !ok {
        return Err("the attestation's signature does not verify with this key".into());
    }
    serde_json::from_slice(&payload).map_err(|_| "the attested statement is not JSON".into())
}

#[cfg(test)]
mod tests;
