//! `runnerx doctor`: checks the runner host and every configured registry from here,
//! and for each failure prints what the user would have seen and the fix.
//!
//! Host: Docker engine reachable (and its version), kernel ≥ 4.8 with binfmt_misc
//! (QEMU's fix-binary flag), the builder image. Per registry: name resolution (honouring
//! `builder.extra_hosts`, as the builder does), TCP connect, TLS with its `ca_file`, the
//! `/v2/` challenge, login (Basic or the Bearer token flow), push permission on
//! `check_repository`, and Harbor's systeminfo. Per BuildKit node ([`nodes`]): mTLS
//! both ways, its BuildKit version and platforms. Exits non-zero when anything fails.

mod apparmor;
mod binfmt;
mod network;
mod nodes;
mod push;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::builder::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::auth::{Challenge, parse_challenge};
use crate::registry::client::{Auth, Client, TokenError};
use crate::registry::tls::{TlsOutcome, plain_http_head, probe_tls};
use crate::registry::{self};
use crate::settings::{Registry, Settings};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Counts and prints results.
#[derive(Default)]
pub(super) struct Report {
    failed: usize,
}

impl Report {
    pub(super) fn ok(&self, what: &str, detail: impl AsRef<str>) {
        println!("  ok    {what}: {}", detail.as_ref());
    }
    pub(super) fn note(&self, what: &str, detail: impl AsRef<str>) {
        println!("  --    {what}: {}", detail.as_ref());
    }
    pub(super) fn fail(&mut self, what: &str, seen: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed += 1;
        println!("  FAIL  {what}: {}", seen.as_ref());
        println!("        fix: {}", fix.as_ref());
    }
}

/// The logins of `reg` to check, each with a heading: with `project`, the one a job of
/// that project gets; otherwise the every-project login, or each per-project login
/// (usernames only, never secrets).
fn accounts(reg: &Registry, project: Option<&str>) -> Vec<(String, Registry)> {
    if let Some(path) = project {
        let who = crate::settings::Project {
            id: None,
            path: Some(path.to_string()),
        };
        let mine = reg.for_project(&who);
        let heading = match &mine.credentials {
            Some(c) => format!(": a job of {path} logs in as {}", c.username),
            None => format!(": a job of {path} gets no login (the CA and mirrors only)"),
        };
        return vec![(heading, mine)];
    }
    if reg.credential_rules.is_empty() {
        return vec![(String::new(), reg.clone())];
    }
    reg.credential_rules
        .iter()
        .map(|rule| {
            let mut for_rule = reg.clone();
            for_rule.credential_rules.clear();
            for_rule.credentials = Some(rule.credentials.clone());
            for_rule.cache_repository = rule.cache_repository.clone();
            for_rule.signing_key = rule.signing_key.clone();
            let mut who: Vec<String> = rule.projects.clone();
            who.extend(rule.project_ids.iter().map(|id| format!("project id {id}")));
            (
                format!(" as {} (for {})", rule.credentials.username, who.join(", ")),
                for_rule,
            )
        })
        .collect()
}

/// Caches on this host: size and last use of each, the total against `cache.total`.
async fn cache_notes(settings: &Settings, r: &mut Report) {
    let Ok(engine) = crate::builder::engine::Engine::connect().await else {
        return;
    };
    let Ok(caches) = crate::builder::caches::inventory(&engine, settings, false).await else {
        return;
    };
    let now = crate::host::unix_now();
    for c in &caches {
        r.note("cache", c.describe(now));
    }
    r.note("caches", crate::builder::caches::summary(&caches, settings));
}

/// Runs all checks.
pub(crate) async fn doctor(
    settings: &Settings,
    only: Option<&str>,
    project: Option<&str>,
) -> Result<()> {
    let mut r = Report::default();
    println!("runner host");
    host_checks(settings, &mut r).await;
    cache_notes(settings, &mut r).await;
    let regs: Vec<&Registry> = settings
        .registries
        .iter()
        .filter(|g| only.is_none_or(|h| g.host == h))
        .collect();
    if let (Some(h), true) = (only, regs.is_empty()) {
        return Err(Error::Usage(format!(
            "no [[registries]] entry with host {h:?} in the settings; configured: {}",
            if settings.registries.is_empty() {
                "none".to_string()
            } else {
                settings
                    .registries
                    .iter()
                    .map(|r| r.host.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    if settings.registries.is_empty() {
        println!("registries");
        r.note(
            "registries",
            "none configured ([[registries]] in the settings)",
        );
    }
    for reg in regs {
        for (account, as_checked) in accounts(reg, project) {
            println!("registry {}{account}", reg.host);
            registry_checks(settings, &as_checked, &mut r).await;
        }
    }
    if only.is_none() {
        nodes::check(settings, &mut r).await;
    }
    if r.failed > 0 {
        return Err(Error::Checks(r.failed));
    }
    println!("all checks passed");
    Ok(())
}

async fn host_checks(settings: &Settings, r: &mut Report) {
    match Engine::connect().await {
        Ok(engine) => {
            match engine.info().await {
                Ok(info) => {
                    r.ok("docker engine", info.version);
                    apparmor::check(info.apparmor, r);
                }
                Err(e) => r.fail("docker engine", e.to_string(), "check that dockerd runs and this user may use its socket"),
            }
            let image = &settings.builder.image;
            match engine.image_exists(image).await {
                Ok(true) => r.ok("builder image", format!("{image} is present")),
                Ok(false) if settings.builder.pull_policy == crate::settings::PullPolicy::Never => r.fail(
                    "builder image",
                    format!("{image} is not present and pull_policy is \"never\""),
                    "load the image (docker/build-builder-image.sh or docker build docker/) or allow pulling",
                ),
                Ok(false) => r.note("builder image", format!("{image} is not present; the first prepare will pull it")),
                Err(e) => r.fail("builder image", e.to_string(), "check the engine"),
            }
        }
        Err(e) => r.fail(
            "docker engine",
            e.to_string(),
            "start dockerd, or point DOCKER_HOST at it; the runner's user needs access to the socket",
        ),
    }
    let facts = crate::host::facts(std::path::Path::new("/proc"));
    let release = facts.kernel.as_str();
    let (major, minor) = crate::host::kernel_version(release).unwrap_or((0, 0));
    isolation_checks(settings, &facts, r);
    if (major, minor) >= (4, 8) {
        r.ok(
            "kernel",
            format!("{release} (≥ 4.8: binfmt_misc fix-binary flag available)"),
        );
    } else {
        r.fail(
            "kernel",
            format!("{release} is older than 4.8: QEMU emulators cannot be registered with the F flag"),
            "upgrade the runner host's kernel to 4.8 or newer, or build each platform on a native runner",
        );
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("binfmt_misc"))
    {
        r.ok("binfmt_misc", "supported by the kernel");
    } else if std::path::Path::new("/proc/sys/fs/binfmt_misc").exists() {
        r.ok(
            "binfmt_misc",
            "mount point present (module loads on demand)",
        );
    } else {
        r.fail(
            "binfmt_misc",
            "not in /proc/filesystems: `exec format error` for foreign-platform RUN steps",
            "load it on the runner host: modprobe binfmt_misc (and add it to /etc/modules)",
        );
    }
}

/// What isolation this host supports for builders (user namespaces, binfmt_misc per
/// user namespace, /dev/net/tun, seccomp), and the fix for each miss.
fn isolation_checks(settings: &Settings, facts: &crate::host::Facts, r: &mut Report) {
    use crate::settings::Isolation;
    let wanted = settings.builder.isolation;
    match (&facts.userns, wanted) {
        (Ok(()), Isolation::Privileged) => r.note(
            "isolation",
            "user namespaces work, but builder.isolation = \"privileged\": a job can reach this host; set it to \"rootless\"",
        ),
        (Ok(()), _) => r.ok("isolation", "rootless builders (unprivileged user namespaces allowed)"),
        (Err(why), Isolation::Rootless) => r.fail(
            "isolation",
            format!("rootless builders are not possible: {why}"),
            "allow unprivileged user namespaces (the fix above), or set builder.isolation = \"privileged\" knowing jobs can then reach the host",
        ),
        (Err(why), _) => r.note(
            "isolation",
            format!("privileged builders only ({why}); jobs can reach this host"),
        ),
    }
    binfmt::check(settings, facts, r);
    network::check(settings, r);
    if wanted != Isolation::Privileged {
        if std::path::Path::new("/sys/class/misc/tun").exists()
            || std::path::Path::new("/dev/net/tun").exists()
        {
            r.ok("tun", "/dev/net/tun available (slirp4netns networking)");
        } else {
            r.fail(
                "tun",
                "no tun device: rootless builders have no network",
                "modprobe tun (and add it to /etc/modules)",
            );
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if status.lines().any(|l| l.starts_with("Seccomp:")) {
            r.ok("seccomp", "supported (runnerx's builder profile applies)");
        } else {
            r.fail(
                "seccomp",
                "the kernel has no seccomp",
                "use a kernel with CONFIG_SECCOMP_FILTER",
            );
        }
    }
}

async fn registry_checks(settings: &Settings, reg: &Registry, r: &mut Report) {
    let (host, port) = registry::host_port(reg);
    let addr = match registry::resolve(&settings.builder.extra_hosts, &host, port).await {
        Ok((addr, how)) => {
            r.ok("resolve", format!("{host} -> {} ({how})", addr.ip()));
            addr
        }
        Err(e) => {
            r.fail(
                "resolve",
                format!("dial tcp: lookup {host}: {e}"),
                format!("fix DNS for {host}, or add \"{host}:<ip>\" to builder.extra_hosts"),
            );
            return;
        }
    };
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => r.ok(
            "connect",
            format!("{addr} ({}ms)", started.elapsed().as_millis()),
        ),
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
                _ => e.to_string(),
            };
            r.fail(
                "connect",
                format!("dial tcp {addr}: {why}"),
                format!("is the registry running and listening on {addr}? check the port in host = \"{}\" and firewalls", reg.host),
            );
            return;
        }
        Err(_) => {
            r.fail(
                "connect",
                format!("dial tcp {addr}: i/o timeout"),
                "check routing and firewalls between the runner and the registry",
            );
            return;
        }
    }

    if !tls_checks(reg, addr, &host, r).await {
        return;
    }

    let client = match Client::new(reg, Some(addr)) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "http client",
                e.cause(),
                "fix ca_file / client_cert_file / client_key_file",
            );
            return;
        }
    };
    let ping = match client.send(Method::GET, "/v2/", Auth::None).await {
        Ok(a) => a,
        Err(e) => {
            r.fail(
                "/v2/",
                e.cause(),
                "check that this is a registry endpoint reachable over the configured scheme",
            );
            return;
        }
    };
    let challenge = match ping.status {
        200 => {
            r.ok("/v2/", "200: anonymous access allowed");
            None
        }
        401 => match ping.challenge.as_deref().and_then(parse_challenge) {
            Some(c) => {
                r.ok(
                    "/v2/",
                    format!(
                        "401 with {} challenge",
                        if matches!(c, Challenge::Basic) {
                            "Basic"
                        } else {
                            "Bearer"
                        }
                    ),
                );
                Some(c)
            }
            None => {
                r.fail(
                    "/v2/",
                    format!(
                        "401 without a usable WWW-Authenticate ({:?})",
                        ping.challenge
                    ),
                    "check the registry's auth configuration",
                );
                return;
            }
        },
        404 => {
            r.fail(
                "/v2/",
                "404: not a registry API endpoint",
                format!(
                    "host = \"{}\" must point at the registry itself, not a web UI path",
                    reg.host
                ),
            );
            return;
        }
        s => {
            r.fail(
                "/v2/",
                format!("unexpected status {s}"),
                "check the registry's logs",
            );
            return;
        }
    };

    let token = login_checks(reg, &client, challenge.as_ref(), r).await;
    if !token.ok {
        return;
    }
    match &reg.check_repository {
        Some(repo) => push::push_check(reg, repo, "push", &client, challenge.as_ref(), r).await,
        None => r.note(
            "push",
            "not checked: set check_repository (e.g. \"ci/app\") for this registry",
        ),
    }
    match &reg.signing_key {
        Some(k) => r.ok(
            "signing",
            format!(
                "pushes are signed and attested with {} (runnerx verify --key <its .pub>)",
                k.path.display()
            ),
        ),
        None => r.note("signing", "pushes are not signed (set signing_key_file)"),
    }
    // The build cache is pushed with the same login (image-manifest form: Harbor
    // stores it like an image).
    if let Some(repo) = &reg.cache_repository {
        push::push_check(reg, repo, "build cache", &client, challenge.as_ref(), r).await;
    }
    push::harbor_check(&client, r).await;
}

/// TLS (or, for `http = true`, the absence of it). Returns whether to go on.
async fn tls_checks(reg: &Registry, addr: SocketAddr, host: &str, r: &mut Report) -> bool {
    let (reg2, host2) = (reg.clone(), host.to_string());
    if reg.http {
        let head = tokio::task::spawn_blocking(move || plain_http_head(addr, &host2, TIMEOUT))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        if head.starts_with("HTTP/") && !head.contains("HTTPS server") {
            r.ok("plain http", "the port speaks HTTP (http = true)");
            return true;
        }
        r.fail(
            "plain http",
            "http: server gave an HTTPS (TLS) answer to an HTTP client (\"Client sent an HTTP request to an HTTPS server\")",
            format!("the registry speaks TLS: remove http = true for {} and set ca_file", reg.host),
        );
        return false;
    }
    let outcome = tokio::task::spawn_blocking(move || probe_tls(addr, &host2, &reg2, TIMEOUT))
        .await
        .unwrap_or_else(|e| TlsOutcome::Other(e.to_string()));
    let ca = reg.ca_file.as_ref().map_or_else(
        || "no ca_file (system roots only)".to_string(),
        |p| format!("ca_file {}", p.display()),
    );
    let soft = reg.insecure;
    let mut fail = |what: &str, seen: String, fix: String| {
        if soft {
            r.note(what, format!("{seen} (ignored: insecure = true)"));
        } else {
            r.fail(what, seen, fix);
        }
    };
    match outcome {
        TlsOutcome::Ok(v) => {
            r.ok("tls", format!("verified with {ca} ({v})"));
            return true;
        }
        TlsOutcome::UnknownIssuer => fail(
            "tls",
            "x509: certificate signed by unknown authority".into(),
            format!(
                "set ca_file for {} to the CA that signed the registry's certificate (now: {ca}); make one with `runnerx certs ca`",
                reg.host
            ),
        ),
        TlsOutcome::SameNameOtherCa => fail(
            "tls",
            "x509: certificate signed by unknown authority (the CA in ca_file has the issuer's name but a different key: a regenerated CA?)".into(),
            format!(
                "set ca_file for {} to the CA that actually signed the registry's certificate (now: {ca}), or reissue the certificate from this CA",
                reg.host
            ),
        ),
        TlsOutcome::NameMismatch(names) => fail(
            "tls",
            format!("x509: certificate is valid for {}, not {host}", if names.is_empty() { "no DNS/IP names (legacy CN only)".into() } else { names.join(", ") }),
            format!("reissue the registry certificate with {host} as a SAN: runnerx certs server --ca DIR --name {host} --out DIR"),
        ),
        TlsOutcome::Expired(not_after) => fail(
            "tls",
            format!("x509: certificate has expired or is not yet valid (notAfter {not_after})"),
            "renew the registry certificate (runnerx certs server …) and check the clocks".into(),
        ),
        TlsOutcome::CaAsLeaf => fail(
            "tls",
            "the registry serves a CA certificate (CA:TRUE) as its server certificate; rustls rejects it (CaUsedAsEndEntity)".into(),
            format!("serve a leaf certificate signed by the CA: runnerx certs server --ca DIR --name {host} --out DIR"),
        ),
        TlsOutcome::PlainHttp => fail(
            "tls",
            "http: server gave HTTP response to HTTPS client".into(),
            format!("the port speaks plain HTTP: enable TLS on the registry, or set http = true for {} (not recommended)", reg.host),
        ),
        TlsOutcome::Other(m) => fail("tls", m, "check the registry's TLS configuration".into()),
    }
    soft
}

struct LoginResult {
    ok: bool,
}

async fn login_checks(
    reg: &Registry,
    client: &Client,
    challenge: Option<&Challenge>,
    r: &mut Report,
) -> LoginResult {
    let Some(creds) = &reg.credentials else {
        r.note("login", "no username configured: anonymous access only");
        return LoginResult { ok: true };
    };
    match challenge {
        None => {
            r.note(
                "login",
                "the registry allows anonymous access; credentials not needed to read",
            );
            LoginResult { ok: true }
        }
        Some(Challenge::Basic) => match client.send(Method::GET, "/v2/", Auth::Basic).await {
            Ok(a) if a.status == 200 => {
                r.ok("login", format!("Basic as {}", creds.username));
                LoginResult { ok: true }
            }
            Ok(a) => {
                r.fail(
                    "login",
                    format!("Error response from daemon: login attempt to https://{}/v2/ failed with status: {} (unauthorized: incorrect username or password)", reg.host, a.status),
                    "check username and the password in password_env/password_file",
                );
                LoginResult { ok: false }
            }
            Err(e) => {
                r.fail("login", e.cause(), "check the registry");
                LoginResult { ok: false }
            }
        },
        Some(Challenge::Bearer { realm, service }) => {
            match client.token(realm, service.as_deref(), &[]).await {
                Ok(token) => match client.send(Method::GET, "/v2/", Auth::Bearer(&token)).await {
                    Ok(a) if a.status == 200 => {
                        r.ok(
                            "login",
                            format!("Bearer token from {realm} as {}", creds.username),
                        );
                        LoginResult { ok: true }
                    }
                    Ok(a) => {
                        r.fail("login", format!("the token from {realm} was refused by /v2/ ({})", a.status), "check the token service and registry share the same signing certificate");
                        LoginResult { ok: false }
                    }
                    Err(e) => {
                        r.fail("login", e.cause(), "check the registry");
                        LoginResult { ok: false }
                    }
                },
                Err(TokenError::Denied(s)) => {
                    r.fail(
                    "login",
                    format!("failed to authorize: failed to fetch oauth token: unexpected status from GET request to {realm}: {s} Unauthorized"),
                    "check username and the password in password_env/password_file (Harbor OIDC users: use the CLI secret)",
                );
                    LoginResult { ok: false }
                }
                Err(TokenError::Other(m)) => {
                    r.fail(
                    "login",
                    format!("failed to fetch oauth token from {realm}: {m}"),
                    "the token service must be reachable from the runner and builders, and trusted (same CA)",
                );
                    LoginResult { ok: false }
                }
            }
        }
    }
}
