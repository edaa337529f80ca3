//! Signing keys (ECDSA P-256, PKCS#8 PEM) and public keys (PEM SubjectPublicKeyInfo):
//! what settings check when they are read, `runnerx certs signing-key` makes, and
//! signing and verification use. A leaf: it imports nothing of runnerx but this
//! module's own error, so settings can check a key without depending on signing.
//!
//! Invariant: a key's bytes never appear in a message or `Debug` output.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

/// What is wrong with a key, a signature or a signed artifact: one line, no secret.
/// Becomes `Error::Signing` where signing fails, or the setting's error where a
/// settings file names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignError(pub(crate) String);

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SignError {
    fn from(m: &str) -> SignError {
        SignError(m.to_string())
    }
}

impl From<String> for SignError {
    fn from(m: String) -> SignError {
        SignError(m)
    }
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

pub(crate) fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
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

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
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
    pub(crate) fn from_pem(text: &str) -> Result<SigningKey, SignError> {
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
    pub(crate) fn generate() -> Result<(SigningKey, String), SignError> {
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
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignError::from("ECDSA signing failed"))
    }
}

/// A public key for verification (PEM SubjectPublicKeyInfo, P-256).
pub(crate) struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads `-----BEGIN PUBLIC KEY-----` (P-256).
    pub(crate) fn from_pem(text: &str) -> Result<PublicKey, SignError> {
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
