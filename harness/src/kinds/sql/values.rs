//! Query results as sqllogictest compares them: each value rendered by the column type the
//! record declares (as SQLite's original program does), results hashed as `N values hashing to
//! <md5>`, and the comparison that accepts both layouts (a row per line, or a value per line).
//!
//! Rendering by the declared type is what makes one file mean the same on every engine and
//! through every client: `I` an integer (a fraction is cut toward zero: `avg()` 0.5 is `0`;
//! `t`/`f` are 1/0), `R` three decimals (`1.500`), `T` the text; `NULL` for NULL and `(empty)`
//! for the empty string under any type.

use md5::Digest;
use serde_json::Value;
use sqllogictest::Normalizer;

/// The classic program's default hash threshold: results of more values are hashed.
pub const DEFAULT_HASH_THRESHOLD: u64 = 8;

/// One value as the record's column type `ty` (`I`, `R`, `T`, or `?`/none: as the engine wrote
/// it) shows it.
pub fn render(v: Value, ty: Option<char>) -> String {
    let text = match v {
        Value::Null => return "NULL".into(),
        Value::String(s) => s,
        Value::Bool(b) => return render(Value::String(if b { "1" } else { "0" }.into()), ty),
        other => other.to_string(),
    };
    match ty {
        Some('I') => integer(&text).to_string(),
        Some('R') => format!("{:.3}", real(&text)),
        _ if text.is_empty() => "(empty)".into(),
        _ => text,
    }
}

/// A text as an integer the way SQLite converts one: the number it starts with, a fraction cut
/// toward zero, 0 when it starts with none; booleans as 1 and 0.
fn integer(s: &str) -> i64 {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return i;
    }
    match t {
        "t" | "true" | "TRUE" => return 1,
        "f" | "false" | "FALSE" => return 0,
        _ => {}
    }
    let x = real(t);
    if x.is_nan() {
        0
    } else {
        // `as` saturates, as SQLite clamps out-of-range reals
        x.trunc() as i64
    }
}

/// A text as a real: the longest numeric prefix (`1.5e3x` is 1500), 0 when there is none;
/// booleans as 1 and 0.
fn real(s: &str) -> f64 {
    let t = s.trim();
    if let Ok(x) = t.parse::<f64>() {
        return x;
    }
    match t {
        "t" | "true" | "TRUE" => return 1.0,
        "f" | "false" | "FALSE" => return 0.0,
        _ => {}
    }
    let b = t.as_bytes();
    let mut end = 0;
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    let int = digits(&mut i);
    if int {
        end = i;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) || int {
            end = i;
        }
    }
    if end > 0 && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        if digits(&mut j) {
            end = j;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// `N values hashing to <md5>` over `values` in order (each followed by a newline), as the
/// classic program writes a result over its hash threshold.
pub fn hash_line<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    let mut md5 = md5::Md5::new();
    let mut n = 0usize;
    for v in values {
        md5.update(v.as_bytes());
        md5.update(b"\n");
        n += 1;
    }
    let digest = md5.finalize();
    let mut hex = String::with_capacity(32);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{n} values hashing to {hex}")
}

/// Is an expected block the one line `N values hashing to <md5>`?
pub fn is_hash_block(expected: &[String]) -> bool {
    let [line] = expected else { return false };
    let mut w = line.split_whitespace();
    matches!(
        (w.next(), w.next(), w.next(), w.next(), w.next(), w.next()),
        (Some(n), Some("values"), Some("hashing"), Some("to"), Some(h), None)
            if n.bytes().all(|c| c.is_ascii_digit())
                && h.len() == 32
                && h.bytes().all(|c| c.is_ascii_hexdigit())
    )
}

/// The crate's validator for sql cases: the result matches row by row (values of a row on one
/// line) or value by value (one value per line, as classic files list multi-column results).
pub fn validator(normalizer: Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    if sqllogictest::default_validator(normalizer, actual, expected) {
        return true;
    }
    let n: usize = actual.iter().map(Vec::len).sum();
    if n != expected.len() || actual.iter().all(|r| r.len() <= 1) {
        return false;
    }
    actual
        .iter()
        .flatten()
        .zip(expected)
        .all(|(a, e)| normalizer(a) == normalizer(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_render_by_the_declared_type() {
        let i = Some('I');
        let r = Some('R');
        let t = Some('T');
        assert_eq!(render(json!("0.5"), i), "0");
        assert_eq!(render(json!("0.5000000000000000"), i), "0");
        assert_eq!(render(json!(-1.7), i), "-1");
        assert_eq!(render(json!("42"), i), "42");
        assert_eq!(render(json!("t"), i), "1");
        assert_eq!(render(json!(true), i), "1");
        assert_eq!(render(json!("abc"), i), "0");
        assert_eq!(render(json!("12abc"), i), "12");
        assert_eq!(render(json!("1.5"), r), "1.500");
        assert_eq!(render(json!(1.5), r), "1.500");
        assert_eq!(render(json!("3"), r), "3.000");
        assert_eq!(render(json!("1.5000"), r), "1.500");
        assert_eq!(render(json!("-0.0625"), r), "-0.062");
        assert_eq!(render(json!("2e3x"), r), "2000.000");
        assert_eq!(render(json!("x"), r), "0.000");
        assert_eq!(render(json!("名字"), t), "名字");
        assert_eq!(render(json!(""), t), "(empty)");
        assert_eq!(render(json!(""), None), "(empty)");
        assert_eq!(render(Value::Null, i), "NULL");
        assert_eq!(render(Value::Null, r), "NULL");
        assert_eq!(render(json!(7), None), "7");
    }

    #[test]
    fn hashes_are_those_of_the_classic_program() {
        // md5 of "1\n2\n"
        let v = vec!["1".to_string(), "2".to_string()];
        assert_eq!(
            hash_line(&v),
            "2 values hashing to 6ddb4095eb719e2a9f0a3f95677d24e0"
        );
        assert!(is_hash_block(&[hash_line(&v)]));
        assert!(!is_hash_block(&["2 values hashing to xyz".into()]));
        assert!(!is_hash_block(&["1".into(), "2".into()]));
    }

    #[test]
    fn results_match_row_wise_or_value_wise() {
        let n: Normalizer = sqllogictest::default_normalizer;
        let rows = vec![
            vec!["1".to_string(), "2".into()],
            vec!["3".into(), "4".into()],
        ];
        assert!(validator(n, &rows, &["1 2".into(), "3 4".into()]));
        assert!(validator(
            n,
            &rows,
            &["1".into(), "2".into(), "3".into(), "4".into()]
        ));
        assert!(!validator(
            n,
            &rows,
            &["1".into(), "2".into(), "4".into(), "3".into()]
        ));
        assert!(!validator(n, &rows, &["1 2".into()]));
    }
}
