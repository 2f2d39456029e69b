//! User-facing diagnostics for plan and suite files: file, line, column, field, and a caret.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::ops::Range;
use std::sync::Arc;

/// A text the user wrote (a plan or suite file), kept for diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    /// As shown to the user: a path, or `builtin:os/basic.toml`.
    pub name: String,
    pub text: Arc<str>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// An error about `field` at `span` of this source.
    pub fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> SpecError {
        let (line, column) = self.line_col(span.start);
        let len = span.end.saturating_sub(span.start).max(1);
        let start = span.start.min(self.text.len());
        SpecError {
            file: self.name.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
            help: None,
            src: NamedSource::new(self.name.clone(), self.text.to_string()),
            span: SourceSpan::new(
                start.into(),
                len.min(self.text.len().saturating_sub(start).max(1)),
            ),
        }
    }
}

/// One problem in a plan or suite file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {field}: {message}")]
#[diagnostic(code(adaptest::invalid_input))]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field at fault, as a path (`case[3].expect.stdout_regex`).
    pub field: String,
    pub message: String,
    #[help]
    pub help: Option<String>,
    #[source_code]
    src: NamedSource<String>,
    #[label("{field}")]
    span: SourceSpan,
}

impl SpecError {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one or more files; validation reports them all at once.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} problem(s) in the input", errors.len())]
pub struct SpecErrors {
    #[related]
    pub errors: Vec<SpecError>,
}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors { errors: vec![e] }
    }
}

/// The dotted path of the key whose value starts at `offset`, from the TOML text itself:
/// the enclosing `[table]`/`[[array]]` header (with the array index) plus the key on that line.
pub fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    // Find the header above (or on) this line and count array-of-table occurrences.
    let mut header: Option<(String, bool)> = None;
    for l in text[..line_end].lines() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            header = Some((h.0.trim().to_string(), true));
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            header = Some((h.0.trim().to_string(), false));
        }
    }
    let table = match header {
        Some((name, true)) => {
            let count = text[..line_end]
                .lines()
                .filter(|l| {
                    l.trim()
                        .strip_prefix("[[")
                        .and_then(|r| r.split_once("]]"))
                        .is_some_and(|h| h.0.trim() == name)
                })
                .count();
            format!("{name}[{}]", count.saturating_sub(1))
        }
        Some((name, false)) => name,
        None => String::new(),
    };
    match (table.is_empty(), key) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
        (_, None) => table,
    }
}

/// Convert a TOML deserialization error into a [`SpecError`] pointing at the offending spot.
pub fn from_toml_error(source: &Source, err: &toml::de::Error) -> SpecError {
    let span = err.span().unwrap_or(0..0);
    let field = field_at(&source.text, span.start);
    let message = err.message().trim().to_string();
    let field = if field.is_empty() {
        "(document)".to_string()
    } else {
        field
    };
    source.error(span, &field, message)
}
