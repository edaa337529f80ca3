//! Installing the egress policy (`runnerx host network`), and reading whether it is
//! in force (prepare, doctor).
//!
//! Files: the ruleset in [`RULES`], the digest of the settings it was made for in
//! [`SAVED_MARKER`]; loading it copies the digest to [`MARKER`] in /run (root's,
//! readable by all; not in /run/runnerx, which belongs to gitlab-runner's user), which
//! empties at reboot, so the marker exists exactly when the table was loaded since
//! boot. Prepare runs as gitlab-runner's user, which may not list nftables: it reads
//! the marker. A systemd unit reloads the policy at boot, before the engine starts.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::process::Command;

use super::{Inputs, Resolved, TABLE, digest, inputs, mapped, nameservers, render};
use crate::error::{Error, Result};
use crate::settings::{Egress, Settings, Target};

/// The ruleset `nft -f` loads.
pub(crate) const RULES: &str = "/etc/runnerx/network.nft";
/// The settings digest of the installed ruleset (kept across reboots).
const SAVED_MARKER: &str = "/etc/runnerx/network.digest";
/// The settings digest of the loaded ruleset (gone at reboot until the unit runs).
pub(crate) const MARKER: &str = "/run/runnerx-network.digest";
/// The unit that loads the policy at boot.
const UNIT: &str = "/etc/systemd/system/runnerx-network.service";

/// Addresses of `host` for the policy: `builder.extra_hosts` first (what builders
/// resolve it to), then the host's resolver.
fn resolve(host: &str, port: u16, extra_hosts: &[String]) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let mapped = mapped(host, extra_hosts);
    if !mapped.is_empty() {
        return mapped;
    }
    let mut ips: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

/// Resolves every name the inputs hold; a name that does not resolve stays closed,
/// with a warning.
fn resolve_all(inputs: &Inputs, extra_hosts: &[String], resolv: &[String]) -> Resolved {
    let mut out = Resolved::default();
    let allowed = inputs
        .endpoints
        .iter()
        .cloned()
        .chain(inputs.allow.iter().filter_map(|t| match t {
            Target::HostPort(h, p) => Some(("network.allow".to_string(), h.clone(), *p)),
            Target::Net(_) => None,
        }));
    for (why, host, port) in allowed {
        let ips = resolve(&host, port, extra_hosts);
        if ips.is_empty() {
            tracing::warn!(
                "{why}: {host} does not resolve on this host; jobs cannot reach it until `runnerx host network` runs again"
            );
        }
        out.allow_tcp
            .extend(ips.into_iter().map(|ip| (why.clone(), ip, port)));
    }
    for t in &inputs.deny {
        if let Target::HostPort(h, p) = t {
            out.deny_tcp
                .extend(resolve(h, *p, extra_hosts).into_iter().map(|ip| (ip, *p)));
        }
    }
    for text in resolv {
        for ns in nameservers(text) {
            if !out.nameservers.contains(&ns) {
                out.nameservers.push(ns);
            }
        }
    }
    out
}

fn nft(args: &[&str]) -> Result<std::process::Output> {
    Command::new("nft").args(args).output().map_err(|e| {
        Error::Usage(format!(
            "cannot run nft ({e}); install nftables: apt-get install nftables (Debian, Ubuntu) or dnf install nftables"
        ))
    })
}

/// The policy changes the host's firewall and /etc: say so before anything fails
/// half-way (/proc/self belongs to the effective uid).
fn must_be_root() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() != 0 => Err(Error::Usage(
            "runnerx host network changes the host's nftables and /etc/runnerx: run it as root (--dry-run prints the ruleset as any user)".into(),
        )),
        _ => Ok(()),
    }
}

fn write(path: &str, text: &str) -> Result<()> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

/// `runnerx host network`: renders the policy for `settings`, loads it, keeps it
/// across reboots. `dry_run` prints the ruleset only.
pub(crate) fn install(settings: &Settings, dry_run: bool) -> Result<()> {
    let inputs = inputs(settings);
    let resolv: Vec<String> = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let resolved = resolve_all(&inputs, &settings.builder.extra_hosts, &resolv);
    let digest = digest(&inputs);
    let rules = render(&inputs, &resolved, &digest);
    if dry_run {
        print!("{rules}");
        return Ok(());
    }
    must_be_root()?;
    write(RULES, &rules)?;
    let out = nft(&["-f", RULES])?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Usage(format!(
            "nft refused {RULES}: {}; run `runnerx host network` as root (--dry-run prints the ruleset)",
            why.trim().lines().next().unwrap_or("no message")
        )));
    }
    write(SAVED_MARKER, &format!("{digest}\n"))?;
    write(MARKER, &format!("{digest}\n"))?;
    let kept = keep_across_reboots()?;
    println!(
        "runnerx egress policy: table inet {TABLE} loaded from {RULES} ({} allowed endpoints, {} resolvers){kept}",
        resolved.allow_tcp.len(),
        resolved.nameservers.len()
    );
    Ok(())
}

/// Installs the boot unit where systemd runs; says what happens otherwise.
fn keep_across_reboots() -> Result<&'static str> {
    if !Path::new("/run/systemd/system").exists() {
        return Ok("; no systemd here: run `runnerx host network` again after each boot");
    }
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/sbin/nft");
    let unit = format!(
        "[Unit]\nDescription=runnerx egress policy for builders\nBefore=docker.service\n\
         After=nftables.service firewalld.service\nPartOf=nftables.service\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart={nft} -f {RULES}\n\
         ExecStart=/bin/cp {SAVED_MARKER} {MARKER}\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    write(UNIT, &unit)?;
    let ok = Command::new("systemctl")
        .args(["daemon-reload"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("systemctl")
            .args(["enable", "--quiet", "runnerx-network.service"])
            .status()
            .is_ok_and(|s| s.success());
    Ok(if ok {
        "; kept across reboots (runnerx-network.service)"
    } else {
        "; systemctl could not enable runnerx-network.service: run `runnerx host network` again after each boot"
    })
}

/// `runnerx host network --remove`: drops the table, the files and the unit.
pub(crate) fn remove(dry_run: bool) -> Result<()> {
    if dry_run {
        println!(
            "would delete table inet {TABLE} and remove {RULES}, {SAVED_MARKER}, {MARKER}, {UNIT}"
        );
        return Ok(());
    }
    must_be_root()?;
    if Path::new(UNIT).exists() {
        let _ = Command::new("systemctl")
            .args(["disable", "--quiet", "runnerx-network.service"])
            .status();
    }
    for f in [MARKER, SAVED_MARKER, RULES, UNIT] {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", f, e));
            }
            _ => {}
        }
    }
    // Without nft there is no table to delete.
    if table_loaded() == Some(true) {
        let out = nft(&["delete", "table", "inet", TABLE])?;
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "nft could not delete table inet {TABLE}: {}; run `runnerx host network --remove` as root",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    println!("runnerx egress policy removed: builders reach whatever the host reaches");
    Ok(())
}

/// Whether the table is in the kernel: `None` when this user may not list nftables
/// (only root may), or nft is missing.
pub(crate) fn table_loaded() -> Option<bool> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .ok()?;
    if out.status.success() {
        return Some(true);
    }
    let why = String::from_utf8_lossy(&out.stderr);
    (why.contains("No such file") || why.contains("does not exist")).then_some(false)
}

/// Whether the policy in force matches the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Loaded since boot, for these settings.
    Current,
    /// Loaded, for other settings.
    Stale,
    /// Not loaded.
    Missing,
}

/// The state of the policy for `settings`, from the marker at `marker`.
pub(crate) fn status_at(settings: &Settings, marker: &Path) -> Status {
    match std::fs::read_to_string(marker) {
        Ok(d) if d.trim() == digest(&inputs(settings)) => Status::Current,
        Ok(_) => Status::Stale,
        Err(_) => Status::Missing,
    }
}

/// Prepare's check: with `network.egress = "policy"`, the host must have the policy
/// for these settings loaded; one line naming the fix otherwise.
pub(crate) fn check(settings: &Settings) -> Result<()> {
    check_at(settings, Path::new(MARKER))
}

pub(crate) fn check_at(settings: &Settings, marker: &Path) -> Result<()> {
    if settings.network.egress != Egress::Policy {
        return Ok(());
    }
    match status_at(settings, marker) {
        Status::Current => Ok(()),
        Status::Missing => Err(Error::Isolation(
            "network.egress = \"policy\" but this host has no runnerx egress policy loaded; run `runnerx host network` as root with these settings".into(),
        )),
        Status::Stale => Err(Error::Isolation(
            "network.egress = \"policy\" but the policy loaded on this host was made for other settings (registries, nodes, proxy, builder.host_loopback or [network] changed); run `runnerx host network` as root again".into(),
        )),
    }
}
