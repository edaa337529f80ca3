//! `runnerx doctor`'s QEMU handler check: where builders' handlers come from on this
//! host, and whether the host's are usable where builders need them.

use super::Report;
use crate::settings::Settings;

/// Where builders' QEMU handlers come from: a rootless builder's own namespace on
/// Linux ≥ 6.7, else (privileged builders, older kernels) the host's, which must be
/// registered with F (`runnerx host binfmt`), as prepare checks.
pub(super) fn check(settings: &Settings, facts: &crate::host::Facts, r: &mut Report) {
    use crate::settings::Isolation;
    let native = crate::host::binfmt::goarch(std::env::consts::ARCH);
    let needed = crate::host::binfmt::needed(&settings.builder.platforms, native);
    let privileged = settings.builder.isolation == Isolation::Privileged
        || (settings.builder.isolation == Isolation::Auto && facts.userns.is_err());
    if needed.is_empty() || (!privileged && facts.binfmt_per_userns) {
        r.ok(
            "binfmt",
            "each rootless builder registers its own QEMU handlers (Linux ≥ 6.7)",
        );
        return;
    }
    let whose = if privileged {
        "privileged builders share the host's user namespace and use the host's handlers"
    } else {
        "Linux < 6.7: rootless builders use the host's handlers"
    };
    let bad = crate::host::unusable_host_handlers(&needed);
    if bad.is_empty() {
        r.ok("binfmt", format!("{whose} (registered with F)"));
    } else {
        r.fail(
            "binfmt",
            format!("{whose}, and these are not usable: {}", bad.join(", ")),
            "run `runnerx host binfmt` once as root (needs qemu-user-static on the host)",
        );
    }
}
