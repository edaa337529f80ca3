//! QEMU binfmt_misc handlers for non-native platforms (pure).
//!
//! Registration is done from inside the builder: `builtin` writes the builder image's
//! `/usr/lib/binfmt.d/qemu-<arch>.conf` lines to `register` at boot, before dockerd
//! starts, so BuildKit sees the platforms at once (rootless builders: in their user
//! namespace's own binfmt_misc instance, Linux ≥ 6.7);
//! `image` runs the pinned tonistiigi/binfmt image in the inner dockerd. Either way,
//! prepare then checks from inside the builder that every needed handler is enabled
//! with the `F` (fix-binary) flag: without it emulation fails in containers that do not
//! contain the interpreter (`exec format error`).

use crate::settings::Platform;

/// The QEMU handler name for a GOARCH (`arm64` → `aarch64`).
pub(crate) fn qemu_name(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "riscv64" => "riscv64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// GOARCH of a kernel machine name (`uname -m`, engine `Architecture`).
pub(crate) fn goarch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" | "armv6l" => "arm",
        "i686" | "i386" => "386",
        other => other,
    }
}

/// Whether `arch` runs natively on a `native` host (amd64 also runs 386, arm64 runs arm
/// only on some CPUs, so only the former counts).
fn runs_natively(arch: &str, native: &str) -> bool {
    arch == native || (native == "amd64" && arch == "386")
}

/// QEMU handler names needed for `platforms` on a `native` host, deduplicated.
pub(crate) fn needed(platforms: &[Platform], native: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = platforms
        .iter()
        .filter(|p| !runs_natively(&p.arch, native))
        .filter_map(|p| qemu_name(&p.arch))
        .collect();
    out.dedup();
    out.sort_unstable();
    out.dedup();
    out
}

/// State of one handler as seen inside the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handler {
    /// Enabled with the F flag.
    Ok,
    /// Not registered.
    Missing,
    /// Registered but disabled.
    Disabled,
    /// Registered without the F flag.
    NoFixBinary,
}

/// Parses the output of `builder::binfmt_check_cmd`; a handler with no line counts as missing.
pub(crate) fn parse_check(names: &[&str], output: &str) -> Vec<(String, Handler)> {
    names
        .iter()
        .map(|n| {
            let state = output
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{n} ")))
                .map_or(Handler::Missing, |s| match s.trim() {
                    "ok" => Handler::Ok,
                    "disabled" => Handler::Disabled,
                    "nof" => Handler::NoFixBinary,
                    _ => Handler::Missing,
                });
            ((*n).to_string(), state)
        })
        .collect()
}

/// `image` mode: install the handlers with the pinned binfmt image in the inner dockerd.
pub(crate) fn install_cmd(image: &str, names: &[&str]) -> Vec<String> {
    // tonistiigi/binfmt takes GOARCH-ish names; qemu names map back.
    let arches: Vec<&str> = names
        .iter()
        .map(|n| match *n {
            "aarch64" => "arm64",
            "x86_64" => "amd64",
            "i386" => "386",
            "mips64el" => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        })
        .collect();
    vec![
        "docker".into(),
        "run".into(),
        "--privileged".into(),
        "--rm".into(),
        image.into(),
        "--install".into(),
        arches.join(","),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Platform;

    #[test]
    fn needed_handlers_skip_native_platforms() {
        let p: Vec<_> = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386"]
            .iter()
            .map(|s| s.parse::<Platform>().unwrap())
            .collect();
        assert_eq!(needed(&p, "amd64"), ["aarch64", "arm"]);
        assert_eq!(needed(&p, "arm64"), ["arm", "i386", "x86_64"]);
        assert_eq!(goarch("x86_64"), "amd64");
    }

    #[test]
    fn check_output_parses_every_state() {
        let names = ["aarch64", "arm", "riscv64", "s390x"];
        let got = parse_check(&names, "aarch64 ok\narm nof\nriscv64 disabled\n");
        assert_eq!(got[0].1, Handler::Ok);
        assert_eq!(got[1].1, Handler::NoFixBinary);
        assert_eq!(got[2].1, Handler::Disabled);
        assert_eq!(got[3].1, Handler::Missing);
    }

    #[test]
    fn image_mode_installs_goarch_names() {
        let cmd = install_cmd("tonistiigi/binfmt:qemu-v7.0.0-28", &["aarch64", "arm"]);
        assert_eq!(cmd.last().unwrap(), "arm64,arm");
        assert!(cmd.contains(&"--privileged".to_string()));
    }
}
