//! Value parsers shared by every settings section (and the command line): durations,
//! sizes, lists of choices. Each returns an error message naming what a good value
//! looks like; callers add the key and its origin.

use std::time::Duration;

pub(crate) use crate::error::Invalid;

/// Parses a duration: `90` (seconds), `90s`, `5m`, `2h`, `7d`, `1h30m`, `1h 30m`.
/// The units are humantime's; a bare number keeps meaning seconds.
pub(crate) fn duration(text: &str) -> Result<Duration, Invalid> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| {
        Invalid(format!(
            "{text:?} is not a duration such as \"30s\", \"5m\" or \"7d\" ({e})"
        ))
    })
}

/// Parses `20GB`, `512MB`, `1.5GiB`, or plain bytes.
pub(crate) fn size(text: &str) -> Result<u64, Invalid> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Invalid(format!("{text:?} is not a size such as \"20GB\"")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(Invalid(format!(
                "unknown size unit {other:?} in {text:?}; use MB, GB, MiB or GiB"
            )));
        }
    };
    Ok((n * mult) as u64)
}

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn either(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Serde's "unknown variant `x`, expected one of `a`, `b`" (or "expected `a` or `b`")
/// as `("x", ["a", "b"])`, so the message can be rewritten in runnerx's shape.
pub(crate) fn unknown_variant(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.split("unknown variant `").nth(1)?;
    let (value, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let names: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((value.to_string(), names))
}

/// Trims every entry and drops empty ones.
pub(crate) fn non_empty(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a host as written names the runner host's own loopback: `localhost`, an
/// address in `127.0.0.0/8`, or `::1` (brackets allowed).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_bare_seconds() {
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("2d").unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn bad_durations_say_what_a_good_one_is() {
        for bad in ["", "5x", "1h30", "h", "99999999999999999999d"] {
            let e = duration(bad).unwrap_err().0;
            assert!(e.contains("such as \"30s\""), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("500MB").unwrap(), 500_000_000);
        assert_eq!(size("1.5GiB").unwrap(), 1_610_612_736);
        assert!(size("lots").is_err());
        assert!(size("5XB").unwrap_err().0.contains("unknown size unit"));
    }

    #[test]
    fn serde_variant_errors_are_read_back() {
        let (v, names) =
            unknown_variant("unknown variant `chroot`, expected one of `rootless`, `auto`")
                .unwrap();
        assert_eq!(v, "chroot");
        assert_eq!(names, ["rootless", "auto"]);
        let (_, names) =
            unknown_variant("unknown variant `k8s`, expected `docker` or `dc`").unwrap();
        assert_eq!(
            either(&names.iter().map(String::as_str).collect::<Vec<_>>()),
            "docker or dc"
        );
        assert!(unknown_variant("invalid type: integer").is_none());
    }
}
