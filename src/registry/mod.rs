//! The one module that talks to container registries (reqwest + rustls).
//!
//! Two layers:
//! * a raw TCP/TLS probe that classifies what goes wrong the way users meet it
//!   (unknown issuer, name not in SAN, expired, CA used as server certificate, TLS
//!   against a plain-HTTP port and the reverse), with the peer certificate's facts;
//! * an HTTP client per [`Registry`] (its CA merged into the platform roots, its client
//!   identity, never a silent downgrade to HTTP) for the `/v2/` challenge, Basic and
//!   Bearer logins, push permission and Harbor's systeminfo.
//!
//! Credentials only travel in `Authorization` headers and are never logged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::settings::{Credentials, Registry};

pub(crate) mod oci;
pub(crate) mod session;

/// Where Debian-family systems keep the system CA bundle.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `host[:port]` split, with the scheme's default port.
pub(crate) fn host_port(reg: &Registry) -> (String, u16) {
    let default = if reg.http { 80 } else { 443 };
    match reg.host.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default)),
        None => (reg.host.clone(), default),
    }
}

/// The settings entry for `host`, or an anonymous one trusting only system roots.
pub(crate) fn registry_for(settings: &crate::settings::Settings, host: &str) -> Registry {
    settings
        .registries
        .iter()
        .find(|r| r.host == host)
        .cloned()
        .unwrap_or_else(|| Registry {
            host: host.to_string(),
            ca_pem: None,
            ca_file: None,
            client: None,
            credentials: None,
            insecure: false,
            http: false,
            mirror_for: vec![],
            check_repository: None,
        })
}

/// Resolves `host` as a builder would: `builder.extra_hosts` first, then DNS.
pub(crate) async fn resolve(
    extra_hosts: &[String],
    host: &str,
    port: u16,
) -> Result<(SocketAddr, &'static str), String> {
    for entry in extra_hosts {
        if let Some((h, ip)) = entry.split_once(':')
            && h == host
            && let Ok(ip) = ip.parse::<std::net::IpAddr>()
        {
            return Ok((SocketAddr::new(ip, port), "builder.extra_hosts"));
        }
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok((SocketAddr::new(ip, port), "literal address"));
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs
            .next()
            .map(|a| (a, "DNS"))
            .ok_or_else(|| "no addresses".into()),
        Err(e) => Err(e.to_string()),
    }
}

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

/// Makes sure the process-wide rustls provider is set (aws-lc-rs, reqwest's too).
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm=…`
    Basic,
    /// `Bearer realm=…,service=…[,scope=…]`
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (case-insensitive scheme, quoted values).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((k, v));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// An HTTP client for one registry.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    creds: Option<Credentials>,
}

/// An HTTP answer reduced to what the checks and the OCI client need.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Status code.
    pub status: u16,
    /// `WWW-Authenticate`, if any.
    pub challenge: Option<String>,
    /// `Location`, if any.
    pub location: Option<String>,
    /// `Content-Type` without parameters, if any.
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, if any.
    pub digest: Option<String>,
    /// Body bytes, exactly as received (manifests are hashed as sent).
    pub bytes: Vec<u8>,
}

/// What to send besides method, URL and auth.
#[derive(Debug, Default)]
pub(crate) struct Extra<'a> {
    /// `Accept` header.
    pub accept: Option<&'a str>,
    /// Body and its `Content-Type`.
    pub body: Option<(Vec<u8>, &'a str)>,
}

impl Client {
    /// A client trusting the platform roots plus the registry's CA; `resolve` pins the
    /// host to an address (e.g. from `builder.extra_hosts`).
    pub(crate) fn new(reg: &Registry, resolve: Option<SocketAddr>) -> Result<Client, String> {
        install_crypto();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("runnerx/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &reg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("ca_file is not PEM: {e}"))?;
            b = b.tls_certs_merge(certs);
        }
        if let Some(id) = &reg.client {
            let pem = format!("{}\n{}", id.cert_pem, id.key_pem.expose());
            b = b.identity(
                reqwest::Identity::from_pem(pem.as_bytes())
                    .map_err(|e| format!("client certificate/key: {e}"))?,
            );
        }
        if reg.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        // Never fall back to plain HTTP: follow redirects, but not from https to http.
        b = b.redirect(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt
                .previous()
                .last()
                .is_some_and(|u| u.scheme() == "https")
                && attempt.url().scheme() == "http";
            if downgrade || attempt.previous().len() > 5 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }));
        let (host, _) = host_port(reg);
        if let Some(addr) = resolve {
            b = b.resolve(&host, addr);
        }
        Ok(Client {
            http: b
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            base: format!("{}://{}", reg.scheme(), reg.host),
            creds: reg.credentials.clone(),
        })
    }

    /// Sends a request to `path` (absolute URL or path under the registry).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
    ) -> Result<Answer, String> {
        self.send_with(method, path, auth, Extra::default()).await
    }

    /// Like [`Client::send`], with an `Accept` header and/or a body.
    pub(crate) async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        extra: Extra<'_>,
    ) -> Result<Answer, String> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, &url);
        if let Some(a) = extra.accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some((body, ct)) = extra.body {
            req = req.header(reqwest::header::CONTENT_TYPE, ct).body(body);
        }
        req = match auth {
            Auth::None => req,
            Auth::Basic => match &self.creds {
                Some(c) => req.basic_auth(&c.username, Some(c.password.expose())),
                None => req,
            },
            Auth::Bearer(t) => req.bearer_auth(t),
        };
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let challenge = header("www-authenticate");
        let location = header("location");
        let content_type =
            header("content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_string());
        let digest = header("docker-content-digest");
        let bytes = resp.bytes().await.map_err(|e| describe(&e))?.to_vec();
        Ok(Answer {
            status,
            challenge,
            location,
            content_type,
            digest,

            bytes,
        })
    }

    /// Fetches a Bearer token for `scopes` from `realm` (Basic credentials if any).
    pub(crate) async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, TokenError> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| TokenError::Other(format!("bad realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            q.append_pair("client_id", "runnerx");
        }
        let a = self
            .send(reqwest::Method::GET, url.as_str(), Auth::Basic)
            .await
            .map_err(TokenError::Other)?;
        match a.status {
            200 => {}
            401 | 403 => return Err(TokenError::Denied(a.status)),
            s => return Err(TokenError::Other(format!("token endpoint answered {s}"))),
        }
        let v: serde_json::Value = serde_json::from_slice(&a.bytes)
            .map_err(|_| TokenError::Other("token endpoint did not answer JSON".into()))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(String::from)
            .ok_or_else(|| TokenError::Other("token endpoint answered without a token".into()))
    }
}

/// The registry's URL base, `https://host[:port]`.
impl Client {
    /// `https://host[:port]` (or `http://`).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

/// Why a token could not be had.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// 401/403 from the token endpoint.
    Denied(u16),
    /// Anything else.
    Other(String),
}

/// How to authenticate one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// No header.
    None,
    /// Basic with the registry's credentials.
    Basic,
    /// A bearer token.
    Bearer(&'a str),
}

/// One line for a reqwest error, with its cause chain (no URL credentials: we use none).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The `access` claim of a JWT (Harbor and distribution tokens): actions granted on
/// `repository`. Empty when the token is not a readable JWT.
pub(crate) fn jwt_actions(token: &str, repository: &str) -> Vec<String> {
    let Some(payload) = token.split('.').nth(1) else {
        return vec![];
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    v["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "repository" && a["name"] == repository)
        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://h/service/token",service="harbor-registry",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://h/service/token".into(),
                service: Some("harbor-registry".into())
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://t/token, service=reg"),
            Some(Challenge::Bearer {
                realm: "https://t/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("Bearer service=\"x\""),
            None,
            "realm is required"
        );
    }

    #[test]
    fn jwt_access_claims_are_read() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            r#"{"access":[{"type":"repository","name":"ci/app","actions":["pull","push"]}]}"#,
        );
        let t = format!("h.{payload}.s");
        assert_eq!(jwt_actions(&t, "ci/app"), ["pull", "push"]);
        assert!(jwt_actions(&t, "other").is_empty());
        assert!(jwt_actions("not-a-jwt", "ci/app").is_empty());
    }
}
