//! TLS to a registry, probed the way users meet its failures: unknown issuer, a
//! regenerated CA with the old name, name not in the SAN, expired, a CA served as the
//! server certificate, TLS against a plain-HTTP port and the reverse. Raw TCP and
//! rustls, so `runnerx doctor` can say which one it is and show the peer's facts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::settings::Registry;

/// Where Debian-family systems keep the system CA bundle.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What the TLS handshake said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsOutcome {
    /// Verified; protocol version.
    Ok(String),
    /// The chain does not end at a trusted CA.
    UnknownIssuer,
    /// A trusted CA has the issuer's name but did not sign it (a regenerated CA).
    SameNameOtherCa,
    /// The certificate does not name the host; the names it has.
    NameMismatch(Vec<String>),
    /// Outside its validity window; its notAfter.
    Expired(String),
    /// A CA certificate is served as the server certificate.
    CaAsLeaf,
    /// The port answered in plain HTTP.
    PlainHttp,
    /// Anything else (message).
    Other(String),
}

/// Facts about a certificate, for explanations.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertFacts {
    /// DNS and IP SANs.
    pub names: Vec<String>,
    /// notAfter, RFC 2822-ish.
    pub not_after: String,
}

fn root_store(ca_pem: Option<&str>) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(bundle) = std::fs::read(SYSTEM_BUNDLE) {
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&bundle).flatten());
    }
    if let Some(pem) = ca_pem {
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pem.as_bytes()).flatten());
    }
    roots
}

fn client_config(reg: &Registry, verify: bool) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder();
    let builder = if verify {
        builder.with_root_certificates(root_store(reg.ca_pem.as_deref()))
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(
                rustls::crypto::CryptoProvider::get_default().cloned(),
            )))
    };
    match &reg.client {
        Some(id) => {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .flatten()
                .collect();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.expose().as_bytes())
                .map_err(|e| format!("client_key_file is not a usable PEM key: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate/key rejected: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any certificate: only used to read the peer certificate for explanations.
#[derive(Debug)]
struct AcceptAny(Option<Arc<rustls::crypto::CryptoProvider>>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .as_ref()
            .map(|p| p.signature_verification_algorithms.supported_schemes())
            .unwrap_or_default()
    }
}

fn handshake(
    addr: SocketAddr,
    host: &str,
    cfg: rustls::ClientConfig,
    timeout: Duration,
) -> Result<rustls::ClientConnection, std::io::Error> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(conn)
}

/// Makes sure the process-wide rustls provider is set (ring; reqwest is built without
/// a provider of its own, so every TLS client in the process uses this one).
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Handshakes with `addr` as `host` using the registry's trust; classifies failures.
/// Blocking: call from `spawn_blocking`.
pub(crate) fn probe_tls(
    addr: SocketAddr,
    host: &str,
    reg: &Registry,
    timeout: Duration,
) -> TlsOutcome {
    install_crypto();
    let cfg = match client_config(reg, true) {
        Ok(c) => c,
        Err(m) => return TlsOutcome::Other(m),
    };
    let err = match handshake(addr, host, cfg, timeout) {
        Ok(conn) => {
            return TlsOutcome::Ok(format!(
                "{:?}",
                conn.protocol_version()
                    .unwrap_or(rustls::ProtocolVersion::Unknown(0))
            ));
        }
        Err(e) => e,
    };
    let facts = || peer_facts(addr, host, reg, timeout).unwrap_or_default();
    match err
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => TlsOutcome::UnknownIssuer,
            // A CA with the issuer's name but another key: a regenerated CA.
            CertificateError::BadSignature => TlsOutcome::SameNameOtherCa,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsOutcome::NameMismatch(facts().names)
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsOutcome::Expired(facts().not_after),
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => TlsOutcome::CaAsLeaf,
            other => TlsOutcome::Other(format!("invalid certificate: {other:?}")),
        },
        Some(rustls::Error::InvalidMessage(_)) if speaks_plain_http(addr, host, timeout) => {
            TlsOutcome::PlainHttp
        }
        Some(e) => TlsOutcome::Other(e.to_string()),
        None if speaks_plain_http(addr, host, timeout) => TlsOutcome::PlainHttp,
        None => TlsOutcome::Other(err.to_string()),
    }
}

/// Reads the peer certificate without verifying it.
pub(crate) fn peer_facts(
    addr: SocketAddr,
    host: &str,
    reg: &Registry,
    timeout: Duration,
) -> Option<CertFacts> {
    let mut plain = reg.clone();
    plain.client = None;
    let conn = handshake(addr, host, client_config(&plain, false).ok()?, timeout).ok()?;
    let der = conn.peer_certificates()?.first()?.clone();
    let (_, x) = x509_parser::parse_x509_certificate(&der).ok()?;
    let names = x
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                        Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertFacts {
        names,
        not_after: x.validity().not_after.to_string(),
    })
}

/// Sends a plain HTTP request; true when an HTTP response comes back.
pub(crate) fn speaks_plain_http(addr: SocketAddr, host: &str, timeout: Duration) -> bool {
    plain_http_head(addr, host, timeout)
        .is_some_and(|r| r.starts_with("HTTP/") && !r.contains("HTTPS server"))
}

/// The first bytes of the answer to a plain-HTTP `GET /v2/` (`None` if none).
pub(crate) fn plain_http_head(addr: SocketAddr, host: &str, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
