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
    /// Where relative paths resolve when not the file's own directory (a plan re-read from a
    /// run directory resolves against where the original plan was).
    pub base: Option<std::path::PathBuf>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
            base: None,
        }
    }

    /// The directory relative paths in this file are resolved against (the current directory
    /// for built-in files).
    pub fn base_dir(&self) -> std::path::PathBuf {
        if let Some(b) = &self.base {
            return b.clone();
        }
        if self.name.starts_with("builtin:") {
            return std::path::PathBuf::from(".");
        }
        std::path::Path::new(&self.name)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(
                || std::path::PathBuf::from("."),
                std::path::Path::to_path_buf,
            )
    }

    /// Read a file named relative to this one (built-in files from the embedded set).
    pub fn read_relative(&self, rel: &str) -> Result<String, String> {
        match self.name.strip_prefix("builtin:") {
            Some(name) => {
                let path = join_rel(name, rel);
                adaptest_suites::file(&path)
                    .map(str::to_string)
                    .ok_or_else(|| format!("no embedded file `{path}`"))
            }
            None => std::fs::read_to_string(self.base_dir().join(rel)).map_err(|e| e.to_string()),
        }
    }

    /// Files next to `rel_prefix` (relative to this file) whose name starts with it:
    /// (path relative to this file, contents).
    pub fn siblings_with_prefix(&self, rel_prefix: &str) -> Vec<(String, String)> {
        let (dir, stem) = match rel_prefix.rsplit_once('/') {
            Some((d, s)) => (format!("{d}/"), s.to_string()),
            None => (String::new(), rel_prefix.to_string()),
        };
        let mut out = Vec::new();
        match self.name.strip_prefix("builtin:") {
            Some(name) => {
                let full = join_rel(name, rel_prefix);
                let base_len = full.len() - rel_prefix.len();
                for (p, text) in adaptest_suites::FILES {
                    if p.starts_with(&full) && !p[full.len()..].contains('/') {
                        out.push((p[base_len..].to_string(), (*text).to_string()));
                    }
                }
            }
            None => {
                if let Ok(rd) = std::fs::read_dir(self.base_dir().join(&dir)) {
                    for e in rd.flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if n.starts_with(&stem)
                            && let Ok(text) = std::fs::read_to_string(e.path())
                        {
                            out.push((format!("{dir}{n}"), text));
                        }
                    }
                }
            }
        }
        out.sort();
        out
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

/// `db/sql-core.toml` + `sql/x.slt` → `db/sql/x.slt`.
fn join_rel(file: &str, rel: &str) -> String {
    match file.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{rel}"),
        None => rel.to_string(),
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

/// The error for a file that is not UTF-8: at the first bad byte, with its value.
pub fn invalid_utf8(name: String, bytes: &[u8]) -> SpecError {
    let at = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    // The lossy text is the valid prefix unchanged, so `at` is the same offset in it.
    let source = Source::new(name, String::from_utf8_lossy(bytes).into_owned());
    let field = field_at(&source.text, at);
    let field = if field.is_empty() {
        "(document)".to_string()
    } else {
        field
    };
    source
        .error(
            at..at + '\u{fffd}'.len_utf8(),
            &field,
            format!(
                "invalid UTF-8 (byte 0x{:02x}): plans and suites are UTF-8 text",
                bytes.get(at).copied().unwrap_or(0)
            ),
        )
        .with_help("convert the file, e.g. `iconv -f GB18030 -t UTF-8 FILE`")
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
