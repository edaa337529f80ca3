//! `[cache]` (where a builder's /var/lib/docker lives) and `[binfmt]` (how QEMU
//! emulators are registered for non-native platforms).

use std::path::PathBuf;
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
    /// All cache volumes together, if bounded.
    pub total: Option<Budget>,
    /// Free space prepare insists on.
    pub min_free: Budget,
    /// Last-use records.
    pub state_dir: PathBuf,
}

/// A disk amount: bytes, or a share of the filesystem holding Docker's data root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Budget {
    /// Bytes.
    Bytes(u64),
    /// Percent of the filesystem's size.
    Percent(f64),
}

impl Budget {
    /// Bytes, given the filesystem's size.
    pub(crate) fn bytes(self, disk: u64) -> u64 {
        match self {
            Budget::Bytes(b) => b,
            Budget::Percent(p) => (disk as f64 * p / 100.0) as u64,
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Bytes(b) => write!(f, "{b} bytes"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

fn budget(text: &str) -> std::result::Result<Budget, values::Invalid> {
    match text.trim().strip_suffix('%') {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| *p > 0.0 && *p <= 100.0)
            .map(Budget::Percent)
            .ok_or_else(|| values::Invalid(format!("{text:?} is not a share such as \"40%\""))),
        None => values::size(text).map(Budget::Bytes),
    }
}

/// Where last-use records live by default.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/runnerx";

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
    let total = c
        .total
        .as_deref()
        .map(budget)
        .transpose()
        .map_err(|m| Error::Settings(format!("{}: {m}", key("total"))))?;
    let min_free = budget(c.min_free.as_deref().unwrap_or("10%"))
        .map_err(|m| Error::Settings(format!("{}: {m}", key("min_free"))))?;
    Ok(CacheSettings {
        mode: c.mode.unwrap_or(CacheMode::None),
        slots,
        max_age,
        max_size,
        total,
        min_free,
        state_dir: c
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
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
