//! `[[registries]]` and `[proxy]`: which registries builders trust and log in to,
//! and the proxy their jobs use. Secrets (passwords, client keys) are read here from
//! runnerx's own environment or files and wrapped in [`Secret`], which never prints.

use std::path::{Path, PathBuf};

use super::raw::{RawProxy, RawRegistry};
use super::values::Invalid;
use crate::env::Env;
use crate::error::{Error, Result};

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub(crate) fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the few places that must send or write it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Login for a registry.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
}

/// A login for some GitLab projects.
#[derive(Debug, Clone)]
pub(crate) struct CredentialRule {
    /// Project path globs.
    pub projects: Vec<String>,
    /// Project ids.
    pub project_ids: Vec<u64>,
    /// The login.
    pub credentials: Credentials,
    /// Where these projects keep their build cache, pushed with this login.
    pub cache_repository: Option<String>,
    /// The key these projects' pushes are signed with.
    pub signing_key: Option<KeyFile>,
}

/// A signing key read from its file at validation (so a bad file fails before any
/// job); the PEM never prints.
#[derive(Debug, Clone)]
pub(crate) struct KeyFile {
    /// Where it came from.
    pub path: PathBuf,
    /// The PKCS#8 PEM.
    pub pem: Secret,
}

/// Reads and checks `signing_key_file`; `key` names the setting for messages.
fn read_key(key: &str, path: Option<PathBuf>) -> Result<Option<KeyFile>> {
    let Some(path) = path else { return Ok(None) };
    let pem = std::fs::read_to_string(&path).map_err(|e| {
        Error::Settings(format!(
            "{key} {}: {e}; fix the path or the file's permissions (runnerx reads it, no job does)",
            path.display()
        ))
    })?;
    crate::keys::SigningKey::from_pem(&pem)
        .map_err(|m| Error::Settings(format!("{key} {} {m}", path.display())))?;
    Ok(Some(KeyFile {
        path,
        pem: Secret::new(pem),
    }))
}

/// Which GitLab project a job belongs to, from what the job cannot change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Project {
    /// `job_info.project_id`.
    pub id: Option<String>,
    /// The path of `git_info.repo_url` (`group/sub/app`).
    pub path: Option<String>,
}

impl CredentialRule {
    /// Whether the rule is for `project`.
    pub(crate) fn matches(&self, project: &Project) -> bool {
        project.is_one_of(&self.projects, &self.project_ids)
    }
}

impl Project {
    /// Whether the project's path matches one of the `paths` globs or its id is one of
    /// `ids` (a job without a trusted id or path matches neither).
    pub(crate) fn is_one_of(&self, paths: &[String], ids: &[u64]) -> bool {
        let by_id = self
            .id
            .as_deref()
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| ids.contains(&id));
        let by_path = self
            .path
            .as_deref()
            .is_some_and(|p| paths.iter().any(|g| glob(g, p)));
        by_id || by_path
    }
}

/// `*` matches within one path segment, `**` any number of segments.
pub(crate) fn glob(pattern: &str, path: &str) -> bool {
    fn segs(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segs(&p[1..], s) || (!s.is_empty() && segs(p, &s[1..])),
            (Some(pat), Some(seg)) => seg_match(pat, seg) && segs(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn seg_match(pat: &str, seg: &str) -> bool {
        match pat.split_once('*') {
            None => pat == seg,
            Some((pre, rest)) => {
                seg.starts_with(pre)
                    && (0..=seg.len() - pre.len()).any(|k| {
                        seg.is_char_boundary(pre.len() + k)
                            && seg_match(rest, &seg[pre.len() + k..])
                    })
            }
        }
    }
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    segs(&p, &s)
}

/// PEM material read at validation time, so a bad file fails before any job runs.
#[derive(Debug, Clone)]
pub(crate) struct ClientIdentity {
    /// Client certificate PEM.
    pub cert_pem: String,
    /// Client key PEM.
    pub key_pem: Secret,
}

/// A validated registry entry.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    /// `host[:port]`.
    pub host: String,
    /// CA bundle PEM, if any.
    pub ca_pem: Option<String>,
    /// Where the CA came from.
    pub ca_file: Option<PathBuf>,
    /// mTLS identity, if any.
    pub client: Option<ClientIdentity>,
    /// Login, if any: for every project, or (after [`Registry::for_project`]) the one
    /// for the job's project.
    pub credentials: Option<Credentials>,
    /// `[[registries.credentials]]`: logins per GitLab project (empty after
    /// [`Registry::for_project`]).
    pub credential_rules: Vec<CredentialRule>,
    /// HTTPS without verification.
    pub insecure: bool,
    /// Plain HTTP.
    pub http: bool,
    /// Registries this one mirrors.
    pub mirror_for: Vec<String>,
    /// Repository doctor checks push permission on.
    pub check_repository: Option<String>,
    /// Where jobs keep their build cache (`--cache-to type=registry`): the top-level
    /// login's, or (after [`Registry::for_project`]) the matching entry's.
    pub cache_repository: Option<String>,
    /// The key pushes to this registry are signed with: the top-level one, or (after
    /// [`Registry::for_project`]) the matching entry's.
    pub signing_key: Option<KeyFile>,
}

impl Registry {
    /// This registry as a job of `project` gets it: the first matching
    /// `[[registries.credentials]]` entry's login, none when no entry matches, or the
    /// every-project login.
    pub(crate) fn for_project(&self, project: &Project) -> Registry {
        let mut r = self.clone();
        if !self.credential_rules.is_empty() {
            let rule = self
                .credential_rules
                .iter()
                .find(|rule| rule.matches(project));
            r.credentials = rule.map(|rule| rule.credentials.clone());
            r.cache_repository = rule.and_then(|rule| rule.cache_repository.clone());
            r.signing_key = rule.and_then(|rule| rule.signing_key.clone());
            r.credential_rules.clear();
        }
        r
    }

    /// `https` or `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.http { "http" } else { "https" }
    }
}

/// Validated proxy settings (all optional). Proxy URLs may carry `user:password@`, so
/// `Debug` masks that part.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// HTTP proxy URL.
    pub http_proxy: Option<String>,
    /// HTTPS proxy URL.
    pub https_proxy: Option<String>,
    /// Comma-separated exclusions.
    pub no_proxy: Option<String>,
}

impl Proxy {
    /// The variables jobs get, upper- and lower-case as tools read either.
    pub(crate) fn variables(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for (names, v) in [
            (["HTTP_PROXY", "http_proxy"], &self.http_proxy),
            (["HTTPS_PROXY", "https_proxy"], &self.https_proxy),
            (["NO_PROXY", "no_proxy"], &self.no_proxy),
        ] {
            if let Some(v) = v {
                for n in names {
                    out.push((n.to_string(), v.clone()));
                }
            }
        }
        out
    }
}

/// `http://user:pass@proxy:3128` → `http://***@proxy:3128`.
pub(crate) fn mask_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = |v: &Option<String>| v.as_deref().map(mask_userinfo);
        f.debug_struct("Proxy")
            .field("http_proxy", &m(&self.http_proxy))
            .field("https_proxy", &m(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxy {
    /// Whether any proxy is set.
    pub(crate) fn is_set(&self) -> bool {
        self.http_proxy.is_some() || self.https_proxy.is_some()
    }
}

/// A login from `username` and `password_env`/`password_file` (`None` when none is
/// given); `key` names a key with its origin for messages.
fn login(
    key: &dyn Fn(&str) -> String,
    username: Option<String>,
    password_env: Option<&str>,
    password_file: Option<&Path>,
    env: &Env,
) -> Result<Option<Credentials>> {
    let bad = |k: &str, m: String| Error::Settings(format!("{} {m}", key(k)));
    let password = match (password_env, password_file) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "password_env",
                "and password_file are both set; keep one".into(),
            ));
        }
        (Some(var), None) => Some(Secret::new(env.non_empty(var).ok_or_else(|| {
            bad("password_env", format!("names {var}, which is not set in runnerx's environment; set it for gitlab-runner (e.g. its systemd unit) or use password_file"))
        })?)),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                bad(
                    "password_file",
                    format!("{}: {e}; fix the path or the file's permissions", p.display()),
                )
            })?;
            let pw = text.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(bad("password_file", format!("{} is empty", p.display())));
            }
            Some(Secret::new(pw))
        }
        (None, None) => None,
    };
    match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(Credentials { username, password }))
        }
        (Some(_), None) => Err(bad(
            "password_env",
            "is missing: username is set but no password_env or password_file".into(),
        )),
        (None, Some(_)) | (Some(_), Some(_)) => Err(bad(
            "username",
            "is missing: a password is set but no username".into(),
        )),
        (None, None) => Ok(None),
    }
}

pub(crate) fn validate_registry(
    i: usize,
    r: RawRegistry,
    file: &str,
    env: &Env,
) -> Result<Registry> {
    let key = |k: &str| format!("registries[{i}].{k} (in {file})");
    let bad = |k: &str, m: String| Error::Settings(format!("{} {m}", key(k)));
    let host = r.host.ok_or_else(|| {
        bad(
            "host",
            "is missing; write the registry as in image references, e.g. \"harbor.example.com\""
                .into(),
        )
    })?;
    validate_registry_host(&host).map_err(|m| bad("host", format!("{host:?} {m}")))?;
    let read = |k: &str, p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            bad(
                k,
                format!(
                    "{}: {e}; fix the path or the file's permissions",
                    p.display()
                ),
            )
        })
    };
    let ca_pem = match &r.ca_file {
        Some(p) => {
            let pem = read("ca_file", p)?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "ca_file",
                    format!(
                        "{} holds no PEM certificate; give the CA certificate (ca.crt), not a key or DER file",
                        p.display()
                    ),
                ));
            }
            Some(pem)
        }
        None => None,
    };
    let client = match (&r.client_cert_file, &r.client_key_file) {
        (Some(c), Some(k)) => {
            let cert_pem = read("client_cert_file", c)?;
            let key_pem = read("client_key_file", k)?;
            if !key_pem.contains("PRIVATE KEY-----") {
                return Err(bad(
                    "client_key_file",
                    format!("{} holds no PEM private key", k.display()),
                ));
            }
            Some(ClientIdentity {
                cert_pem,
                key_pem: Secret::new(key_pem),
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "client_key_file",
                "is missing; mTLS needs both client_cert_file and client_key_file".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "client_cert_file",
                "is missing; mTLS needs both client_cert_file and client_key_file".into(),
            ));
        }
    };
    let credentials = login(
        &key,
        r.username,
        r.password_env.as_deref(),
        r.password_file.as_deref(),
        env,
    )?;
    let mut rules = vec![];
    for (j, c) in r.credentials.into_iter().enumerate() {
        let rule_key = |k: &str| format!("registries[{i}].credentials[{j}].{k} (in {file})");
        if c.projects.is_empty() && c.project_ids.is_empty() {
            return Err(Error::Settings(format!(
                "{} is empty and so is project_ids; list the GitLab projects this login is for, e.g. [\"team-a/*\"]",
                rule_key("projects")
            )));
        }
        let Some(credentials) = login(
            &rule_key,
            c.username,
            c.password_env.as_deref(),
            c.password_file.as_deref(),
            env,
        )?
        else {
            return Err(Error::Settings(format!(
                "{} is missing; each entry needs username and password_env or password_file",
                rule_key("username")
            )));
        };
        if let Some(repo) = &c.cache_repository {
            repository_path(repo).map_err(|m| {
                Error::Settings(format!("{} {repo:?} {m}", rule_key("cache_repository")))
            })?;
        }
        rules.push(CredentialRule {
            projects: c.projects,
            project_ids: c.project_ids,
            credentials,
            cache_repository: c.cache_repository,
            signing_key: read_key(&rule_key("signing_key_file"), c.signing_key_file)?,
        });
    }
    if credentials.is_some() && !rules.is_empty() {
        return Err(bad(
            "username",
            "and [[registries.credentials]] are both set; a top-level login is for every project: move it into an entry with projects = [\"**\"] (or drop it)".into(),
        ));
    }
    if r.insecure && r.http {
        return Err(bad("insecure", "and http are both true; use http = true for plain HTTP or insecure = true for HTTPS without verification".into()));
    }
    for m in &r.mirror_for {
        validate_registry_host(m).map_err(|e| bad("mirror_for", format!("entry {m:?} {e}")))?;
    }
    for (k, repo) in [
        ("check_repository", &r.check_repository),
        ("cache_repository", &r.cache_repository),
    ] {
        if let Some(repo) = repo {
            repository_path(repo).map_err(|m| bad(k, format!("{repo:?} {m}")))?;
        }
    }
    if r.signing_key_file.is_some() && !rules.is_empty() {
        return Err(bad(
            "signing_key_file",
            "is for the top-level login, and this registry has [[registries.credentials]] instead: set signing_key_file on each entry (each project's pushes are signed with its entry's key)".into(),
        ));
    }
    if r.cache_repository.is_some() && !rules.is_empty() {
        return Err(bad(
            "cache_repository",
            "is for the top-level login, and this registry has [[registries.credentials]] instead: set cache_repository on each entry (the cache is pushed with that entry's login)".into(),
        ));
    }
    Ok(Registry {
        host,
        credential_rules: rules,
        ca_pem,
        ca_file: r.ca_file,
        client,
        credentials,
        insecure: r.insecure,
        http: r.http,
        mirror_for: r.mirror_for,
        check_repository: r.check_repository,
        cache_repository: r.cache_repository,
        signing_key: read_key(&key("signing_key_file"), r.signing_key_file)?,
    })
}

/// `ci/app`: lower-case path components of letters, digits, `.`, `_` and `-`.
fn repository_path(repo: &str) -> std::result::Result<(), Invalid> {
    let ok = !repo.is_empty()
        && repo.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err("is not a repository path such as \"ci/app\"".into())
    }
}

/// `host[:port]`: no scheme, no path, no credentials.
pub(crate) fn validate_registry_host(host: &str) -> Result<(), Invalid> {
    if host.contains("://") {
        return Err(Invalid::new(
            "has a scheme; write host[:port] only, e.g. \"harbor.example.com\"",
        ));
    }
    if host.contains('/') || host.contains('@') {
        return Err(Invalid::new("must be host[:port] only (no path, no user)"));
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Invalid::new("has an invalid host name"));
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(Invalid::new("has an invalid port"))?;
    }
    Ok(())
}

pub(crate) fn validate_proxy(p: RawProxy, file: &str) -> Result<Proxy> {
    for (k, v) in [
        ("http_proxy", &p.http_proxy),
        ("https_proxy", &p.https_proxy),
    ] {
        if let Some(v) = v
            && !(v.starts_with("http://")
                || v.starts_with("https://")
                || v.starts_with("socks5://"))
        {
            return Err(Error::Settings(format!(
                "proxy.{k} (in {file}) must be a URL such as \"http://proxy.example.com:3128\""
            )));
        }
    }
    Ok(Proxy {
        http_proxy: p.http_proxy.filter(|s| !s.is_empty()),
        https_proxy: p.https_proxy.filter(|s| !s.is_empty()),
        no_proxy: p.no_proxy.filter(|s| !s.is_empty()),
    })
}
