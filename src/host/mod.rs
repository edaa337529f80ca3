//! Facts about the runner host that decide how builders are isolated, read from
//! `/proc` by runnerx itself (it runs on the host, beside the engine).
//!
//! Owns: whether unprivileged user namespaces are allowed (Ubuntu's AppArmor
//! restriction on them is lifted by runnerx's profile: `apparmor.rs`), whether the kernel gives
//! each user namespace its own binfmt_misc (Linux ≥ 6.7), the host's own QEMU
//! handlers, and `runnerx host binfmt`, which registers them persistently for older
//! kernels. Parsing is pure and unit-tested; readers take the `/proc` root.

use std::path::{Path, PathBuf};

pub(crate) mod apparmor;
pub(crate) mod binfmt;
pub(crate) mod cache_use;
pub(crate) mod lock;
pub(crate) mod network;

use crate::error::{Error, Result};
use crate::host::binfmt::Handler;

/// What the host allows, as read from `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Kernel release (`6.18.44-…`).
    pub kernel: String,
    /// Unprivileged user namespaces can be created (rootless builders).
    pub userns: std::result::Result<(), String>,
    /// Every user namespace has its own binfmt_misc instance (Linux ≥ 6.7).
    pub binfmt_per_userns: bool,
}

/// `6.18.44-fc` → (6, 18).
pub(crate) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn read(proc_root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(proc_root.join(rel))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads the facts under `proc_root` (normally `/proc`).
pub(crate) fn facts(proc_root: &Path) -> Facts {
    let kernel = read(proc_root, "sys/kernel/osrelease").unwrap_or_default();
    let userns = if read(proc_root, "sys/user/max_user_namespaces").as_deref() == Some("0") {
        Err("user.max_user_namespaces is 0; set it above 0 (sysctl -w user.max_user_namespaces=15000)".into())
    } else if read(proc_root, "sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        Err(
            "kernel.unprivileged_userns_clone is 0; sysctl -w kernel.unprivileged_userns_clone=1"
                .into(),
        )
    } else if !proc_root.join("self/ns/user").exists() {
        Err("the kernel has no user namespaces (CONFIG_USER_NS)".into())
    } else {
        Ok(())
    };
    let binfmt_per_userns = kernel_version(&kernel).is_some_and(|v| v >= (6, 7));
    Facts {
        kernel,
        userns,
        binfmt_per_userns,
    }
}

/// States of the host's own QEMU handlers (`binfmt_misc` under `proc_root`).
pub(crate) fn host_handlers(proc_root: &Path, names: &[&str]) -> Vec<(String, Handler)> {
    names
        .iter()
        .map(|n| {
            let state = match read(proc_root, &format!("sys/fs/binfmt_misc/qemu-{n}")) {
                None => Handler::Missing,
                Some(s) if !s.starts_with("enabled") => Handler::Disabled,
                Some(s)
                    if !s
                        .lines()
                        .any(|l| l.starts_with("flags:") && l.contains('F')) =>
                {
                    Handler::NoFixBinary
                }
                Some(_) => Handler::Ok,
            };
            ((*n).to_string(), state)
        })
        .collect()
}

/// The host's handlers among `names` that rootless builders could not use (missing,
/// disabled or without F), as `qemu-<name> (<state>)`; empty when all are usable.
pub(crate) fn unusable_host_handlers(names: &[&str]) -> Vec<String> {
    host_handlers(Path::new("/proc"), names)
        .into_iter()
        .filter(|(_, s)| *s != Handler::Ok)
        .map(|(n, s)| format!("qemu-{n} ({s:?})"))
        .collect()
}

/// `pid:starttime` of a process from its `/proc/<pid>/stat` text: the start time (in
/// clock ticks since boot) tells a live process from a later one reusing its pid.
pub(crate) fn lease_from_stat(pid: u32, stat: &str) -> Option<String> {
    // Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid}:{start}"))
}

/// The lease a builder records at prepare: its parent process (gitlab-runner, which
/// spawns every stage, or the operator's shell for a manual prepare).
pub(crate) fn parent_lease() -> Option<String> {
    let ppid = std::os::unix::process::parent_id();
    let stat = std::fs::read_to_string(format!("/proc/{ppid}/stat")).ok()?;
    lease_from_stat(ppid, &stat)
}

/// gitlab-runner's binary on this host, for builders' stage scripts, and where it was
/// found: `builder.helper_binary`, else the process that runs runnerx (gitlab-runner
/// spawns every stage), else `gitlab-runner` on `path` (`$PATH`).
pub(crate) fn find_helper(
    setting: Option<&Path>,
    path: Option<&str>,
) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = setting {
        return Some((p.to_path_buf(), "builder.helper_binary"));
    }
    let ppid = std::os::unix::process::parent_id();
    if let Ok(exe) = std::fs::read_link(format!("/proc/{ppid}/exe"))
        && exe
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("gitlab-runner"))
        && exe.is_file()
    {
        return Some((exe, "the parent process"));
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("gitlab-runner"))
        .find(|p| p.is_file())
        .map(|p| (p, "$PATH"))
}

/// `n` random bytes from the kernel, hex-encoded.
pub(crate) fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if filled.is_err() {
        // Not security-relevant (names only): fall back to time and pid.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pid part of a lease, for messages.
pub(crate) fn lease_pid(lease: &str) -> &str {
    lease.split(':').next().unwrap_or("?")
}

/// Whether the process a lease names still runs (same pid, same start time).
pub(crate) fn lease_alive(lease: &str) -> bool {
    let Some(pid) = lease.split(':').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| lease_from_stat(pid, &stat))
        .is_some_and(|now| now == lease)
}

/// Where `runnerx host binfmt` keeps registrations across reboots (systemd-binfmt).
pub(crate) const BINFMT_D: &str = "/etc/binfmt.d";

/// The `register` line for `name` from a `qemu-<name>.conf` (qemu-user-static's
/// `/usr/lib/binfmt.d`), with the `F` flag added when missing.
pub(crate) fn register_line(conf: &str, name: &str) -> Option<String> {
    let line = conf
        .lines()
        .find(|l| l.starts_with(&format!(":qemu-{name}:")))?;
    let mut fields: Vec<String> = line.split(':').map(String::from).collect();
    // :name:type:offset:magic:mask:interpreter:flags
    let flags = fields.last_mut()?;
    if !flags.contains('F') {
        flags.push('F');
    }
    Some(fields.join(":"))
}

/// `runnerx host binfmt`: registers the QEMU handlers for `names` on the host with the
/// F flag (so they work from every container and namespace on kernels without
/// per-namespace binfmt_misc) and writes them to /etc/binfmt.d for the next boot.
/// Needs root and the host's qemu-user-static.
pub(crate) fn register_binfmt(names: &[&str], dry_run: bool) -> Result<()> {
    let proc_root = Path::new("/proc");
    if !dry_run && !proc_root.join("sys/fs/binfmt_misc/register").exists() {
        // Hosts without systemd's automount (containers, minimal installs).
        let _ = std::process::Command::new("mount")
            .args([
                "-t",
                "binfmt_misc",
                "binfmt_misc",
                "/proc/sys/fs/binfmt_misc",
            ])
            .status();
    }
    let states = host_handlers(proc_root, names);
    for (name, state) in states {
        if state == Handler::Ok {
            println!("qemu-{name}: already registered with F");
            continue;
        }
        let conf_path = format!("/usr/lib/binfmt.d/qemu-{name}.conf");
        let conf = std::fs::read_to_string(&conf_path).map_err(|e| {
            Error::Usage(format!(
                "cannot read {conf_path} ({e}); install the host's QEMU emulators: apt-get install qemu-user-static"
            ))
        })?;
        let line = register_line(&conf, &name)
            .ok_or_else(|| Error::Usage(format!("{conf_path} has no :qemu-{name}: line")))?;
        let persist = format!("{BINFMT_D}/runnerx-qemu-{name}.conf");
        if dry_run {
            println!("qemu-{name}: would register {line:?} and write {persist}");
            continue;
        }
        if state != Handler::Missing {
            // Disabled or without F: replace it.
            let entry = format!("/proc/sys/fs/binfmt_misc/qemu-{name}");
            std::fs::write(&entry, "-1").map_err(|e| Error::io("remove", entry, e))?;
        }
        let register = "/proc/sys/fs/binfmt_misc/register";
        std::fs::write(register, &line).map_err(|e| {
            Error::Usage(format!(
                "cannot register qemu-{name} in {register} ({e}); run as root, with binfmt_misc mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
            ))
        })?;
        std::fs::create_dir_all(BINFMT_D).map_err(|e| Error::io("create", BINFMT_D, e))?;
        std::fs::write(&persist, format!("{line}\n"))
            .map_err(|e| Error::io("write", &persist, e))?;
        println!("qemu-{name}: registered with F; kept in {persist}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        d
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0-105-generic"), Some((5, 15)));
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn facts_name_what_blocks_user_namespaces() {
        let ok = proc_with(&[
            ("sys/kernel/osrelease", "6.7.1\n"),
            ("sys/user/max_user_namespaces", "1000\n"),
            ("self/ns/user", ""),
        ]);
        let f = facts(ok.path());
        assert_eq!(f.userns, Ok(()));
        assert!(f.binfmt_per_userns);

        let old = proc_with(&[
            ("sys/kernel/osrelease", "6.6.30\n"),
            ("sys/user/max_user_namespaces", "0\n"),
            ("self/ns/user", ""),
        ]);
        let f = facts(old.path());
        assert!(!f.binfmt_per_userns);
        assert!(f.userns.unwrap_err().contains("max_user_namespaces"));

        let debian = proc_with(&[
            ("sys/kernel/osrelease", "5.10.0\n"),
            ("sys/kernel/unprivileged_userns_clone", "0\n"),
            ("self/ns/user", ""),
        ]);
        assert!(
            facts(debian.path())
                .userns
                .unwrap_err()
                .contains("unprivileged_userns_clone")
        );
    }

    #[test]
    fn host_handlers_read_flags() {
        let p = proc_with(&[
            (
                "sys/fs/binfmt_misc/qemu-aarch64",
                "enabled\ninterpreter /x\nflags: OCF\n",
            ),
            (
                "sys/fs/binfmt_misc/qemu-arm",
                "enabled\ninterpreter /x\nflags: OC\n",
            ),
            ("sys/fs/binfmt_misc/qemu-s390x", "disabled\nflags: F\n"),
        ]);
        let got = host_handlers(p.path(), &["aarch64", "arm", "s390x", "riscv64"]);
        assert_eq!(got[0].1, Handler::Ok);
        assert_eq!(got[1].1, Handler::NoFixBinary);
        assert_eq!(got[2].1, Handler::Disabled);
        assert_eq!(got[3].1, Handler::Missing);
    }

    #[test]
    fn leases_name_pid_and_start_time() {
        let stat = "4242 (gitlab (runner)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 12 0 987654 1234 56";
        assert_eq!(lease_from_stat(4242, stat).as_deref(), Some("4242:987654"));
        let me = std::process::id();
        let mine =
            lease_from_stat(me, &std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(lease_alive(&mine));
        let other_start = format!("{me}:1");
        assert!(
            !lease_alive(&other_start),
            "a reused pid is not the lease holder"
        );
        assert!(!lease_alive("garbage"));
    }

    #[test]
    fn register_lines_get_the_f_flag() {
        let conf = "# comment\n:qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OCP\n";
        assert_eq!(
            register_line(conf, "aarch64").unwrap(),
            ":qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OCPF"
        );
        let with_f = ":qemu-arm:M::a:b:/q:POF";
        assert_eq!(register_line(with_f, "arm").unwrap(), with_f);
        assert!(register_line(conf, "arm").is_none());
    }
}
