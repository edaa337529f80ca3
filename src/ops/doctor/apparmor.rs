//! `runnerx doctor`'s AppArmor checks: whether the engine applies AppArmor, whether
//! runnerx's builder profile is loaded, and Ubuntu's restriction on unprivileged
//! user namespaces, each with its fix.

use std::path::Path;

use super::Report;
use crate::host::apparmor::{self, State};

/// Reports AppArmor for an engine that does (`engine_apparmor`) or does not apply it.
pub(super) fn check(engine_apparmor: bool, r: &mut Report) {
    let restricted = apparmor::restricts_userns(Path::new("/proc"));
    match apparmor::host_state(engine_apparmor) {
        State::Off => r.ok(
            "apparmor",
            "the engine applies no AppArmor: builders run unconfined (seccomp and capabilities still apply)",
        ),
        State::Loaded => r.ok(
            "apparmor",
            format!(
                "builders run under {} ({}){}",
                apparmor::PROFILE,
                apparmor::PROFILE_PATH,
                if restricted {
                    "; it lets them create user namespaces despite kernel.apparmor_restrict_unprivileged_userns=1"
                } else {
                    ""
                }
            ),
        ),
        State::Missing => r.fail(
            "apparmor",
            format!(
                "the engine enforces AppArmor and the profile {} is not loaded: prepare refuses to start builders{}",
                apparmor::PROFILE,
                if restricted {
                    " (and kernel.apparmor_restrict_unprivileged_userns=1 would strip rootless builders of their capabilities)"
                } else {
                    ""
                }
            ),
            "run `runnerx host apparmor` once as root (needs apparmor_parser)",
        ),
    }
}
