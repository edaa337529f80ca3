//! AppArmor on the runner host: runnerx's own profile for builders, whether the host
//! enforces AppArmor and whether the profile is loaded, and `runnerx host apparmor`,
//! which installs it.
//!
//! Invariant: where the engine applies AppArmor, every builder runs under
//! [`PROFILE`] (never `unconfined`; Docker's own exception: a `--privileged`
//! container always runs unconfined); a host that enforces AppArmor without the
//! profile loaded gets one line naming `runnerx host apparmor`, before anything is
//! made. Rendering is pure and unit-tested; readers take the securityfs root.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The profile's name, as builders request it (`apparmor=runnerx-builder`).
pub(crate) const PROFILE: &str = "runnerx-builder";

/// Where `runnerx host apparmor` writes the profile; apparmor.service loads every
/// file there at boot, so the profile survives reboots.
pub(crate) const PROFILE_PATH: &str = "/etc/apparmor.d/runnerx-builder";

/// The profile's template (`@@ABI@@`, `@@USERNS@@` filled by [`render`]).
const TEMPLATE: &str = include_str!("runnerx-builder.apparmor");

/// AppArmor's securityfs directory.
const SECURITYFS: &str = "/sys/kernel/security/apparmor";

/// The profile text for a parser that knows AppArmor 4's rules (`userns,` and the
/// rest of abi 4.0) or only abi 3.0 (Debian 12, Ubuntu 22.04: no user namespace
/// mediation there, so no rule is needed).
pub(crate) fn render(abi4: bool) -> String {
    let (abi, userns) = if abi4 {
        (
            "abi <abi/4.0>,",
            "  # Ubuntu >= 23.10 lets only profiles with this rule create user namespaces\n  \
             # with capabilities (kernel.apparmor_restrict_unprivileged_userns=1):\n  \
             # RootlessKit makes the builder's. abi 4.0 also mediates these:\n  \
             userns,\n  mqueue,\n  io_uring,\n",
        )
    } else {
        ("abi <abi/3.0>,", "")
    };
    TEMPLATE
        .replace("@@ABI@@", abi)
        .replace("@@USERNS@@\n", userns)
}

/// What the host's AppArmor means for builders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// The engine applies no AppArmor (no LSM, or disabled): builders run unconfined.
    Off,
    /// Enforced, and runnerx's profile is loaded: builders run under it.
    Loaded,
    /// Enforced, and the profile is not loaded: builders cannot start confined.
    Missing,
}

/// The state for an engine that does (`engine_apparmor`: `name=apparmor` in its
/// security options) or does not apply AppArmor, read under `securityfs`.
pub(crate) fn state(engine_apparmor: bool, securityfs: &Path) -> State {
    if !engine_apparmor {
        return State::Off;
    }
    if loaded(securityfs) {
        State::Loaded
    } else {
        State::Missing
    }
}

/// The state on this host.
pub(crate) fn host_state(engine_apparmor: bool) -> State {
    state(engine_apparmor, Path::new(SECURITYFS))
}

/// Whether [`PROFILE`] is among the loaded profiles (`profiles` lists
/// `name (mode)` per line).
fn loaded(securityfs: &Path) -> bool {
    std::fs::read_to_string(securityfs.join("profiles")).is_ok_and(|list| {
        list.lines()
            .any(|l| l.split(" (").next() == Some(PROFILE) && !l.contains("(complain)"))
    })
}

/// Whether Ubuntu's restriction on unprivileged user namespaces is on.
pub(crate) fn restricts_userns(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("sys/kernel/apparmor_restrict_unprivileged_userns"))
        .is_ok_and(|v| v.trim() == "1")
}

/// The `--security-opt` value for builders, or the one-line failure of a host that
/// enforces AppArmor without runnerx's profile.
pub(crate) fn security_opt(state: &State) -> Result<String> {
    match state {
        State::Off => Ok("apparmor=unconfined".into()),
        State::Loaded => Ok(format!("apparmor={PROFILE}")),
        State::Missing => Err(Error::Isolation(format!(
            "this host enforces AppArmor and runnerx's builder profile {PROFILE} is not loaded; run `runnerx host apparmor` once on the runner host (as root)"
        ))),
    }
}

/// `runnerx host apparmor`: writes [`PROFILE_PATH`] and loads it with
/// `apparmor_parser -r` (replacing an older version; idempotent). `dry_run` prints
/// the profile and changes nothing.
pub(crate) fn install(dry_run: bool) -> Result<()> {
    let abi4 = Path::new("/etc/apparmor.d/abi/4.0").exists();
    let text = render(abi4);
    if dry_run {
        print!("{text}");
        return Ok(());
    }
    if !Path::new(SECURITYFS).exists() {
        return Err(Error::Usage(format!(
            "AppArmor is not enabled on this host ({SECURITYFS} is missing): builders run unconfined here and need no profile"
        )));
    }
    if std::fs::read_to_string(PROFILE_PATH).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(PROFILE_PATH, &text).map_err(|e| Error::io("write", PROFILE_PATH, e))?;
    }
    let out = Command::new("apparmor_parser")
        .args(["--replace", "--write-cache", PROFILE_PATH])
        .output()
        .map_err(|e| {
            Error::Usage(format!(
                "cannot run apparmor_parser ({e}); install it: apt-get install apparmor (Debian, Ubuntu) or dnf install apparmor-parser"
            ))
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        // /proc/self belongs to the effective uid.
        let root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").map_err(|e| Error::io("read", "/proc/self", e))?,
        ) == 0;
        let fix = if root {
            "this apparmor_parser does not accept the profile (`runnerx host apparmor --dry-run` prints it); please report it with `apparmor_parser --version`"
        } else {
            "run `runnerx host apparmor` as root"
        };
        return Err(Error::Usage(format!(
            "apparmor_parser refused {PROFILE_PATH}: {}; {fix}",
            why.trim().lines().last().unwrap_or("no message")
        )));
    }
    println!("{PROFILE}: loaded from {PROFILE_PATH} (kept across reboots)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_allows_user_namespaces_only_under_abi_4() {
        let v4 = render(true);
        assert!(v4.contains("abi <abi/4.0>,"));
        assert!(v4.contains("\n  userns,\n"));
        let v3 = render(false);
        assert!(v3.contains("abi <abi/3.0>,"));
        assert!(!v3.contains("userns,"), "{v3}");
        for text in [&v3, &v4] {
            assert!(!text.contains("@@"), "every placeholder is filled");
            assert!(text.contains("profile runnerx-builder "));
            assert!(text.contains("deny /run/runnerx-host-sysfs/** w,"));
        }
    }

    #[test]
    fn state_follows_the_engine_and_the_loaded_profiles() {
        let fs = tempfile::tempdir().unwrap();
        assert_eq!(state(false, fs.path()), State::Off);
        assert_eq!(state(true, fs.path()), State::Missing);
        std::fs::write(
            fs.path().join("profiles"),
            "docker-default (enforce)\nrunnerx-builder-old (enforce)\n",
        )
        .unwrap();
        assert_eq!(state(true, fs.path()), State::Missing);
        std::fs::write(
            fs.path().join("profiles"),
            "docker-default (enforce)\nrunnerx-builder (enforce)\n",
        )
        .unwrap();
        assert_eq!(state(true, fs.path()), State::Loaded);
        assert_eq!(
            security_opt(&State::Loaded).unwrap(),
            "apparmor=runnerx-builder"
        );
        assert_eq!(security_opt(&State::Off).unwrap(), "apparmor=unconfined");
        let e = security_opt(&State::Missing).unwrap_err().to_string();
        assert!(e.contains("runnerx host apparmor"), "{e}");
    }
}
