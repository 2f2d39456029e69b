//! Small text helpers shared by the renderers: bounding output excerpts and formatting values.

use std::borrow::Cow;

/// Shorten `text` to at most about `limit` bytes, keeping its head (a quarter) and its tail (the
/// rest, where failures usually show) around a marker saying how much was left out. Cuts fall on
/// UTF-8 character boundaries. Text within the limit is returned unchanged.
pub(crate) fn bounded(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    // The marker's length depends on the omitted count; its upper bound is good enough.
    let marker_room = 48;
    let keep = limit.saturating_sub(marker_room);
    let head_end = floor_char_boundary(text, keep / 4);
    let tail_start = ceil_char_boundary(text, text.len() - (keep - keep / 4));
    let tail_start = tail_start.max(head_end);
    let omitted = tail_start - head_end;
    Cow::Owned(format!(
        "{}\n[… {omitted} bytes omitted …]\n{}",
        &text[..head_end],
        &text[tail_start..]
    ))
}

/// Split a per-case output allowance between stdout and stderr: each gets half, and what one
/// does not need goes to the other. Returns the limits for (stdout, stderr).
pub(crate) fn split_allowance(stdout_len: usize, stderr_len: usize, cap: usize) -> (usize, usize) {
    let half = cap / 2;
    if stdout_len + stderr_len <= cap {
        (stdout_len, stderr_len)
    } else if stdout_len < half {
        (stdout_len, cap - stdout_len)
    } else if stderr_len < half {
        (cap - stderr_len, stderr_len)
    } else {
        (half, cap - half)
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// A duration for people: `850 ms`, `12.34 s`, `3 min 05 s`, `2 h 07 min`.
pub(crate) fn duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A metric value with its unit: `1234.5 ops/s`, `12 ms`, `3` (no unit).
pub(crate) fn metric_value(value: f64, unit: &str) -> String {
    if unit.is_empty() {
        format!("{value}")
    } else {
        format!("{value} {unit}")
    }
}

/// A number for people: integers as such, others to 6 significant digits without trailing
/// zeros (`1234.5`, `13921.4`, `0.000123457`).
pub(crate) fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == value.trunc() && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (5 - magnitude).clamp(0, 12) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_short_text_and_cuts_long_text_on_char_boundaries() {
        assert!(matches!(bounded("short", 100), Cow::Borrowed("short")));

        let text = format!("HEAD{}TAIL", "中".repeat(10_000));
        let cut = bounded(&text, 1_000);
        assert!(cut.len() <= 1_000, "{} bytes", cut.len());
        assert!(cut.starts_with("HEAD"));
        assert!(cut.ends_with("TAIL"));
        assert!(cut.contains("bytes omitted"));
    }

    #[test]
    fn allowance_gives_unused_half_to_the_other_stream() {
        assert_eq!(split_allowance(10, 20, 100), (10, 20));
        assert_eq!(split_allowance(10, 500, 100), (10, 90));
        assert_eq!(split_allowance(500, 10, 100), (90, 10));
        assert_eq!(split_allowance(500, 500, 100), (50, 50));
    }

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(number(1234.5), "1234.5");
        assert_eq!(number(97_450.0 / 7.0), "13921.4");
        assert_eq!(number(0.000123456789), "0.000123457");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(42.0), "42");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.34 s");
        assert_eq!(duration(185_000), "3 min 05 s");
        assert_eq!(duration(7_620_000), "2 h 07 min");
    }
}
