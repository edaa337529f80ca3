//! `runnerx doctor`'s egress check: whether the policy for these settings is loaded
//! on this host, and whether prepare insists on it.

use std::path::Path;

use super::Report;
use crate::host::network::install::{self, Status};
use crate::settings::{Egress, Settings};

/// Reports the egress policy in force for `settings`.
pub(super) fn check(settings: &Settings, r: &mut Report) {
    let status = install::status_at(settings, Path::new(install::MARKER));
    let asked = settings.network.egress == Egress::Policy;
    let fix = "run `runnerx host network` as root with these settings";
    if status != Status::Missing && install::table_loaded() == Some(false) {
        // e.g. nftables.service ran `flush ruleset` since (the unit reloads with it).
        return r.fail(
            "egress policy",
            format!(
                "{} says it is loaded, but table inet runnerx is gone",
                install::MARKER
            ),
            fix,
        );
    }
    match (status, asked) {
        (Status::Current, _) => r.ok(
            "egress policy",
            format!(
                "loaded for these settings ({}): jobs reach neither this host's addresses nor link-local ones{}",
                install::RULES,
                if asked { "" } else { " (network.egress = \"open\": prepare does not insist on it)" }
            ),
        ),
        (Status::Stale, true) => r.fail(
            "egress policy",
            "loaded for other settings: prepare refuses to start builders",
            fix,
        ),
        (Status::Missing, true) => r.fail(
            "egress policy",
            "not loaded (network.egress = \"policy\", the default): prepare refuses to start builders",
            fix,
        ),
        (Status::Stale, false) => r.note(
            "egress policy",
            "loaded for other settings (registries, nodes, proxy or [network] changed): run `runnerx host network` again",
        ),
        (Status::Missing, false) => r.note(
            "egress policy",
            "none (network.egress = \"open\", an opt-out): jobs can reach this host's services and link-local addresses such as a cloud metadata service; remove it (the default is \"policy\") and run `runnerx host network`",
        ),
    }
}
