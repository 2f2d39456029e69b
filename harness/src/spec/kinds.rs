//! The component case kinds as written in suites: `sql` (a sqllogictest file), `steps`
//! (protocol-neutral operations) and `bench` (one operation, measured).

use super::diag::Source;
use super::duration::parse_duration;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A `sql = "file.slt"` case: the script, plus per-engine variants `file.<engine>.slt` found
/// beside it (as pg_regress's resultmap does for dialects that print differently).
#[derive(Debug, Clone)]
pub struct SqlAction {
    /// As written, relative to the suite file.
    pub file: String,
    pub script: String,
    /// engine (component kind) → script
    pub variants: BTreeMap<String, String>,
    /// Results of more values than this are shown hashed in failures (`hash_threshold`, the
    /// classic program's 8 unless the suite or case says otherwise; 0: never).
    pub hash_threshold: u64,
}

impl SqlAction {
    /// The script for `engine` and the name to report it under.
    pub fn for_engine(&self, engine: &str) -> (String, &str) {
        self.for_labels(&[engine])
    }

    /// The script of the first label with a variant (a component's labels run from its kind to
    /// its dialect: `mariadb`, `mysql`, `driver`), else the base script; and its name.
    pub fn for_labels<S: AsRef<str>>(&self, labels: &[S]) -> (String, &str) {
        labels
            .iter()
            .find_map(|l| {
                let l = l.as_ref();
                self.variants
                    .get(l)
                    .map(|s| (variant_name(&self.file, l), s.as_str()))
            })
            .unwrap_or_else(|| (self.file.clone(), &self.script))
    }
}

fn variant_name(file: &str, engine: &str) -> String {
    match file.strip_suffix(".slt") {
        Some(stem) => format!("{stem}.{engine}.slt"),
        None => format!("{file}.{engine}"),
    }
}

/// One step of a `steps` case.
#[derive(Debug, Clone)]
pub struct Step {
    /// `kv.set`, `sql.query`, … or one the engine handles itself: `sleep`, `shell`,
    /// `component.restart`.
    pub op: String,
    pub args: Map<String, Value>,
    /// Named connection (default `a`): two names give two sessions.
    pub session: String,
    /// Subset match against the result.
    pub expect: Option<Value>,
    /// Text the result must contain.
    pub expect_contains: Option<String>,
    /// The operation must fail with a message containing this.
    pub expect_error: Option<String>,
}

/// A `bench` case.
#[derive(Debug, Clone)]
pub struct BenchAction {
    pub op: String,
    pub args: Map<String, Value>,
    /// Stop after this many operations …
    pub ops: Option<u64>,
    /// … or after this long (whichever comes first when both are given).
    pub duration: Option<Duration>,
    pub concurrency: u32,
    /// Operations run before measuring (not counted).
    pub warmup: u64,
    pub min_ops_per_sec: Option<f64>,
    pub max_p50_ms: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn op_name(t: &toml::Table) -> Result<String, (&'static str, String)> {
    match t.get("op") {
        Some(toml::Value::String(s)) if valid_op(s) => Ok(s.clone()),
        Some(toml::Value::String(s)) => Err((
            "op",
            format!("`{s}` is not an operation name (e.g. `kv.set`, `sql.query`)"),
        )),
        Some(_) => Err(("op", "`op` must be a string".into())),
        None => Err(("op", "every step needs an `op`".into())),
    }
}

fn valid_op(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

fn opt_string(
    t: &toml::Table,
    key: &'static str,
) -> Result<Option<String>, (&'static str, String)> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err((key, format!("`{key}` must be a string"))),
    }
}

/// Operations the engine runs itself rather than a component.
pub const ENGINE_OPERATIONS: &[&str] = &["sleep", "shell", "component.restart"];

/// Refuse an operation that exists nowhere: neither the engine's nor one of a built-in
/// namespace (a plugin's own namespaces cannot be known before it runs).
fn check_known_op(op: &str) -> Result<(), (&'static str, String)> {
    if ENGINE_OPERATIONS.contains(&op) {
        return Ok(());
    }
    if !op.contains('.') {
        return Err((
            "op",
            format!(
                "unknown operation `{op}`: the engine's are {}; others are `capability.operation` (e.g. `kv.set`)",
                ENGINE_OPERATIONS.join(", ")
            ),
        ));
    }
    match adaptest_adapters::component::ops::unknown_builtin(op) {
        Some(known) => Err((
            "op",
            format!("unknown operation `{op}`; known: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The arguments of the engine's own operations, checked before anything runs.
fn check_engine_args(op: &str, t: &toml::Table) -> Result<(), (&'static str, String)> {
    match op {
        "sleep" => match t.get("duration") {
            Some(toml::Value::String(d)) => parse_duration(d)
                .map(|_| ())
                .map_err(|e| ("duration", e.to_string())),
            Some(_) => Err((
                "duration",
                "`duration` must be a string such as \"200ms\"".into(),
            )),
            None => Err((
                "duration",
                "`sleep` needs a `duration` (e.g. \"200ms\")".into(),
            )),
        },
        "shell" => {
            match t.get("pass_env") {
                None => {}
                Some(toml::Value::Array(a)) if a.iter().all(toml::Value::is_str) => {}
                Some(_) => {
                    return Err((
                        "pass_env",
                        "`pass_env` must be a list of variable names".into(),
                    ));
                }
            }
            match t.get("run") {
                Some(toml::Value::String(_)) => Ok(()),
                Some(_) => Err(("run", "`run` must be a string (a shell command)".into())),
                None => Err(("run", "`shell` needs `run` (a shell command)".into())),
            }
        }
        _ => Ok(()),
    }
}

/// Parse one step table; the error names the offending key.
pub fn parse_step(t: &toml::Table) -> Result<Step, (&'static str, String)> {
    let op = op_name(t)?;
    check_known_op(&op)?;
    check_engine_args(&op, t)?;
    let session = opt_string(t, "session")?.unwrap_or_else(|| "a".into());
    let expect_contains = opt_string(t, "expect_contains")?;
    let expect_error = opt_string(t, "expect_error")?;
    let expect = t.get("expect").map(to_json);
    if expect_error.is_some() && (expect.is_some() || expect_contains.is_some()) {
        return Err((
            "expect_error",
            "`expect_error` cannot be combined with `expect`/`expect_contains`".into(),
        ));
    }
    let mut args = Map::new();
    for (k, v) in t {
        if matches!(
            k.as_str(),
            "op" | "session" | "expect" | "expect_contains" | "expect_error"
        ) {
            continue;
        }
        if k.starts_with("expect") {
            return Err((
                "expect",
                format!("unknown expectation `{k}` (use expect, expect_contains, expect_error)"),
            ));
        }
        args.insert(k.clone(), to_json(v));
    }
    Ok(Step {
        op,
        args,
        session,
        expect,
        expect_contains,
        expect_error,
    })
}

/// Parse a `bench` table; the error names the offending key.
pub fn parse_bench(t: &toml::Table) -> Result<BenchAction, (&'static str, String)> {
    let op = op_name(t)?;
    check_known_op(&op)?;
    let uint = |key: &'static str| -> Result<Option<u64>, (&'static str, String)> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i > 0 => Ok(Some(*i as u64)),
            Some(_) => Err((key, format!("`{key}` must be a positive integer"))),
        }
    };
    let float = |key: &'static str| -> Result<Option<f64>, (&'static str, String)> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as f64)),
            Some(toml::Value::Float(f)) if *f >= 0.0 => Ok(Some(*f)),
            Some(_) => Err((key, format!("`{key}` must be a non-negative number"))),
        }
    };
    let ops = uint("ops")?;
    let duration = match opt_string(t, "duration")? {
        Some(d) => Some(parse_duration(&d).map_err(|e| ("duration", e.to_string()))?),
        None => None,
    };
    if ops.is_none() && duration.is_none() {
        return Err((
            "ops",
            "a bench needs `ops` (a count) or `duration` (e.g. \"10s\")".into(),
        ));
    }
    let concurrency = uint("concurrency")?.unwrap_or(1);
    if concurrency > 1024 {
        return Err(("concurrency", "`concurrency` is at most 1024".into()));
    }
    let mut args = Map::new();
    for (k, v) in t {
        if !matches!(
            k.as_str(),
            "op" | "ops"
                | "duration"
                | "concurrency"
                | "warmup"
                | "min_ops_per_sec"
                | "max_p50_ms"
                | "max_p99_ms"
        ) {
            args.insert(k.clone(), to_json(v));
        }
    }
    Ok(BenchAction {
        op,
        args,
        ops,
        duration,
        concurrency: concurrency as u32,
        warmup: t
            .get("warmup")
            .map_or(Ok(None), |_| uint("warmup"))?
            .unwrap_or(0),
        min_ops_per_sec: float("min_ops_per_sec")?,
        max_p50_ms: float("max_p50_ms")?,
        max_p99_ms: float("max_p99_ms")?,
    })
}

/// Load `sql = "file.slt"` relative to the suite file, with its per-engine variants.
pub fn load_sql(source: &Source, file: &str) -> Result<SqlAction, String> {
    if file.starts_with('/') || file.split('/').any(|p| p == "..") {
        return Err(format!(
            "`{file}` must be a path inside the suite's directory"
        ));
    }
    let script = source
        .read_relative(file)
        .map_err(|e| format!("cannot read `{file}`: {e}"))?;
    let mut variants = BTreeMap::new();
    if let Some(stem) = file.strip_suffix(".slt") {
        for (name, text) in source.siblings_with_prefix(&format!("{stem}.")) {
            if let Some(engine) = name
                .strip_prefix(&format!("{stem}."))
                .and_then(|r| r.strip_suffix(".slt"))
                && !engine.is_empty()
                && !engine.contains('.')
            {
                variants.insert(engine.to_string(), text);
            }
        }
    }
    Ok(SqlAction {
        file: file.to_string(),
        script,
        variants,
        hash_threshold: crate::kinds::sql::values::DEFAULT_HASH_THRESHOLD,
    })
}

/// Parse the scripts of an `sql` case (the base file and each variant) as a run would, so a
/// broken file fails validation: one error per broken file, at its own `file:line`.
pub fn check_sql(source: &Source, sql: &SqlAction, field: &str) -> Vec<super::diag::SpecError> {
    let mut errors = Vec::new();
    let files = std::iter::once((sql.file.clone(), &sql.script)).chain(
        sql.variants
            .iter()
            .map(|(engine, text)| (variant_name(&sql.file, engine), text)),
    );
    for (file, text) in files {
        if let Err((line, why)) = crate::kinds::sql::check_script(text) {
            let name = match source.name.strip_prefix("builtin:") {
                Some(n) => format!(
                    "builtin:{}",
                    match n.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{file}"),
                        None => file.clone(),
                    }
                ),
                None => source.base_dir().join(&file).display().to_string(),
            };
            let slt = Source::new(name, text.as_str());
            let start: usize = text
                .split_inclusive('\n')
                .take((line as usize).saturating_sub(1))
                .map(str::len)
                .sum();
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            errors.push(slt.error(start..end, field, why));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_follow_the_component_labels_in_order() {
        let sql = SqlAction {
            file: "sql/output.slt".into(),
            script: "base".into(),
            variants: BTreeMap::from([
                ("mysql".to_string(), "my".to_string()),
                ("postgres".to_string(), "pg".to_string()),
                ("mariadb".to_string(), "maria".to_string()),
            ]),
            hash_threshold: 8,
        };
        // The kind's own variant first, then the dialect's.
        assert_eq!(
            sql.for_labels(&["mariadb", "mysql", "driver"]),
            ("sql/output.mariadb.slt".to_string(), "maria")
        );
        assert_eq!(
            sql.for_labels(&["tidb", "mysql", "driver"]),
            ("sql/output.mysql.slt".to_string(), "my")
        );
        assert_eq!(
            sql.for_labels(&["psql", "postgres", "cli"]),
            ("sql/output.postgres.slt".to_string(), "pg")
        );
        assert_eq!(
            sql.for_labels(&["sqlite", "sqlite", "driver"]),
            ("sql/output.slt".to_string(), "base")
        );
        assert_eq!(sql.for_engine("postgres").1, "pg");
    }
}
