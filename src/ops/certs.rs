//! `runnerx certs ca|server|client|signing-key`: writes the files and says where each
//! one goes.

use crate::cli::CertsCommand;
use crate::error::{Error, Result};
use crate::trust::ca::{self, OutFile};

/// Runs a certs subcommand; prints each written file and its destination on stdout.
pub(crate) fn run(cmd: &CertsCommand) -> Result<()> {
    let (dir, files, force) = match cmd {
        CertsCommand::Ca {
            out,
            cn,
            days,
            force,
        } => {
            let cn = cn
                .clone()
                .unwrap_or_else(|| format!("runnerx registry CA {}", crate::host::random_hex(4)));
            let ca = ca::make_ca(&cn, *days)?;
            let files = vec![
                OutFile {
                    name: "ca.crt".into(),
                    content: ca.cert,
                    mode: 0o644,
                    goes: "runner host: [[registries]] ca_file in /etc/runnerx/runnerx.toml; other Docker hosts: /etc/docker/certs.d/<host[:port]>/ca.crt".into(),
                },
                OutFile {
                    name: "ca.key".into(),
                    content: ca.key,
                    mode: 0o600,
                    goes: "keep it offline; only `runnerx certs server|client --ca` needs it".into(),
                },
            ];
            (out, files, *force)
        }
        CertsCommand::SigningKey { out, force } => {
            let (key, pem) = crate::keys::SigningKey::generate().map_err(|e| Error::Usage(e.0))?;
            let public = key.public_pem();
            let files = vec![
                OutFile {
                    name: "cosign.key".into(),
                    content: pem,
                    mode: 0o600,
                    goes: "runner host only: [[registries]] (or [[registries.credentials]]) signing_key_file; never into a CI variable".into(),
                },
                OutFile {
                    name: "cosign.pub".into(),
                    content: public.clone(),
                    mode: 0o644,
                    goes: "deployers and `runnerx verify --key`; `cosign verify --key cosign.pub` reads it too".into(),
                },
            ];
            print!("public key:\n{public}");
            (out, files, *force)
        }
        CertsCommand::Server {
            ca,
            names,
            out,
            days,
            force,
        } => {
            let issuer = ca::read_ca(ca)?;
            let server = ca::make_server(&issuer, names, *days)?;
            let files = vec![
                OutFile {
                    name: "server.crt".into(),
                    content: server.cert,
                    mode: 0o644,
                    goes: "Harbor: harbor.yml https.certificate (or the registry's http.tls.certificate)".into(),
                },
                OutFile {
                    name: "server.key".into(),
                    content: server.key,
                    mode: 0o600,
                    goes: "Harbor: harbor.yml https.private_key (or the registry's http.tls.key)".into(),
                },
            ];
            println!("names (SANs): {}", names.join(", "));
            (out, files, *force)
        }
        CertsCommand::Client {
            ca,
            cn,
            out,
            days,
            force,
        } => {
            let issuer = ca::read_ca(ca)?;
            let client = ca::make_client(&issuer, cn, *days)?;
            let files = vec![
                OutFile {
                    name: "client.cert".into(),
                    content: client.cert,
                    mode: 0o644,
                    goes: "runner host: [[registries]] client_cert_file (runnerx puts it in certs.d and buildkitd.toml)".into(),
                },
                OutFile {
                    name: "client.key".into(),
                    content: client.key,
                    mode: 0o600,
                    goes: "runner host: [[registries]] client_key_file".into(),
                },
            ];
            (out, files, *force)
        }
    };
    let written = ca::write_all(dir, &files, force)?;
    for (path, f) in written.iter().zip(&files) {
        println!("wrote {} ({:o})\n  -> {}", path.display(), f.mode, f.goes);
    }
    Ok(())
}
