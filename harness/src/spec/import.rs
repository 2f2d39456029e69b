//! The `import` case kind as written in suites: an external suite (LTP, kselftest, pg_regress,
//! `prove`, pytest, a vendor's script) run on the target, whose TAP output or JUnit file is
//! turned into one case per test it reports.
//!
//! ```toml
//! import = { run = "prove -v --merge t/", format = "tap" }
//! import = { run = "python3 -m pytest --junitxml=out.xml", format = "junit", file = "out.xml" }
//! ```

/// What an external suite reports in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// TAP 13/14 on stdout (also `prove -v`'s per-file output, and kselftest's KTAP).
    Tap,
    /// A JUnit XML file the command writes on the target.
    Junit,
}

/// An `import` case.
#[derive(Debug, Clone)]
pub struct ImportAction {
    /// `/bin/sh -c` on the target, like a `run` case (the case's `env` and `cwd` apply).
    pub command: String,
    pub format: ImportFormat,
    /// JUnit: the file the command writes, relative to its working directory.
    pub file: Option<String>,
    /// The case's `env` and `cwd` (default: the combination's scratch directory).
    pub env: std::collections::BTreeMap<String, String>,
    pub cwd: Option<String>,
}

/// Parse an `import` table; the error names the offending key.
pub fn parse_import(v: &toml::Value) -> Result<ImportAction, (&'static str, String)> {
    let toml::Value::Table(t) = v else {
        return Err((
            "",
            "`import` is a table: `{ run = \"…\", format = \"tap\" }`".into(),
        ));
    };
    for k in t.keys() {
        if !matches!(k.as_str(), "run" | "format" | "file") {
            return Err((
                "",
                format!("unknown field `{k}` (expected `run`, `format`, `file`)"),
            ));
        }
    }
    let command = match t.get("run") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(toml::Value::String(_)) => return Err(("run", "the command is empty".into())),
        Some(_) => return Err(("run", "`run` must be a string".into())),
        None => {
            return Err((
                "run",
                "an import needs the command that runs the external suite: `run = \"…\"`".into(),
            ));
        }
    };
    let format = match t.get("format") {
        Some(toml::Value::String(s)) if s == "tap" => ImportFormat::Tap,
        Some(toml::Value::String(s)) if s == "junit" => ImportFormat::Junit,
        Some(toml::Value::String(s)) => {
            return Err((
                "format",
                format!("unknown format `{s}` (use `tap` or `junit`)"),
            ));
        }
        Some(_) => {
            return Err((
                "format",
                "`format` must be a string: `tap` or `junit`".into(),
            ));
        }
        None => {
            return Err((
                "format",
                "an import needs `format = \"tap\"` or `format = \"junit\"`".into(),
            ));
        }
    };
    let file = match t.get("file") {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(("file", "`file` must be a non-empty path".into())),
    };
    match (format, &file) {
        (ImportFormat::Junit, None) => {
            return Err((
                "file",
                "a JUnit import needs `file`: the XML file the command writes".into(),
            ));
        }
        (ImportFormat::Tap, Some(_)) => {
            return Err((
                "file",
                "a TAP import reads the command's standard output; `file` is for `junit`".into(),
            ));
        }
        _ => {}
    }
    Ok(ImportAction {
        command,
        format,
        file,
        env: Default::default(),
        cwd: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ImportAction, (&'static str, String)> {
        let v: toml::Table = toml::from_str(&format!("import = {s}")).unwrap();
        parse_import(&v["import"])
    }

    #[test]
    fn import_tables() {
        let a = parse(r#"{ run = "prove -v t/", format = "tap" }"#).unwrap();
        assert_eq!(
            (a.command.as_str(), a.format, a.file),
            ("prove -v t/", ImportFormat::Tap, None)
        );
        let j = parse(r#"{ run = "pytest", format = "junit", file = "out.xml" }"#).unwrap();
        assert_eq!(j.file.as_deref(), Some("out.xml"));
        assert_eq!(
            parse(r#"{ run = "x", format = "junit" }"#).unwrap_err().0,
            "file"
        );
        assert_eq!(
            parse(r#"{ run = "x", format = "tap", file = "f" }"#)
                .unwrap_err()
                .0,
            "file"
        );
        assert_eq!(
            parse(r#"{ run = "x", format = "xunit" }"#).unwrap_err().0,
            "format"
        );
        assert_eq!(parse(r#"{ format = "tap" }"#).unwrap_err().0, "run");
        assert!(
            parse(r#"{ run = "x", format = "tap", typo = 1 }"#)
                .unwrap_err()
                .1
                .contains("typo")
        );
        assert!(parse(r#""prove""#).is_err());
    }
}
