//! `sql` cases: sqllogictest scripts run through a component's `sql.exec` (statements) and
//! `sql.query` (queries) operations, so every SQL adapter — driver or client on the target —
//! runs the same files.
//!
//! `skipif`/`onlyif` see the component's labels: its kind, its dialect and its access
//! (`onlyif postgres`, `skipif mysql`, `onlyif cli`, …; the session's `sql.info` names them).
//! NULL is written `NULL` and the empty string `(empty)`, as in sqllogictest's own runners.
//! Records that would reach beyond the one session are refused: `system` (use a `run` case),
//! `include`, and named `connection`s (use a `steps` case with two sessions).

use adaptest_adapters::component::{ComponentError, Session, sql::engine_labels};
use serde_json::{Map, Value};
use sqllogictest::{
    AsyncDB, Connection, DBOutput, DefaultColumnType, Record, Runner, TestError, TestErrorKind,
    parse_with_name,
};
use std::sync::{Arc, Mutex};

/// Run one sqllogictest script; `Err` carries the one-line reason of the first mismatch, naming
/// `name:line`, what was expected and what the database did.
pub async fn run_slt(
    session: &mut dyn Session,
    engine: &str,
    name: &str,
    script: &str,
) -> Result<(), SltFailure> {
    let labels = labels_of(session, engine).await;
    run_slt_labelled(session, engine, &labels, name, script).await
}

/// Run an `sql` case: the script variant of the first of the component's labels that has one
/// (`x.mariadb.slt`, else `x.mysql.slt` for a MariaDB component), else the base script.
/// Returns the file name that ran, and how.
pub async fn run_case(
    session: &mut dyn Session,
    engine: &str,
    sql: &crate::spec::kinds::SqlAction,
) -> (String, Result<(), SltFailure>) {
    let labels = labels_of(session, engine).await;
    let (name, script) = sql.for_labels(&labels);
    let r = run_slt_labelled(session, engine, &labels, &name, script).await;
    (name, r)
}

/// Why a script did not pass: `infra` when the component went away (connection lost, target
/// unreachable), which is an `error` of the case rather than a failure of the product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SltFailure {
    pub message: String,
    pub infra: bool,
}

impl SltFailure {
    fn failed(message: String) -> Self {
        SltFailure {
            message,
            infra: false,
        }
    }
}

impl std::fmt::Display for SltFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::ops::Deref for SltFailure {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

async fn run_slt_labelled(
    session: &mut dyn Session,
    engine: &str,
    labels: &[String],
    name: &str,
    script: &str,
) -> Result<(), SltFailure> {
    let records = parse_with_name::<DefaultColumnType>(script, name).map_err(|e| {
        SltFailure::failed(format!(
            "{}:{}: cannot parse: {}",
            e.location().file(),
            e.location().line(),
            e.kind()
        ))
    })?;
    for r in &records {
        if let Some((loc, why)) = refused(r) {
            return Err(SltFailure::failed(format!(
                "{}:{}: {why}",
                loc.file(),
                loc.line()
            )));
        }
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut db = Some(SessionDb {
        session,
        engine: engine.to_string(),
        shared: shared.clone(),
        args: Map::new(),
    });
    let mut runner = Runner::new(move || {
        let db = db.take();
        async move { db.ok_or_else(|| SltError::new("an sql case has one connection", None)) }
    });
    for l in labels {
        runner.add_label(l);
    }
    for record in records {
        if matches!(record, Record::Halt { .. }) {
            break;
        }
        let loc = match &record {
            Record::Statement { loc, .. } | Record::Query { loc, .. } | Record::Let { loc, .. } => {
                Some(loc.clone())
            }
            _ => None,
        };
        shared.lock().expect("not poisoned").mode = match &record {
            Record::Statement { .. } => Mode::Statement,
            _ => Mode::Query,
        };
        let res = runner.run_async(record).await;
        // A lost connection is never what a record expected, even `statement error`.
        if let Some((fatal, infra)) = shared.lock().expect("not poisoned").fatal.take() {
            let at = loc
                .map(|l| format!("{}:{}: ", l.file(), l.line()))
                .unwrap_or_default();
            return Err(SltFailure {
                message: format!("{at}{fatal}"),
                infra,
            });
        }
        if let Err(e) = res {
            return Err(SltFailure::failed(one_line(&e)));
        }
    }
    Ok(())
}

/// Records an sql case does not run, with the reason.
fn refused(r: &Record<DefaultColumnType>) -> Option<(sqllogictest::Location, &'static str)> {
    match r {
        Record::System { loc, .. } => Some((
            loc.clone(),
            "`system` records are not run by adaptest (write a `run` case for shell commands)",
        )),
        Record::Include { loc, .. } => Some((
            loc.clone(),
            "`include` is not supported in sql cases (give each file its own case)",
        )),
        Record::Statement {
            loc,
            connection: Connection::Named(_),
            ..
        }
        | Record::Query {
            loc,
            connection: Connection::Named(_),
            ..
        }
        | Record::Let {
            loc,
            connection: Connection::Named(_),
            ..
        } => Some((
            loc.clone(),
            "an sql case has one connection (write a `steps` case with two sessions)",
        )),
        _ => None,
    }
}

/// The component's `skipif`/`onlyif` labels: from `sql.info`, else from its kind.
async fn labels_of(session: &mut dyn Session, engine: &str) -> Vec<String> {
    match session.execute("sql.info", &Map::new()).await {
        Ok(info) => match info.get("labels").and_then(Value::as_array) {
            Some(l) => l
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            None => engine_labels(engine, None),
        },
        Err(_) => engine_labels(engine, None),
    }
}

/// `name:line: reason` on one line, expected vs actual where there is one.
fn one_line(e: &TestError) -> String {
    let loc = e.location();
    let sql = |s: &str| clip(&flat(s), 160);
    let what = match e.kind() {
        TestErrorKind::QueryResultMismatch {
            sql: q,
            expected,
            actual,
        } => format!(
            "query result mismatch: expected [{}] but got [{}] (SQL: {})",
            clip(&rows(&expected), 400),
            clip(&rows(&actual), 400),
            sql(&q)
        ),
        TestErrorKind::QueryResultColumnsMismatch {
            sql: q,
            expected,
            actual,
        } => {
            format!(
                "column types mismatch: expected {expected} but got {actual} (SQL: {})",
                sql(&q)
            )
        }
        TestErrorKind::Fail { sql: q, err, kind } => {
            format!(
                "{kind} failed: {} (SQL: {})",
                clip(&flat(&err.to_string()), 600),
                sql(&q)
            )
        }
        TestErrorKind::Ok { sql: q, kind } => {
            format!(
                "{kind} was expected to fail but succeeded (SQL: {})",
                sql(&q)
            )
        }
        TestErrorKind::ErrorMismatch {
            sql: q,
            err,
            expected_err,
            kind,
            ..
        } => format!(
            "{kind} was expected to fail with {expected_err} but failed with: {} (SQL: {})",
            clip(&flat(&err.to_string()), 600),
            sql(&q)
        ),
        TestErrorKind::StatementResultMismatch {
            sql: q,
            expected,
            actual,
        } => {
            format!(
                "statement was expected to affect {expected} rows but {actual} (SQL: {})",
                sql(&q)
            )
        }
        other => clip(&flat(&other.to_string()), 800),
    };
    format!("{}:{}: {what}", loc.file(), loc.line())
}

/// Result lines as `a b | c d`.
fn rows(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" | ")
}

fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    /// `statement` records: `sql.exec`.
    Statement,
    /// `query` and `let` records: `sql.query`.
    #[default]
    Query,
}

/// What the record loop and the database wrapper share.
#[derive(Debug, Default)]
struct Shared {
    mode: Mode,
    /// A failure that is not the server's answer (connection lost, unsupported operation): ends
    /// the script. The flag: infrastructure (see [`super::is_infra`]).
    fatal: Option<(String, bool)>,
}

/// The session, as sqllogictest's database.
struct SessionDb<'a> {
    session: &'a mut dyn Session,
    engine: String,
    shared: Arc<Mutex<Shared>>,
    args: Map<String, Value>,
}

/// A failed statement: the adapter's message (with SQLSTATE and error codes when known).
#[derive(Debug)]
struct SltError {
    message: String,
    sqlstate: Option<String>,
}

impl SltError {
    fn new(message: impl Into<String>, sqlstate: Option<String>) -> Self {
        SltError {
            message: message.into(),
            sqlstate,
        }
    }
}

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SltError {}

/// The SQLSTATE an adapter put in a message (`… (SQLSTATE 23505)`).
fn sqlstate_of(message: &str) -> Option<String> {
    let i = message.find("SQLSTATE ")?;
    let code: String = message[i + 9..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (code.len() == 5).then_some(code)
}

/// A value as sqllogictest writes it.
fn cell(v: Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) if s.is_empty() => "(empty)".into(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl AsyncDB for SessionDb<'_> {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mode = self.shared.lock().expect("not poisoned").mode;
        let op = match mode {
            Mode::Statement => "sql.exec",
            Mode::Query => "sql.query",
        };
        // one argument map for the whole script, its text buffer reused
        match self.args.get_mut("sql") {
            Some(Value::String(buf)) => {
                buf.clear();
                buf.push_str(sql);
            }
            _ => {
                self.args
                    .insert("sql".into(), Value::String(sql.to_string()));
            }
        }
        match self.session.execute(op, &self.args).await {
            Ok(v) => Ok(output_of(v)),
            Err(ComponentError::Operation(m)) => {
                let state = sqlstate_of(&m);
                Err(SltError::new(m, state))
            }
            Err(e) => {
                let m = crate::engine::error_chain(&e);
                self.shared.lock().expect("not poisoned").fatal =
                    Some((m.clone(), super::is_infra(&e)));
                Err(SltError::new(m, None))
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        &self.engine
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    async fn run_command(_command: std::process::Command) -> std::io::Result<std::process::Output> {
        Err(std::io::Error::other(
            "system commands are not run by adaptest",
        ))
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        err.sqlstate.clone()
    }
}

/// An operation's JSON result as sqllogictest's output.
fn output_of(v: Value) -> DBOutput<DefaultColumnType> {
    let Value::Object(mut m) = v else {
        return DBOutput::StatementComplete(0);
    };
    match m.remove("rows") {
        Some(Value::Array(rows)) => {
            let types = match m.get("types") {
                Some(Value::Array(t)) => t
                    .iter()
                    .map(|c| match c.as_str() {
                        Some("I") => DefaultColumnType::Integer,
                        Some("R") => DefaultColumnType::FloatingPoint,
                        Some("T") => DefaultColumnType::Text,
                        _ => DefaultColumnType::Any,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let rows = rows
                .into_iter()
                .map(|r| match r {
                    Value::Array(cells) => cells.into_iter().map(cell).collect(),
                    _ => Vec::new(),
                })
                .collect();
            DBOutput::Rows { types, rows }
        }
        _ => DBOutput::StatementComplete(m.get("affected").and_then(Value::as_u64).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A session over canned answers: `select …` returns the rows after `--`, statements affect 1.
    struct Fake {
        calls: Vec<(String, String)>,
    }

    #[async_trait::async_trait]
    impl Session for Fake {
        async fn version(&mut self) -> Result<String, ComponentError> {
            Ok("fake".into())
        }
        async fn execute(
            &mut self,
            op: &str,
            args: &Map<String, Value>,
        ) -> Result<Value, ComponentError> {
            if op == "sql.info" {
                return Ok(json!({"labels": ["fakedb", "postgres", "driver"]}));
            }
            let sql = args["sql"].as_str().unwrap().to_string();
            self.calls.push((op.to_string(), sql.clone()));
            if sql.starts_with("boom") {
                return Err(ComponentError::Operation(
                    "boom failed (SQLSTATE 42601)".into(),
                ));
            }
            if sql.starts_with("lost") {
                return Err(ComponentError::Lost {
                    component: "db".into(),
                    reason: "reset by peer".into(),
                });
            }
            if let Some((_, rows)) = sql.split_once("-- ") {
                let rows: Vec<Value> = rows
                    .split('|')
                    .map(|r| {
                        Value::Array(
                            r.split(',')
                                .map(|c| if c == "null" { Value::Null } else { json!(c) })
                                .collect(),
                        )
                    })
                    .collect();
                return Ok(json!({"columns": ["a"], "types": ["T"], "rows": rows}));
            }
            Ok(json!({"affected": 1}))
        }
    }

    async fn run(script: &str) -> (Result<(), SltFailure>, Vec<(String, String)>) {
        let mut s = Fake { calls: Vec::new() };
        let r = run_slt(&mut s, "fakedb", "t.slt", script).await;
        (r, s.calls)
    }

    #[tokio::test]
    async fn statements_exec_and_queries_query() {
        let (r, calls) = run(
            "statement ok\ninsert x\n\nstatement count 1\nupdate y\n\nquery T\nselect -- a,null|,b\n----\na NULL\n(empty) b\n",
        )
        .await;
        assert_eq!(r, Ok(()));
        let ops: Vec<&str> = calls.iter().map(|(op, _)| op.as_str()).collect();
        assert_eq!(ops, ["sql.exec", "sql.exec", "sql.query"]);
    }

    #[tokio::test]
    async fn labels_drive_skipif_and_onlyif() {
        let (r, calls) = run("onlyif mysql\nstatement ok\nmy x\n\nskipif postgres\nstatement ok\nnot pg\n\nonlyif driver\nstatement ok\ndrv\n").await;
        assert_eq!(r, Ok(()));
        assert_eq!(calls, [("sql.exec".to_string(), "drv".to_string())]);
    }

    #[tokio::test]
    async fn a_mismatch_names_the_line_and_both_results() {
        let (r, _) = run("statement ok\ninsert x\n\nquery T\nselect -- 1|2\n----\n1\n3\n").await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with("t.slt:4: query result mismatch: expected [1 | 3] but got [1 | 2]"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[tokio::test]
    async fn expected_errors_match_by_regex_or_sqlstate() {
        let (r, _) =
            run("statement error boom\nboom 1\n\nstatement error (?i)BOOM F\nboom 2\n").await;
        assert_eq!(r, Ok(()));
        let (r, _) = run("statement error nomatch\nboom 1\n").await;
        let e = r.unwrap_err();
        assert!(
            e.contains("t.slt:1") && e.contains("boom failed (SQLSTATE 42601)"),
            "{e}"
        );
        let (r, _) = run("statement ok\nboom 1\n").await;
        assert!(
            r.unwrap_err()
                .starts_with("t.slt:1: statement failed: boom failed")
        );
        assert_eq!(
            sqlstate_of("x (SQLSTATE 23505); DETAIL: y"),
            Some("23505".into())
        );
    }

    #[tokio::test]
    async fn a_lost_connection_ends_the_script_even_where_an_error_was_expected() {
        let (r, calls) = run("statement error\nlost 1\n\nstatement ok\nnever\n").await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with("t.slt:1: connection to component `db` lost"),
            "{e}"
        );
        assert!(
            e.infra,
            "a lost connection is an infrastructure error: {e:?}"
        );
        assert_eq!(calls.len(), 1);
        // What the server answered is the product's failure, not infrastructure.
        let (r, _) = run("statement ok\nboom 1\n").await;
        assert!(!r.unwrap_err().infra);
    }

    #[tokio::test]
    async fn records_beyond_the_session_are_refused_before_anything_runs() {
        let (r, calls) = run("statement ok\ninsert x\n\nsystem ok\nrm -rf /\n").await;
        assert!(
            r.unwrap_err()
                .starts_with("t.slt:4: `system` records are not run")
        );
        assert!(calls.is_empty());
        let (r, _) = run("connection other\nstatement ok\nx\n").await;
        assert!(r.unwrap_err().contains("one connection"));
    }
}
