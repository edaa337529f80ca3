//! prepare's emulation steps: the host's QEMU handlers where a builder uses them
//! (checked before anything is made), and the handlers a rootless builder on
//! Linux ≥ 6.7 registers in its own user namespace (checked after boot).

use tokio_util::sync::CancellationToken;

use crate::builder;
use crate::builder::engine::Engine;
use crate::error::{Error, Result};
use crate::host;
use crate::host::binfmt::{self, Handler};
use crate::settings::{BinfmtMode, Settings};

/// A builder that uses the host's QEMU handlers needs them there, with F: checked
/// before anything is made, one line naming `runnerx host binfmt`. A rootless one
/// uses them only on kernels without binfmt_misc per user namespace.
pub(super) fn check_host_handlers(
    settings: &Settings,
    needed: &[&str],
    rootless: bool,
) -> Result<()> {
    if needed.is_empty() || settings.binfmt.mode == BinfmtMode::None {
        return Ok(());
    }
    let bad = host::unusable_host_handlers(needed);
    if bad.is_empty() {
        return Ok(());
    }
    let why = if rootless {
        "this kernel has no binfmt_misc per user namespace (Linux < 6.7)"
    } else {
        "privileged builders share the host's user namespace"
    };
    Err(Error::Emulation(format!(
        "{why}, so this builder uses the host's QEMU handlers, and these are not usable: {}; run `runnerx host binfmt` on the runner host once (as root)",
        bad.join(", ")
    )))
}

/// Registers (image mode) and checks, in the builder's own namespace, the QEMU
/// handlers every non-native platform needs.
pub(super) async fn setup_platforms(
    settings: &Settings,
    engine: &Engine,
    name: &str,
    native: &str,
    needed: &[&str],
    cancel: &CancellationToken,
) -> Result<()> {
    let mode = settings.binfmt.mode;
    if needed.is_empty() {
        return Ok(());
    }
    if mode == BinfmtMode::None {
        tracing::info!(
            "binfmt.mode = \"none\": not registering or checking qemu-{}",
            needed.join(", qemu-")
        );
        return Ok(());
    }
    let check = || async {
        let (_, out) = engine
            .exec_capture(name, builder::binfmt_check_cmd(needed))
            .await?;
        Ok::<_, Error>(binfmt::parse_check(needed, &out))
    };
    let mut states = check().await?;
    let missing = states.iter().any(|(_, s)| *s == Handler::Missing);
    if missing && matches!(mode, BinfmtMode::Image | BinfmtMode::Auto) {
        let image = &settings.binfmt.image;
        tracing::info!("registering qemu-{} with {image}", needed.join(", qemu-"));
        let installed = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled("signal")),
            r = engine.exec_capture(name, builder::user_cmd(binfmt::install_cmd(image, needed))) => r?,
        };
        if installed.0 != 0 {
            let last = builder::last_line(&installed.1);
            return Err(Error::Emulation(format!(
                "binfmt image {image} failed in the builder ({last}); mirror it into a reachable registry and set binfmt.image, or use a builder image with qemu-user-static and binfmt.mode = \"builtin\""
            )));
        }
        states = check().await?;
    }
    let platform_of = |qemu: &str| {
        settings
            .builder
            .platforms
            .iter()
            .find(|p| binfmt::qemu_name(&p.arch) == Some(qemu))
            .map_or_else(|| qemu.to_string(), ToString::to_string)
    };
    for (qemu, state) in &states {
        let p = platform_of(qemu);
        let problem = match state {
            Handler::Ok => continue,
            Handler::Missing => format!(
                "qemu-{qemu} is not registered in the builder ({}); use a builder image with qemu-user-static (/usr/lib/binfmt.d/qemu-{qemu}.conf) or set binfmt.mode = \"image\"",
                match mode {
                    BinfmtMode::Builtin =>
                        "binfmt.mode = \"builtin\" found no handler in the image",
                    _ => "neither the image's handlers nor the binfmt image registered it",
                }
            ),
            Handler::Disabled => format!(
                "qemu-{qemu} is registered but disabled; enable it on the host: echo 1 > /proc/sys/fs/binfmt_misc/qemu-{qemu}"
            ),
            Handler::NoFixBinary => format!(
                "qemu-{qemu} is registered without the F (fix-binary) flag, so RUN steps fail with `exec format error`; remove it on the host (echo -1 > /proc/sys/fs/binfmt_misc/qemu-{qemu}) and runnerx registers it with F"
            ),
        };
        return Err(Error::Emulation(format!(
            "platform {p} (non-native on {native}) has no working emulator: {problem}"
        )));
    }
    Ok(())
}
