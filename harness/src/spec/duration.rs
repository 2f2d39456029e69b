//! Human durations in plan and suite files: `500ms`, `30s`, `5m`, `1h30m`.

use std::time::Duration;

/// Parse `500ms`, `30s`, `5m`, `2h`, or a sum such as `1m30s`. A bare number is refused: the
/// unit is part of what a reader needs to see.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (write e.g. `30s`, `500ms`, `5m`)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{t}` (write e.g. `30s`, `500ms`, `5m`)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{t}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => {
                return Err(format!(
                    "duration `{t}` has no unit (write e.g. `{n}s` or `{n}ms`)"
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{t}` (use ms, s, m, h)"
                ));
            }
        };
        total = total.saturating_add(d);
    }
    if total.is_zero() {
        return Err(format!("duration `{t}` must be greater than zero"));
    }
    Ok(total)
}

/// `1.2s`, `350ms`, `2m05s`: for messages.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["", "30", "s", "10x", "0s", "-5s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
