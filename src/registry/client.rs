//! The HTTP client for one registry: the platform roots plus the registry's CA, its
//! client identity, Basic or Bearer auth per request, and redirects that never go
//! from HTTPS to plain HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use super::tls::install_crypto;
use super::{RegistryError, host_port};
use crate::settings::{Credentials, Registry};

/// An HTTP client for one registry.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
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
    pub(crate) fn new(
        reg: &Registry,
        resolve: Option<SocketAddr>,
    ) -> Result<Client, RegistryError> {
        let setup = |detail: String| RegistryError::Setup {
            host: reg.host.clone(),
            detail,
        };
        install_crypto();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // HTTP/1.1 as Docker speaks to registries (http2 is enabled for BuildKit's gRPC).
            .http1_only()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("runnerx/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &reg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| setup(format!("ca_file is not PEM: {e}")))?;
            b = b.tls_certs_merge(certs);
        }
        if let Some(id) = &reg.client {
            let pem = format!("{}\n{}", id.cert_pem, id.key_pem.expose());
            b = b.identity(
                reqwest::Identity::from_pem(pem.as_bytes())
                    .map_err(|e| setup(format!("client certificate/key: {e}")))?,
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
                .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?,
            base: format!("{}://{}", reg.scheme(), reg.host),
            host: reg.host.clone(),
            creds: reg.credentials.clone(),
        })
    }

    /// Sends a request to `path` (absolute URL or path under the registry).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
    ) -> Result<Answer, RegistryError> {
        self.send_with(method, path, auth, Extra::default()).await
    }

    /// Like [`Client::send`], with an `Accept` header and/or a body.
    pub(crate) async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        extra: Extra<'_>,
    ) -> Result<Answer, RegistryError> {
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
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            host: self.host.clone(),
            url: url.clone(),
            detail: describe(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
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
        let bytes = resp.bytes().await.map_err(unreachable)?.to_vec();
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
            .map_err(|e| TokenError::Other(e.to_string()))?;
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
