//! An authenticated conversation with one registry: learns the `/v2/` challenge once,
//! sends Basic credentials or fetches (and caches) Bearer tokens per scope set, and
//! offers the few distribution-API calls runnerx needs: manifests and blobs.

use std::collections::HashMap;
use std::net::SocketAddr;

use reqwest::Method;

use super::RegistryError::{self, BadAnswer, Refused};
use super::auth::{Challenge, parse_challenge};
use super::client::{Answer, Auth, Client, Extra, TokenError};
use super::oci::{self, ACCEPT_ALL};
use crate::settings::Registry;

/// A session with one registry.
pub(crate) struct Session {
    client: Client,
    host: String,
    challenge: Option<Challenge>,
    tokens: HashMap<Vec<String>, String>,
}

/// One line for a failed registry answer: the status, the distribution error codes,
/// and the fix that status usually needs (`repo` is the repository asked about).
pub(crate) fn registry_error(a: &Answer, host: &str, repo: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&a.bytes).ok();
    let codes: Vec<(String, String)> = parsed
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    (
                        e["code"].as_str().unwrap_or("?").to_string(),
                        e["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let has = |c: &str| codes.iter().any(|(code, _)| code == c);
    let hint = match a.status {
        401 => format!(
            "; check username and password for {host} in [[registries]] (`runnerx doctor --registry {host}` explains)"
        ),
        403 => format!(
            "; the account may not access {repo}: give it pull/push there (Harbor: project member or robot permission)"
        ),
        404 if has("NAME_UNKNOWN") => {
            format!("; repository {repo} does not exist on {host}: check the name")
        }
        404 => format!("; not found in {repo}: check the tag, and that it was pushed"),
        412 => "; the tag is immutable (Harbor tag immutability): push a new tag".to_string(),
        429 => "; the registry is rate-limiting: retry later".to_string(),
        400 if has("MANIFEST_BLOB_UNKNOWN") => {
            format!("; a referenced child or blob is missing from {repo}")
        }
        s if s >= 500 => format!("; {host} failed internally: see the registry's logs"),
        _ => String::new(),
    };
    let detail: Vec<String> = codes.iter().map(|(c, m)| format!("{c}: {m}")).collect();
    if detail.is_empty() {
        format!("HTTP {}{hint}", a.status)
    } else {
        format!("HTTP {} {}{hint}", a.status, detail.join("; "))
    }
}

impl Session {
    /// Pings `/v2/` to learn how to authenticate.
    pub(crate) async fn open(
        reg: &Registry,
        resolve: Option<SocketAddr>,
    ) -> Result<Session, RegistryError> {
        let client = Client::new(reg, resolve)?;
        let ping = client.send(Method::GET, "/v2/", Auth::None).await?;
        let challenge = match ping.status {
            200 => None,
            401 => Some(
                ping.challenge
                    .as_deref()
                    .and_then(parse_challenge)
                    .ok_or_else(|| {
                        BadAnswer(format!(
                            "{} answered 401 without a usable WWW-Authenticate challenge; check the registry's auth configuration (`runnerx doctor --registry {}`)",
                            reg.host, reg.host
                        ))
                    })?,
            ),
            _ => {
                return Err(BadAnswer(format!(
                    "{}/v2/ answered {}: not a registry endpoint",
                    client.base(),
                    ping.status
                )));
            }
        };
        if challenge.is_some() && reg.credentials.is_none() {
            tracing::debug!(
                "{} wants authentication and no credentials are configured",
                reg.host
            );
        }
        Ok(Session {
            client,
            host: reg.host.clone(),
            challenge,
            tokens: HashMap::new(),
        })
    }

    async fn auth(&mut self, scopes: &[String]) -> Result<Option<String>, RegistryError> {
        let Some(Challenge::Bearer { realm, service }) = &self.challenge else {
            return Ok(None);
        };
        let key = scopes.to_vec();
        if let Some(t) = self.tokens.get(&key) {
            return Ok(Some(t.clone()));
        }
        let token = self.client.token(realm, service.as_deref(), scopes).await.map_err(|e| match e {
            TokenError::Denied(s) => Refused(format!(
                "failed to fetch oauth token from {realm}: {s}; check [[registries]] username/password for {}",
                self.host
            )),
            TokenError::Other(m) => Refused(format!("failed to fetch oauth token from {realm}: {m}")),
        })?;
        self.tokens.insert(key, token.clone());
        Ok(Some(token))
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        scopes: &[String],
        extra: Extra<'_>,
    ) -> Result<Answer, RegistryError> {
        let token = self.auth(scopes).await?;
        let auth = match (&self.challenge, &token) {
            (Some(Challenge::Basic), _) => Auth::Basic,
            (_, Some(t)) => Auth::Bearer(t),
            _ => Auth::None,
        };
        self.client.send_with(method, path, auth, extra).await
    }

    fn pull(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull")]
    }

    fn push(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull,push")]
    }

    /// GETs a manifest: (exact bytes, media type, digest).
    pub(crate) async fn get_manifest(
        &mut self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, String), RegistryError> {
        let a = self
            .call(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                &Self::pull(repo),
                Extra {
                    accept: Some(ACCEPT_ALL),
                    body: None,
                },
            )
            .await?;
        if a.status != 200 {
            return Err(Refused(format!(
                "{}/{repo}:{reference}: {}",
                self.host,
                registry_error(&a, &self.host, repo)
            )));
        }
        let computed = oci::digest(&a.bytes);
        if reference.starts_with("sha256:") && computed != reference {
            return Err(BadAnswer(format!(
                "{}/{repo}@{reference}: the registry returned content with digest {computed}",
                self.host
            )));
        }
        let media = a
            .content_type
            .clone()
            .filter(|c| !c.is_empty() && c != "application/json")
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&a.bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(String::from))
            })
            .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
        Ok((a.bytes, media, computed))
    }

    /// GETs a blob (small ones: configs).
    pub(crate) async fn get_blob(
        &mut self,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let a = self
            .call(
                Method::GET,
                &format!("/v2/{repo}/blobs/{digest}"),
                &Self::pull(repo),
                Extra::default(),
            )
            .await?;
        if a.status != 200 {
            return Err(Refused(format!(
                "{}/{repo} blob {digest}: {}",
                self.host,
                registry_error(&a, &self.host, repo)
            )));
        }
        Ok(a.bytes)
    }

    /// Whether `repo` has blob `digest`.
    pub(crate) async fn has_blob(
        &mut self,
        repo: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let a = self
            .call(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                &Self::pull(repo),
                Extra::default(),
            )
            .await?;
        Ok(a.status == 200)
    }

    /// Makes blob `digest` of `source` available in `target`: a cross-repository mount,
    /// or, when the registry opens an upload instead, a copy.
    pub(crate) async fn mount_blob(
        &mut self,
        target: &str,
        source: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        if self.has_blob(target, digest).await? {
            return Ok(());
        }
        // The token must cover both repositories (pull on the source).
        let scopes = vec![
            format!("repository:{target}:pull,push"),
            format!("repository:{source}:pull"),
        ];
        let a = self
            .call(
                Method::POST,
                &format!("/v2/{target}/blobs/uploads/?mount={digest}&from={source}"),
                &scopes,
                Extra::default(),
            )
            .await?;
        match a.status {
            201 => Ok(()),
            202 => {
                let location = a
                    .location
                    .ok_or_else(|| BadAnswer("upload opened without a Location".into()))?;
                let bytes = self.get_blob(source, digest).await?;
                self.finish_upload(target, &location, digest, bytes).await
            }
            _ => Err(Refused(format!(
                "mount {digest} from {source} into {target}: {}",
                registry_error(&a, &self.host, target)
            ))),
        }
    }

    async fn finish_upload(
        &mut self,
        repo: &str,
        location: &str,
        digest: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let url = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{}{location}", self.client.base())
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let a = self
            .call(
                Method::PUT,
                &format!("{url}{sep}digest={digest}"),
                &Self::push(repo),
                Extra {
                    accept: None,
                    body: Some((bytes, "application/octet-stream")),
                },
            )
            .await?;
        if a.status != 201 {
            return Err(Refused(format!(
                "upload {digest} to {repo}: {}",
                registry_error(&a, &self.host, repo)
            )));
        }
        Ok(())
    }

    /// PUTs manifest bytes under `reference`; returns the registry's digest.
    /// Uploads `bytes` as a blob of `repo` (monolithic: POST then PUT), unless the
    /// registry has it already; returns its digest.
    pub(crate) async fn upload_blob(
        &mut self,
        repo: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = oci::digest(bytes);
        if self.has_blob(repo, &digest).await? {
            return Ok(digest);
        }
        let scopes = Self::push(repo);
        let a = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &scopes,
                Extra::default(),
            )
            .await?;
        let (202, Some(location)) = (a.status, a.location.clone()) else {
            return Err(Refused(format!(
                "open an upload to {}/{repo}: {}",
                self.host,
                registry_error(&a, &self.host, repo)
            )));
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let a = self
            .call(
                Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                &scopes,
                Extra {
                    accept: None,
                    body: Some((bytes.to_vec(), "application/octet-stream")),
                },
            )
            .await?;
        if a.status != 201 {
            return Err(Refused(format!(
                "upload a blob to {}/{repo}: {}",
                self.host,
                registry_error(&a, &self.host, repo)
            )));
        }
        Ok(digest)
    }

    pub(crate) async fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        bytes: Vec<u8>,
        media: &str,
    ) -> Result<String, RegistryError> {
        let local = oci::digest(&bytes);
        let a = self
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &Self::push(repo),
                Extra {
                    accept: None,
                    body: Some((bytes, media)),
                },
            )
            .await?;
        if a.status != 201 {
            return Err(Refused(format!(
                "push manifest {}/{repo}:{reference}: {}",
                self.host,
                registry_error(&a, &self.host, repo)
            )));
        }
        if let Some(d) = &a.digest
            && *d != local
        {
            return Err(BadAnswer(format!(
                "registry stored {d} but runnerx sent {local}"
            )));
        }
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            challenge: None,
            location: None,
            content_type: None,
            digest: None,
            bytes: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn registry_errors_name_the_fix() {
        let e = registry_error(
            &answer(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ),
            "h.test",
            "ci/app",
        );
        assert_eq!(
            e,
            "HTTP 401 UNAUTHORIZED: authentication required; check username and password for h.test in [[registries]] (`runnerx doctor --registry h.test` explains)"
        );
        let e = registry_error(
            &answer(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            "h.test",
            "ci/app",
        );
        assert!(
            e.ends_with("; not found in ci/app: check the tag, and that it was pushed"),
            "{e}"
        );
        let e = registry_error(
            &answer(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}"#),
            "h.test",
            "ci/app",
        );
        assert!(
            e.contains("repository ci/app does not exist on h.test"),
            "{e}"
        );
        assert!(registry_error(&answer(403, ""), "h", "ci/app").contains("give it pull/push"));
        assert!(registry_error(&answer(412, "{}"), "h", "r").contains("immutable"));
        assert_eq!(
            registry_error(&answer(418, "not json"), "h", "r"),
            "HTTP 418"
        );
        assert!(!registry_error(&answer(401, "x"), "h", "r").contains('\n'));
    }
}
