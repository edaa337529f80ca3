//! `runnerx certs`: a private CA and the certificates signed by it (rcgen).
//!
//! Files are named the way Docker's certs.d expects (`ca.crt`, `client.cert`,
//! `client.key`); a registry's server pair is `server.crt`/`server.key`. Keys are
//! written 0600, nothing is overwritten without `force`, and every written file is
//! reported with where it goes.
//!
//! Server certificates carry their names as SANs (Go ≥ 1.15 ignores the CN), are not
//! CAs (rustls rejects a CA used as a server certificate) and have serverAuth EKU.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub(crate) struct Pem {
    /// Certificate PEM.
    pub cert: String,
    /// PKCS#8 private key PEM.
    pub key: String,
}

fn rc(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Usage(format!("failed to {what}: {e}"))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // Back-date a little so a slightly slow clock elsewhere does not reject it.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "runnerx");
    dn
}

/// A self-signed CA.
pub(crate) fn make_ca(cn: &str, days: u32) -> Result<Pem> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(rc("make CA parameters"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name = dn(cn);
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(rc("generate a key"))?;
    let cert = params.self_signed(&key).map_err(rc("self-sign the CA"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn leaf(
    ca: &Pem,
    mut params: CertificateParams,
    days: u32,
    eku: ExtendedKeyUsagePurpose,
) -> Result<Pem> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(rc("read the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(rc("read the CA certificate"))?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(rc("generate a key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rc("sign the certificate"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A server certificate for `names` (DNS names or IP addresses, all as SANs).
pub(crate) fn make_server(ca: &Pem, names: &[String], days: u32) -> Result<Pem> {
    let first = names
        .first()
        .ok_or_else(|| Error::Usage("a server certificate needs at least one --name".into()))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc("make parameters"))?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) if !is_dns_name(n) => Err(Error::Usage(format!(
                "--name {n:?} is neither a DNS name nor an IP address"
            ))),
            Err(_) => n.clone().try_into().map(SanType::DnsName).map_err(|_| {
                Error::Usage(format!(
                    "--name {n:?} is neither a DNS name nor an IP address"
                ))
            }),
        })
        .collect::<Result<_>>()?;
    params.distinguished_name = dn(first);
    leaf(ca, params, days, ExtendedKeyUsagePurpose::ServerAuth)
}

fn is_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-'))
        })
}

/// A client certificate (mTLS to a registry) with common name `cn`.
pub(crate) fn make_client(ca: &Pem, cn: &str, days: u32) -> Result<Pem> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc("make parameters"))?;
    params.distinguished_name = dn(cn);
    leaf(ca, params, days, ExtendedKeyUsagePurpose::ClientAuth)
}

/// Reads a CA pair from `dir/ca.crt` and `dir/ca.key`.
pub(crate) fn read_ca(dir: &Path) -> Result<Pem> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| {
            Error::Usage(format!(
                "cannot read {}: {e}; make a CA first with `runnerx certs ca --out {}`",
                p.display(),
                dir.display()
            ))
        })
    };
    Ok(Pem {
        cert: read("ca.crt")?,
        key: read("ca.key")?,
    })
}

/// One file to write: name, content, mode, and where it goes.
pub(crate) struct OutFile {
    /// File name inside the output directory.
    pub name: String,
    /// Content.
    pub content: String,
    /// Unix mode.
    pub mode: u32,
    /// Where it goes, for the operator.
    pub goes: String,
}

/// Writes files into `dir` (created if needed); refuses to overwrite unless `force`.
/// Checks every target first so nothing is half-written.
pub(crate) fn write_all(dir: &Path, files: &[OutFile], force: bool) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if !force && let Some(f) = files.iter().find(|f| dir.join(&f.name).exists()) {
        return Err(Error::Usage(format!(
            "{} exists; pass --force to overwrite it, or choose another --out",
            dir.join(&f.name).display()
        )));
    }
    let mut written = vec![];
    for f in files {
        let path = dir.join(&f.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
        }
        // Remove first so the new mode applies even when overwriting a 0644 file.
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        file.write_all(f.content.as_bytes())
            .map_err(|e| Error::io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn server_cert_has_sans_and_is_not_a_ca() {
        let ca = make_ca("test CA", 10).unwrap();
        let server = make_server(&ca, &["registry.test".into(), "127.0.0.1".into()], 10).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
        assert!(
            names.iter().any(|n| n.contains("registry.test")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
        assert!(!x.is_ca());
        let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert.as_bytes()).unwrap();
        let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_x.is_ca());
        assert_eq!(x.issuer(), ca_x.subject());
    }

    #[test]
    fn bad_names_are_rejected() {
        let ca = make_ca("t", 1).unwrap();
        assert!(make_server(&ca, &[], 1).is_err());
        assert!(make_server(&ca, &["bad name with spaces".into()], 1).is_err());
    }

    #[test]
    fn files_are_not_overwritten_without_force_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = || {
            vec![
                OutFile {
                    name: "ca.crt".into(),
                    content: "c".into(),
                    mode: 0o644,
                    goes: String::new(),
                },
                OutFile {
                    name: "ca.key".into(),
                    content: "k".into(),
                    mode: 0o600,
                    goes: String::new(),
                },
            ]
        };
        write_all(dir.path(), &files(), false).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = write_all(dir.path(), &files(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--force"), "{e}");
        write_all(dir.path(), &files(), true).unwrap();
    }
}
