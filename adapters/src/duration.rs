//! The one duration grammar of adaptest (`500ms`, `30s`, `5m`, `1h30m`): plans, suites, step
//! arguments and plugin options all parse with [`parse_duration`], so they agree on what they
//! accept. Lives here because every crate that reads durations depends on this one.

use std::time::Duration;

/// The longest duration accepted: far beyond any sensible timeout, and small enough that adding
/// it to an `Instant` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a duration was refused. Messages name the text and show the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("empty duration (write e.g. `30s`, `500ms`, `5m`)")]
    Empty,
    #[error("invalid duration `{0}` (write e.g. `30s`, `500ms`, `5m`)")]
    Invalid(String),
    #[error("duration `{text}` has no unit (write e.g. `{number}s` or `{number}ms`)")]
    NoUnit { text: String, number: u64 },
    #[error("unknown unit `{unit}` in duration `{text}` (use ms, s, m, h)")]
    UnknownUnit { text: String, unit: String },
    #[error("duration `{0}` is too long (at most 8784h, a year)")]
    TooLong(String),
    #[error("duration `{0}` must be greater than zero")]
    Zero(String),
}

/// Parse `500ms`, `30s`, `5m`, `2h`, or a sum such as `1m30s`. A bare number is refused: the
/// unit is part of what a reader needs to see. Arithmetic is checked: a huge number is an
/// error, never an overflow.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong(t.to_string());
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Invalid(t.to_string()));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs_per = match unit {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "" => {
                return Err(DurationError::NoUnit {
                    text: t.to_string(),
                    number: n,
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    text: t.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        let d = match secs_per {
            None => Duration::from_millis(n),
            Some(k) => Duration::from_secs(n.checked_mul(k).ok_or_else(too_long)?),
        };
        total = total.checked_add(d).ok_or_else(too_long)?;
        if total > MAX_DURATION {
            return Err(too_long());
        }
    }
    if total.is_zero() {
        return Err(DurationError::Zero(t.to_string()));
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

    #[test]
    fn huge_numbers_are_errors_not_overflows() {
        for huge in [
            "307445734561825861m",
            "99999999999999999999s",
            "5124095576030431h",
            "18446744073709551615ms18446744073709551615ms",
            "9000h",
        ] {
            assert_eq!(
                parse_duration(huge),
                Err(DurationError::TooLong(huge.into())),
                "{huge}"
            );
        }
        assert!(parse_duration("8784h").is_ok());
    }
}
