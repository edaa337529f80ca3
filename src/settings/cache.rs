//! `[cache]` (where a builder's /var/lib/docker lives) and `[binfmt]` (how QEMU
//! emulators are registered for non-native platforms).

use std::time::Duration;

use super::builder::{has_tag_or_digest, validate_image};
pub(crate) use super::choices::{BinfmtMode, CacheMode};
use super::raw::{Origins, RawBinfmt, RawCache};
use super::values;
use crate::error::{Error, Result};

/// `[cache]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    /// Mode.
    pub mode: CacheMode,
    /// Volumes per project.
    pub slots: u32,
    /// Maximum age of a cache volume.
    pub max_age: Duration,
    /// Size above which gc drops an unused cache volume (bytes).
    pub max_size: u64,
}

/// `[binfmt]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct BinfmtSettings {
    /// Mode.
    pub mode: BinfmtMode,
    /// Image for `image` mode.
    pub image: String,
}

/// Default pin: a known-good tag (QEMU releases have broken emulated builds before;
/// see docs/background.md#qemu-pinning).
pub(crate) const DEFAULT_BINFMT_IMAGE: &str = "tonistiigi/binfmt:qemu-v7.0.0-28";

/// Validates `[cache]`.
pub(crate) fn validate_cache(c: RawCache, origins: &Origins) -> Result<CacheSettings> {
    let key = |k: &str| origins.of("cache", k);
    let slots = c.slots.unwrap_or(4);
    if slots == 0 || slots > 64 {
        return Err(Error::Settings(format!(
            "{} = {slots} must be 1 to 64",
            key("slots")
        )));
    }
    let max_age = values::duration(c.max_age.as_deref().unwrap_or("7d"))
        .map_err(|m| Error::Settings(format!("{}: {m}", key("max_age"))))?;
    let max_size = values::size(c.max_size.as_deref().unwrap_or("20GB"))
        .map_err(|m| Error::Settings(format!("{}: {m}", key("max_size"))))?;
    Ok(CacheSettings {
        mode: c.mode.unwrap_or(CacheMode::None),
        slots,
        max_age,
        max_size,
    })
}

/// Validates `[binfmt]`: the image must be pinned.
pub(crate) fn validate_binfmt(b: RawBinfmt, origins: &Origins) -> Result<BinfmtSettings> {
    let key = || origins.of("binfmt", "image");
    let image = b.image.unwrap_or_else(|| DEFAULT_BINFMT_IMAGE.into());
    validate_image(&image).map_err(|m| Error::Settings(format!("{} {m}", key())))?;
    if image.ends_with(":latest") || !has_tag_or_digest(&image) {
        return Err(Error::Settings(format!(
            "{} = {image:?} is not pinned; QEMU regressions break builds: use a fixed tag such as {DEFAULT_BINFMT_IMAGE}",
            key()
        )));
    }
    Ok(BinfmtSettings {
        mode: b.mode.unwrap_or(BinfmtMode::Auto),
        image,
    })
}
