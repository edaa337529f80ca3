//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a
//! loopback port, TLS with certificates made by `runnerx certs`, and either htpasswd
//! or token auth through a small loopback token server that signs ES256 JWTs.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::SigningKey as _;

use crate::support::bin;

/// The name the registry is reached by (an extra_hosts entry in the builder).
pub(crate) const HOST: &str = "registry.test";
pub(crate) const USER: &str = "ci";
/// Two more accounts of the htpasswd registry (per-project logins), with passwords.
pub(crate) const TEAMS: [(&str, &str); 2] = [
    ("robot-team-a", "Team-A-s3cret-pw"),
    ("robot-team-b", "Team-B-s3cret-pw"),
];
pub(crate) const PASSWORD: &str = "s3cr3t-Reg1stry-PassW0rd";

/// How the registry's TLS is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Leaf for registry.test + 127.0.0.1, signed by the CA.
    Good,
    /// Leaf for another name only.
    WrongName,
    /// Plain HTTP on the port.
    None,
    /// The CA certificate itself served as the server certificate.
    CaAsLeaf,
}

/// How clients authenticate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMode {
    Htpasswd,
    Token,
    /// Anonymous push and pull.
    None,
}

pub(crate) struct TestRegistry {
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    child: Child,
    _token: Option<TokenServer>,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn runnerx_certs(args: &[&str]) {
    let out = Command::new(bin())
        .arg("certs")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runnerx certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestRegistry {
    pub(crate) fn start(tls: Tls, auth: AuthMode) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = |s: &str| d.join(s).display().to_string();
        runnerx_certs(&["ca", "--out", &p("ca"), "--cn", "test registry CA"]);
        let names: &[&str] = if tls == Tls::WrongName {
            &["other.test"]
        } else {
            &[HOST, "127.0.0.1"]
        };
        let (ca, server) = (p("ca"), p("server"));
        let mut args = vec!["server", "--ca", &ca, "--out", &server];
        for n in names {
            args.extend(["--name", n]);
        }
        runnerx_certs(&args);
        let port = free_port();
        let (auth_yaml, token) = match auth {
            AuthMode::None => (String::new(), None),
            AuthMode::Htpasswd => {
                let mut file = Vec::new();
                for (user, pw) in [(USER, PASSWORD)].into_iter().chain(TEAMS) {
                    let out = Command::new("htpasswd")
                        .args(["-Bbn", user, pw])
                        .output()
                        .expect("htpasswd (apache2-utils)");
                    file.extend(String::from_utf8_lossy(&out.stdout).trim_end().as_bytes());
                    file.push(b'\n');
                }
                std::fs::write(d.join("htpasswd"), file).unwrap();
                (
                    format!(
                        "  htpasswd: {{realm: basic-realm, path: {}}}\n",
                        p("htpasswd")
                    ),
                    None,
                )
            }
            AuthMode::Token => {
                let t = TokenServer::start(d);
                (
                    // The realm by name, as a real one is: in a rootless builder
                    // 127.0.0.1 is the namespace's own loopback, and the name maps to
                    // the host alias there.
                    format!(
                        "  token: {{realm: 'http://{HOST}:{}/token', service: runnerx-test, issuer: runnerx-test-issuer, rootcertbundle: {}}}\n",
                        t.port,
                        t.cert_path.display()
                    ),
                    Some(t),
                )
            }
        };
        let tls_yaml = match tls {
            Tls::None => String::new(),
            Tls::CaAsLeaf => format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                p("ca/ca.crt"),
                p("ca/ca.key")
            ),
            _ => format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                p("server/server.crt"),
                p("server/server.key")
            ),
        };
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-only\n{tls_yaml}{}",
            p("data"),
            if auth_yaml.is_empty() {
                String::new()
            } else {
                format!("auth:\n{auth_yaml}")
            }
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", &p("config.yml")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "registry did not start: {}",
                std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TestRegistry {
            port,
            dir,
            child,
            _token: token,
        }
    }

    /// `registry.test:<port>`.
    pub(crate) fn host(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Kills the registry process (a registry that dies under a job).
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    /// A `[[registries]]` block for this registry (password from env `REG_PW`).
    /// A job whose settings trust this registry and log in to it (password in
    /// runnerx's environment, as on a runner host).
    pub(crate) fn job(&self) -> crate::support::Job {
        crate::support::Job::new()
            .with_settings(&self.settings_block(&self.ca_file(), ""))
            .env("REG_PW", PASSWORD)
    }

    pub(crate) fn settings_block(&self, ca_file: &Path, extra: &str) -> String {
        format!(
            "[[registries]]\nhost = \"{}\"\nca_file = \"{}\"\nusername = \"{USER}\"\npassword_env = \"REG_PW\"\ncheck_repository = \"demo/app\"\n{extra}",
            self.host(),
            ca_file.display()
        )
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the registry refused (its log keeps warnings
        // and errors only, each with the request and the reason).
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- registry {} log (last 20 lines)", self.host());
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// A loopback token server: checks Basic credentials and returns a JWT granting the
/// requested scopes, signed ES256 with a key whose self-signed certificate is the
/// registry's `rootcertbundle` (sent as `x5c`).
struct TokenServer {
    port: u16,
    cert_path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["token-signer".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join("token.crt");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        handle_token(s, &key, &x5c);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenServer {
            port,
            cert_path,
            stop,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn handle_token(mut s: TcpStream, key: &rcgen::KeyPair, x5c: &str) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut auth = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        match name.to_ascii_lowercase().as_str() {
            "authorization" => auth = Some(value.trim().to_string()),
            "content-length" => content_length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    // GET with Basic (docker, doctor) or POST with a password grant (containerd).
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut form = target.split_once('?').map_or("", |(_, q)| q).to_string();
    if request_line.starts_with("POST") {
        let mut body = vec![0u8; content_length];
        let _ = std::io::Read::read_exact(&mut reader, &mut body);
        form = String::from_utf8_lossy(&body).into_owned();
        let field = |k: &str| form_values(&form, k).into_iter().next();
        if let (Some(u), Some(p)) = (field("username"), field("password")) {
            auth = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ));
        }
    }
    let scopes = form_values(&form, "scope");
    let (status, body) = match auth {
        Some(a) if a != expected => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string(),
        ),
        a => {
            // Anonymous requests get a token without access.
            let access: Vec<serde_json::Value> = if a.is_some() {
                scopes
                    .iter()
                    .flat_map(|s| s.split(' '))
                    .filter_map(|s| {
                        let mut parts = s.rsplitn(2, ':');
                        let actions = parts.next()?;
                        let (typ, name) = parts.next()?.split_once(':')?;
                        Some(serde_json::json!({"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect()
            } else {
                vec![]
            };
            let token = sign_jwt(key, x5c, &access);
            (
                "200 OK",
                serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                    .to_string(),
            )
        }
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// All values of `key` in an `application/x-www-form-urlencoded` string, decoded.
fn form_values(form: &str, key: &str) -> Vec<String> {
    form.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sign_jwt(key: &rcgen::KeyPair, x5c: &str, access: &[serde_json::Value]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "runnerx-test-issuer", "sub": USER, "aud": "runnerx-test",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let der = key.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(&der_to_raw(&der)))
}

/// ECDSA signature: ASN.1 `SEQUENCE { INTEGER r, INTEGER s }` → JWS `r || s` (32+32).
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut i = 2; // SEQUENCE tag + length (short form for P-256)
    let mut out = vec![];
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER expected");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = if int.len() > 32 {
            &int[int.len() - 32..]
        } else {
            int
        };
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}
