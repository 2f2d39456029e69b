//! The classic sqllogictest dialect (the format of SQLite's original program) in front of the
//! `sqllogictest` crate's parser: a line-for-line normalising pass, so every line the crate
//! reports is the file's own.
//!
//! What it changes, without adding or removing a line:
//! - a trailing `# comment` on an `onlyif`, `skipif`, `halt` or `hash-threshold` line is cut off
//!   (the crate reads the comment as more arguments);
//! - a `halt` under `onlyif`/`skipif` lines is taken out (the halt and its condition lines become
//!   comments) and returned as a [`ConditionalHalt`]: the crate's `halt` has no conditions, so it
//!   would stop every engine, and the conditions would fall onto the next record.

use sqllogictest::Condition;
use std::borrow::Cow;

/// A `halt` with `onlyif`/`skipif` lines above it: it stops the script only where every
/// condition holds, before the first record after `line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalHalt {
    /// 1-based line of the `halt`.
    pub line: u32,
    pub conditions: Vec<Condition>,
}

/// The script as the crate is to read it (borrowed when nothing changed, as for most files),
/// and the halts taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised<'a> {
    pub text: Cow<'a, str>,
    pub halts: Vec<ConditionalHalt>,
}

/// Normalise a classic script (see the module's documentation). The text has exactly the lines
/// of `script`.
pub fn normalise(script: &str) -> Normalised<'_> {
    let mut lines: Vec<Cow<'_, str>> = Vec::new();
    let mut changed = false;
    let mut halts = Vec::new();
    // Condition lines seen since the last record, by index into `lines`.
    let mut pending: Vec<(usize, Condition)> = Vec::new();
    // Inside a record's SQL or results (up to the next empty line): nothing is a control line.
    let mut in_body = false;
    for (i, raw) in script.lines().enumerate() {
        if in_body {
            if raw.is_empty() {
                in_body = false;
            }
            lines.push(Cow::Borrowed(raw));
            continue;
        }
        if raw.starts_with('#') || raw.trim().is_empty() {
            lines.push(Cow::Borrowed(raw));
            continue;
        }
        let first = raw.split_whitespace().next().unwrap_or("");
        match first {
            "onlyif" | "skipif" | "halt" | "hash-threshold" => {
                let line = strip_comment(raw);
                let mut tokens = line.split_whitespace();
                let _ = tokens.next();
                match (first, tokens.next(), tokens.next()) {
                    ("onlyif", Some(label), None) => pending.push((
                        lines.len(),
                        Condition::OnlyIf {
                            label: label.to_string(),
                        },
                    )),
                    ("skipif", Some(label), None) => pending.push((
                        lines.len(),
                        Condition::SkipIf {
                            label: label.to_string(),
                        },
                    )),
                    ("halt", None, None) if !pending.is_empty() => {
                        let mut conditions = Vec::new();
                        changed = true;
                        for (at, c) in pending.drain(..) {
                            lines[at] = Cow::Owned(format!("# {}", lines[at]));
                            conditions.push(c);
                        }
                        halts.push(ConditionalHalt {
                            line: i as u32 + 1,
                            conditions,
                        });
                        lines.push(Cow::Owned(format!("# {line}")));
                        continue;
                    }
                    _ => pending.clear(),
                }
                changed |= line.len() != raw.len();
                lines.push(Cow::Borrowed(line));
            }
            _ => {
                pending.clear();
                in_body = matches!(first, "statement" | "query" | "let" | "system");
                lines.push(Cow::Borrowed(raw));
            }
        }
    }
    if !changed {
        return Normalised {
            text: Cow::Borrowed(script),
            halts,
        };
    }
    let mut text = lines.join("\n");
    if script.ends_with('\n') {
        text.push('\n');
    }
    Normalised {
        text: text.into(),
        halts,
    }
}

/// A control line without its trailing `# comment` (a `#` after white space).
fn strip_comment(line: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return line[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    line.trim_end()
}

/// Does a record under `conditions` run on a component with `labels`?
pub fn applies(conditions: &[Condition], labels: &[String]) -> bool {
    conditions.iter().all(|c| match c {
        Condition::OnlyIf { label } => labels.iter().any(|l| l == label),
        Condition::SkipIf { label } => !labels.iter().any(|l| l == label),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_on_control_lines_are_cut_and_lines_kept() {
        let s = "onlyif mysql # only there\nstatement ok\nselect 1 # not a comment\n\nhash-threshold 8 # classic\nhalt # stop\n";
        let n = normalise(s);
        assert_eq!(
            n.text,
            "onlyif mysql\nstatement ok\nselect 1 # not a comment\n\nhash-threshold 8\nhalt\n"
        );
        assert!(n.halts.is_empty());
        assert_eq!(n.text.lines().count(), s.lines().count());
    }

    #[test]
    fn a_conditional_halt_is_taken_out_with_its_conditions() {
        let s = "statement ok\nx\n\nonlyif mssql # no\nskipif sqlite\nhalt\n\nstatement ok\ny\n";
        let n = normalise(s);
        assert_eq!(
            n.text,
            "statement ok\nx\n\n# onlyif mssql\n# skipif sqlite\n# halt\n\nstatement ok\ny\n"
        );
        assert_eq!(
            n.halts,
            [ConditionalHalt {
                line: 6,
                conditions: vec![
                    Condition::OnlyIf {
                        label: "mssql".into()
                    },
                    Condition::SkipIf {
                        label: "sqlite".into()
                    }
                ],
            }]
        );
    }

    #[test]
    fn record_bodies_are_left_alone() {
        let s = "query T\nselect 'halt'\n----\nhalt\nonlyif x # y\n\nhalt\n";
        let n = normalise(s);
        assert_eq!(n.text, s);
        assert!(n.halts.is_empty());
    }

    #[test]
    fn conditions_hold_by_label() {
        let labels = vec!["postgres".to_string(), "postgresql".into()];
        let only = |l: &str| Condition::OnlyIf { label: l.into() };
        let skip = |l: &str| Condition::SkipIf { label: l.into() };
        assert!(applies(&[only("postgresql")], &labels));
        assert!(!applies(&[only("mssql")], &labels));
        assert!(!applies(&[skip("postgresql")], &labels));
        assert!(applies(&[skip("mysql"), only("postgres")], &labels));
    }
}
