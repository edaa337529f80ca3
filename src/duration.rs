//! Human durations for settings and flags: `90`, `90s`, `5m`, `2h`, `1d`, `1h30m`.
//!
//! A bare number means seconds. Parsing is strict: an empty string, an unknown unit or
//! a value that overflows is an error, so a typo never turns into "zero".

use std::time::Duration;

/// Parses a duration like `1h30m`; the error says what was wrong.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. 30s, 5m, 2h or 1d".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("unknown unit {c:?} in {text:?}; use s, m, h or d")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("missing number before {c:?} in {text:?}"))?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    if !number.is_empty() {
        return Err(format!(
            "trailing number without unit in {text:?}; add s, m, h or d"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a measured duration for log lines: `840ms`, `3.21s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("5x").unwrap_err().contains("unknown unit"));
        assert!(parse("1h30").unwrap_err().contains("trailing number"));
        assert!(parse("h").unwrap_err().contains("missing number"));
        assert!(parse("99999999999999999999d").is_err());
    }

    #[test]
    fn human_formats() {
        assert_eq!(human(Duration::from_millis(840)), "840ms");
        assert_eq!(human(Duration::from_millis(3210)), "3.21s");
    }
}
