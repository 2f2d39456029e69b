//! `sql` cases: sqllogictest scripts run through a component's `sql.exec` (statements) and
//! `sql.query` (queries) operations, so every SQL adapter — driver or client on the target —
//! runs the same files.
//!
//! The crate's parser reads the script after `classic::normalise` (trailing comments on control
//! lines, conditional `halt`s), line for line; this module judges `onlyif`/`skipif` itself, so
//! it can count what ran. Labels: the component's kind, its dialect with its aliases
//! (`postgresql`, `mysql` for MariaDB…) and its access (`driver`/`cli`; the session's `sql.info`
//! names them), plus the plan's `labels` for the component. Values are rendered by the column
//! types the record declares and compared row- or value-wise, hashed as the classic program
//! does (`values`). Records that would reach beyond the one session are refused: `system` (use
//! a `run` case), `include`, and named `connection`s (use a `steps` case with two sessions).
//!
//! (long because the sqllogictest run is one flow (labels, the `AsyncDB` bridge, result shaping); ~300 lines are its tests; `classic.rs` and `values.rs` are already split off)

pub mod classic;
pub mod values;

use adaptest_adapters::component::{ComponentError, Session, sql::engine_labels};
pub use adaptest_reports::SqlRecords;
use serde_json::{Map, Value};
use sqllogictest::{
    AsyncDB, Condition, Connection, Control, DBOutput, DefaultColumnType, QueryExpect, Record,
    Runner, SortMode, TestError, TestErrorKind, parse_with_name,
};
use std::sync::{Arc, Mutex};

/// How a script runs: labels beyond the component's own (a plan's `labels = [...]`) and the
/// hash threshold (`hash_threshold`, classic default 8; a `hash-threshold` line overrides it).
#[derive(Debug, Clone)]
pub struct SltOptions {
    pub extra_labels: Vec<String>,
    pub hash_threshold: u64,
    /// Go on after a failed record (and report every failure) instead of stopping at the first;
    /// for conformance counts, not for cases.
    pub keep_going: bool,
}

impl Default for SltOptions {
    fn default() -> Self {
        SltOptions {
            extra_labels: Vec::new(),
            hash_threshold: values::DEFAULT_HASH_THRESHOLD,
            keep_going: false,
        }
    }
}

/// What running a script did: the records that ran, were skipped by a condition or were left
/// after a halt; where it halted; the failures (one at most unless `keep_going`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SltReport {
    pub records: SqlRecords,
    /// `file:line` of the halt that ended the script.
    pub halted_at: Option<String>,
    /// Every failed record (the first one only, unless `keep_going`); an infrastructure failure
    /// always ends the script.
    pub failures: Vec<SltFailure>,
}

impl SltReport {
    /// The first failure, if any, as the case's outcome.
    pub fn result(&self) -> Result<(), SltFailure> {
        match self.failures.first() {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    /// One line for the case's log: `records: 12 ran, 2 skipped by condition, 3 left after a
    /// halt (t.slt:20)`.
    pub fn summary(&self) -> String {
        let r = &self.records;
        let mut s = format!(
            "records: {} ran, {} skipped by condition, {} left after a halt",
            r.ran, r.skipped, r.halted
        );
        if let Some(at) = &self.halted_at {
            s.push_str(&format!(" (halt at {at})"));
        }
        s
    }
}

/// Run one sqllogictest script; `Err` carries the one-line reason of the first mismatch, naming
/// `name:line`, what was expected and what the database did.
pub async fn run_slt(
    session: &mut dyn Session,
    engine: &str,
    name: &str,
    script: &str,
) -> Result<(), SltFailure> {
    run_slt_with(session, engine, name, script, &SltOptions::default())
        .await
        .result()
}

/// Run one script with `options`, reporting what ran.
pub async fn run_slt_with(
    session: &mut dyn Session,
    engine: &str,
    name: &str,
    script: &str,
    options: &SltOptions,
) -> SltReport {
    let labels = labels_of(session, engine, &options.extra_labels).await;
    run_slt_labelled(session, engine, &labels, name, script, options).await
}

/// Run an `sql` case: the script variant of the first of the component's labels that has one
/// (`x.mariadb.slt`, else `x.mysql.slt` for a MariaDB component), else the base script.
/// Returns the file name that ran, and what it did.
pub async fn run_case(
    session: &mut dyn Session,
    engine: &str,
    sql: &crate::spec::kinds::SqlAction,
    extra_labels: &[String],
) -> (String, SltReport) {
    let labels = labels_of(session, engine, extra_labels).await;
    let (name, script) = sql.for_labels(&labels);
    let options = SltOptions {
        extra_labels: Vec::new(),
        hash_threshold: sql.hash_threshold,
        keep_going: false,
    };
    let r = run_slt_labelled(session, engine, &labels, &name, script, &options).await;
    (name, r)
}

/// The case outcome of a script's report: failed or error at the first failure; skipped, with
/// the reason, when no record ran (everything skipped by condition or halted: a case passes only
/// when its checks ran); else passed. The log names the file, the counts and the failure.
pub fn outcome(name: &str, engine: &str, report: &SltReport) -> super::CaseOutcome {
    let r = &report.records;
    let mut o = match report.failures.first() {
        Some(f) if f.infra => super::CaseOutcome::error(f.message.clone()),
        Some(f) => super::CaseOutcome::failed(f.message.clone()),
        None if r.ran == 0 => {
            let mut why = format!(
                "no record ran on {engine}: {} skipped by condition, {} left after a halt",
                r.skipped, r.halted
            );
            if let Some(at) = &report.halted_at {
                why.push_str(&format!(" at {at}"));
            }
            super::CaseOutcome {
                status: adaptest_reports::Status::Skipped,
                reason: Some(why),
                ..super::CaseOutcome::passed()
            }
        }
        None => super::CaseOutcome::passed(),
    };
    o.sql_records = Some(*r);
    o.log = format!("sqllogictest {name} on {engine}\n{}\n", report.summary());
    for f in &report.failures {
        o.log.push_str(&format!("failed: {}\n", f.message));
    }
    o
}

/// Parse a script as a case would run it (classic normalising pass, the crate's parser, the
/// records a case refuses): `Err` is the 1-based line and what is wrong there.
pub fn check_script(script: &str) -> Result<(), (u32, String)> {
    parse_script(script, "check").map(|_| ())
}

/// A script's records and the conditional halts taken out of it.
type Parsed = (
    Vec<Record<DefaultColumnType>>,
    Vec<classic::ConditionalHalt>,
);

fn parse_script(script: &str, name: &str) -> Result<Parsed, (u32, String)> {
    let n = classic::normalise(script);
    let records = parse_with_name::<DefaultColumnType>(&n.text, name)
        .map_err(|e| (e.location().line(), format!("cannot parse: {}", e.kind())))?;
    for r in &records {
        if let Some((loc, why)) = refused(r) {
            return Err((loc.line(), why.to_string()));
        }
    }
    Ok((records, n.halts))
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

/// The line of a record that runs SQL, and its conditions.
fn runnable(r: &Record<DefaultColumnType>) -> Option<(&sqllogictest::Location, &[Condition])> {
    match r {
        Record::Statement {
            loc, conditions, ..
        }
        | Record::Query {
            loc, conditions, ..
        }
        | Record::Let {
            loc, conditions, ..
        } => Some((loc, conditions)),
        _ => None,
    }
}

async fn run_slt_labelled(
    session: &mut dyn Session,
    engine: &str,
    labels: &[String],
    name: &str,
    script: &str,
    options: &SltOptions,
) -> SltReport {
    let mut report = SltReport::default();
    let (records, halts) = match parse_script(script, name) {
        Ok(x) => x,
        Err((line, why)) => {
            report
                .failures
                .push(SltFailure::failed(format!("{name}:{line}: {why}")));
            return report;
        }
    };
    // The crate adds the engine's name to the labels; so do we, as we judge conditions here.
    let mut all_labels = labels.to_vec();
    if !all_labels.iter().any(|l| l == engine) {
        all_labels.push(engine.to_string());
    }
    let mut halts = halts
        .into_iter()
        .filter(|h| classic::applies(&h.conditions, &all_labels))
        .peekable();
    let shared = Arc::new(Mutex::new(Shared {
        hash_threshold: options.hash_threshold,
        ..Shared::default()
    }));
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
    runner.with_validator(values::validator);
    for l in labels {
        runner.add_label(l);
    }
    let mut sort_mode: Option<SortMode> = None;
    let mut records = records.into_iter();
    while let Some(mut record) = records.next() {
        let halt_here = match &record {
            Record::Halt { loc } => Some(format!("{}:{}", loc.file(), loc.line())),
            r => runnable(r).and_then(|(loc, _)| {
                halts
                    .next_if(|h| h.line < loc.line())
                    .map(|h| format!("{name}:{}", h.line))
            }),
        };
        if let Some(at) = halt_here {
            let mut left = 0;
            if runnable(&record).is_some() {
                left += 1;
            }
            left += records.filter(|r| runnable(r).is_some()).count() as u64;
            report.records.halted = left;
            report.halted_at = Some(at);
            break;
        }
        // Judged here rather than by the crate, so the counts are ours to report.
        match &mut record {
            Record::Control(Control::SortMode(m)) => {
                sort_mode = Some(*m);
                continue;
            }
            Record::HashThreshold { threshold, .. } => {
                shared.lock().expect("not poisoned").hash_threshold = *threshold;
                continue;
            }
            _ => {}
        }
        let Some((loc, conditions)) = runnable(&record) else {
            let _ = runner.run_async(record).await;
            continue;
        };
        if !classic::applies(conditions, &all_labels) {
            report.records.skipped += 1;
            continue;
        }
        let loc = loc.clone();
        report.records.ran += 1;
        {
            let mut sh = shared.lock().expect("not poisoned");
            sh.mode = match &record {
                Record::Statement { .. } => Mode::Statement,
                _ => Mode::Query,
            };
            sh.query = None;
            sh.over_threshold = None;
            if let Record::Query {
                expected:
                    QueryExpect::Results {
                        types,
                        sort_mode: m,
                        results,
                        ..
                    },
                ..
            } = &mut record
            {
                // Sorting and hashing happen in `SessionDb::run`, on the rendered values.
                sh.query = Some(QueryShape {
                    types: types
                        .iter()
                        .map(sqllogictest::ColumnType::to_char)
                        .collect(),
                    sort: m.take().or(sort_mode),
                    hash: values::is_hash_block(results),
                });
            }
        }
        let res = runner.run_async(record).await;
        // A lost connection is never what a record expected, even `statement error`.
        let mut sh = shared.lock().expect("not poisoned");
        if let Some((fatal, infra)) = sh.fatal.take() {
            report.failures.push(SltFailure {
                message: format!("{}:{}: {fatal}", loc.file(), loc.line()),
                infra,
            });
            break;
        }
        if let Err(e) = res {
            report
                .failures
                .push(SltFailure::failed(one_line(&e, sh.over_threshold.take())));
            if !options.keep_going {
                break;
            }
        }
    }
    report
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

/// The component's `skipif`/`onlyif` labels: from `sql.info`, else from its kind; then the
/// plan's own `labels` for it.
async fn labels_of(session: &mut dyn Session, engine: &str, extra: &[String]) -> Vec<String> {
    let mut labels = match session.execute("sql.info", &Map::new()).await {
        Ok(info) => match info.get("labels").and_then(Value::as_array) {
            Some(l) => l
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            None => engine_labels(engine, None),
        },
        Err(_) => engine_labels(engine, None),
    };
    for l in extra {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    labels
}

/// `name:line: reason` on one line, expected vs actual where there is one; `hashed`: the actual
/// result as a hash line, when it had more values than the hash threshold.
fn one_line(e: &TestError, hashed: Option<String>) -> String {
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
            hashed.unwrap_or_else(|| clip(&rows(&actual), 400)),
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

use adaptest_adapters::text::clip;

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
    /// The query record being run: how to render, sort and hash its result.
    query: Option<QueryShape>,
    hash_threshold: u64,
    /// The last result as a hash line, when it had more values than the threshold (for the
    /// failure message).
    over_threshold: Option<String>,
    /// A failure that is not the server's answer (connection lost, unsupported operation): ends
    /// the script. The flag: infrastructure (see [`super::is_infra`]).
    fatal: Option<(String, bool)>,
}

/// A query record's declared column types, sort mode, and whether its expected block is a hash.
#[derive(Debug, Clone)]
struct QueryShape {
    types: Vec<char>,
    sort: Option<SortMode>,
    hash: bool,
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
            Ok(v) => {
                let mut sh = self.shared.lock().expect("not poisoned");
                let shape = sh.query.take();
                let threshold = sh.hash_threshold;
                let out = output_of(v, shape.as_ref());
                Ok(match (out, shape) {
                    (DBOutput::Rows { types, rows }, Some(shape)) => {
                        let (rows, hashed) = shaped(rows, &shape, threshold);
                        sh.over_threshold = hashed;
                        DBOutput::Rows { types, rows }
                    }
                    (out, _) => out,
                })
            }
            Err(ComponentError::Operation(m)) => {
                let state = sqlstate_of(&m);
                Err(SltError::new(m, state))
            }
            Err(e) => {
                let m = adaptest_adapters::text::error_chain(&e);
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

/// An operation's JSON result as sqllogictest's output, each value rendered by the query's
/// declared column type.
fn output_of(v: Value, shape: Option<&QueryShape>) -> DBOutput<DefaultColumnType> {
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
            let declared = |i: usize| shape.and_then(|s| s.types.get(i).copied());
            let rows = rows
                .into_iter()
                .map(|r| match r {
                    Value::Array(cells) => cells
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| values::render(c, declared(i)))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            DBOutput::Rows { types, rows }
        }
        _ => DBOutput::StatementComplete(m.get("affected").and_then(Value::as_u64).unwrap_or(0)),
    }
}

/// A query's rendered rows sorted by its sort mode, as one hash line when its expected block
/// is a hash; and the hash line when it has more values than `threshold` (0: never).
fn shaped(
    mut rows: Vec<Vec<String>>,
    shape: &QueryShape,
    threshold: u64,
) -> (Vec<Vec<String>>, Option<String>) {
    match shape.sort {
        None | Some(SortMode::NoSort) => {}
        Some(SortMode::RowSort) => rows.sort_unstable(),
        Some(SortMode::ValueSort) => {
            let mut v: Vec<String> = rows.into_iter().flatten().collect();
            v.sort_unstable();
            rows = v.into_iter().map(|x| vec![x]).collect();
        }
    }
    let n: usize = rows.iter().map(Vec::len).sum();
    let over = threshold > 0 && n as u64 > threshold;
    if shape.hash || over {
        let line = values::hash_line(rows.iter().flatten());
        if shape.hash {
            return (vec![vec![line]], None);
        }
        return (rows, Some(line));
    }
    (rows, None)
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

    async fn report(script: &str) -> SltReport {
        let mut s = Fake { calls: Vec::new() };
        run_slt_with(&mut s, "fakedb", "t.slt", script, &SltOptions::default()).await
    }

    #[tokio::test]
    async fn a_conditional_halt_stops_only_where_its_condition_holds() {
        // 14 records behind a halt for another engine: they all run (regression: 0 ran, passed)
        let mut script = String::from("onlyif mssql\nhalt\n\n");
        for i in 0..14 {
            script.push_str(&format!("statement ok\ninsert {i}\n\n"));
        }
        let r = report(&script).await;
        assert_eq!(r.result(), Ok(()));
        assert_eq!(
            r.records,
            SqlRecords {
                ran: 14,
                skipped: 0,
                halted: 0
            }
        );
        // the halt's condition does not fall onto the next record
        let r = report("skipif mssql\nhalt\n\nstatement ok\nx\n\nstatement ok\ny\n").await;
        assert_eq!(r.records.ran, 0);
        assert_eq!(r.records.halted, 2);
        assert_eq!(r.halted_at.as_deref(), Some("t.slt:2"));
        // where it holds, the rest is left and counted
        let r = report("statement ok\nx\n\nonlyif fakedb # here\nhalt\n\nstatement ok\ny\n\nquery T\nselect -- a\n----\na\n").await;
        assert_eq!(
            r.records,
            SqlRecords {
                ran: 1,
                skipped: 0,
                halted: 2
            }
        );
        let o = outcome("t.slt", "fakedb", &r);
        assert_eq!(o.status, adaptest_reports::Status::Passed);
        assert!(
            o.log
                .contains("1 ran, 0 skipped by condition, 2 left after a halt (halt at t.slt:5)"),
            "{}",
            o.log
        );
    }

    #[tokio::test]
    async fn a_script_of_which_nothing_ran_is_skipped_not_passed() {
        let r = report("onlyif mssql\nstatement ok\nx\n\nhalt\n\nstatement ok\ny\n").await;
        assert_eq!(
            r.records,
            SqlRecords {
                ran: 0,
                skipped: 1,
                halted: 1
            }
        );
        let o = outcome("t.slt", "fakedb", &r);
        assert_eq!(o.status, adaptest_reports::Status::Skipped);
        assert_eq!(
            o.reason.as_deref(),
            Some("no record ran on fakedb: 1 skipped by condition, 1 left after a halt at t.slt:5")
        );
        assert_eq!(o.sql_records, Some(r.records));
    }

    #[tokio::test]
    async fn extra_labels_and_the_engine_name_drive_conditions() {
        let mut s = Fake { calls: Vec::new() };
        let opts = SltOptions {
            extra_labels: vec!["vendor-x".into()],
            ..SltOptions::default()
        };
        let r = run_slt_with(
            &mut s,
            "fakedb",
            "t.slt",
            "onlyif vendor-x\nstatement ok\nv\n\nskipif vendor-x\nstatement ok\nnot v\n",
            &opts,
        )
        .await;
        assert_eq!(r.result(), Ok(()));
        assert_eq!((r.records.ran, r.records.skipped), (1, 1));
        assert_eq!(s.calls, [("sql.exec".to_string(), "v".to_string())]);
    }

    #[tokio::test]
    async fn hashed_and_value_wise_results_match() {
        // two columns, listed one value per line, and rowsort over rendered values
        let (r, _) = run("query TT rowsort\nselect -- b,2|a,1\n----\na\n1\nb\n2\n").await;
        assert_eq!(r, Ok(()));
        let hash = values::hash_line(&["a".to_string(), "1".into(), "b".into(), "2".into()]);
        let (r, _) = run(&format!(
            "query TT rowsort\nselect -- b,2|a,1\n----\n{hash}\n"
        ))
        .await;
        assert_eq!(r, Ok(()));
        let (r, _) = run(&format!(
            "query TT nosort\nselect -- b,2|a,1\n----\n{hash}\n"
        ))
        .await;
        let e = r.unwrap_err();
        assert!(e.contains("4 values hashing to"), "{e}");
        // valuesort sorts every value on its own
        let (r, _) = run("query TT valuesort\nselect -- b,2|a,1\n----\n1\n2\na\nb\n").await;
        assert_eq!(r, Ok(()));
    }

    #[tokio::test]
    async fn values_are_rendered_by_the_declared_type() {
        let (r, _) = run("query IRT\nselect -- 0.5,1.5,\n----\n0 1.500 (empty)\n").await;
        assert_eq!(r, Ok(()));
    }

    #[tokio::test]
    async fn a_result_over_the_threshold_fails_showing_its_hash() {
        let (r, _) = run("query T\nselect -- 1|2|3|4|5|6|7|8|9\n----\n1\n").await;
        let e = r.unwrap_err();
        assert!(e.contains("got [9 values hashing to "), "{e}");
        let (r, _) =
            run("hash-threshold 0\n\nquery T\nselect -- 1|2|3|4|5|6|7|8|9\n----\n1\n").await;
        assert!(r.unwrap_err().contains("got [1 | 2 | 3"));
    }

    #[tokio::test]
    async fn keep_going_reports_every_failure() {
        let mut s = Fake { calls: Vec::new() };
        let opts = SltOptions {
            keep_going: true,
            ..SltOptions::default()
        };
        let r = run_slt_with(
            &mut s,
            "fakedb",
            "t.slt",
            "statement ok\nboom 1\n\nstatement ok\nfine\n\nstatement ok\nboom 2\n",
            &opts,
        )
        .await;
        assert_eq!(r.records.ran, 3);
        assert_eq!(r.failures.len(), 2);
        assert!(r.failures[1].starts_with("t.slt:7:"));
    }

    #[test]
    fn check_script_names_the_line() {
        assert_eq!(check_script("onlyif x # c\nstatement ok\nx\n"), Ok(()));
        let (line, why) = check_script("statement ok\nx\n\nstatement bogus\ny\n").unwrap_err();
        assert_eq!(line, 4, "{why}");
        let (line, why) = check_script("statement ok\nx\n\nbogus line\n").unwrap_err();
        assert_eq!(line, 4);
        assert!(why.contains("cannot parse"), "{why}");
        let (line, _) = check_script("\n\nsystem ok\nls\n").unwrap_err();
        assert_eq!(line, 3);
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
