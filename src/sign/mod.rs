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
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

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

/// A signing key (PKCS#8 PEM, ECDSA P-256).
pub(crate) struct SigningKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo before its 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl SigningKey {
    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) holding an ECDSA P-256 key.
    pub(crate) fn from_pem(text: &str) -> Result<SigningKey, String> {
        let der = pem_body(text, "PRIVATE KEY")
            .ok_or("holds no PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)")?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &SystemRandom::new(),
        )
        .map_err(|_| "is not an ECDSA P-256 key (make one with `runnerx certs signing-key`)")?;
        Ok(SigningKey { pair })
    }

    /// A new key and its PKCS#8 PEM.
    pub(crate) fn generate() -> Result<(SigningKey, String), String> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| "the system's random source failed")?;
        let text = pem("PRIVATE KEY", doc.as_ref());
        Ok((SigningKey::from_pem(&text)?, text))
    }

    /// The public key as a PEM SubjectPublicKeyInfo (what cosign, openssl and Harbor read).
    pub(crate) fn public_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        pem("PUBLIC KEY", &der)
    }

    /// ECDSA P-256 / SHA-256 signature of `message`, ASN.1 DER.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| "ECDSA signing failed".to_string())
    }
}

/// A public key for verification (PEM SubjectPublicKeyInfo, P-256).
pub(crate) struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads `-----BEGIN PUBLIC KEY-----` (P-256).
    pub(crate) fn from_pem(text: &str) -> Result<PublicKey, String> {
        let der = pem_body(text, "PUBLIC KEY").ok_or("holds no PEM public key")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 => Ok(PublicKey {
                point: point.to_vec(),
            }),
            _ => Err("is not an ECDSA P-256 public key".into()),
        }
    }

    /// Whether `sig` (ASN.1 DER) signs `message`.
    pub(crate) fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, sig)
            .is_ok()
    }
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
pub(crate) fn envelope(statement: &[u8], key: &SigningKey) -> Result<Vec<u8>, String> {
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
) -> Result<Artifact, String> {
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
pub(crate) fn attestation_artifact(statement: &[u8], key: &SigningKey) -> Result<Artifact, String> {
    let env = envelope(statement, key)?;
    Ok(artifact(env, DSSE, json!({ "predicateType": SLSA_V1 })))
}

/// What a `.sig` layer proves, checked against `key`: `Ok(digest it signs)`.
pub(crate) fn check_signature(
    payload: &[u8],
    sig_b64: &str,
    key: &PublicKey,
) -> Result<String, String> {
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
pub(crate) fn check_envelope(env: &[u8], key: &PublicKey) -> Result<Value, String> {
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
