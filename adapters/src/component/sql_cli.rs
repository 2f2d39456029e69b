//! SQL databases reached through a client program on the target: `psql`, `mysql-cli` (the
//! mysql/mariadb client), `sqlite-cli` (the sqlite3 shell) and `sql-cli`, any vendor client
//! (gsql, ksql, disql, a sqlite3 built for another architecture run under qemu-user …) described
//! by a small output-format spec in the plan's `options`.
//!
//! Every operation runs the client once through [`Target::exec`](crate::target::Target::exec),
//! with the SQL on its standard input, so nothing but the client is needed on the target. The
//! consequence: session state does not outlive an operation. Tables persist (they are in the
//! database) but a `BEGIN` does not reach the next operation, so `sql.begin`/`sql.commit`/
//! `sql.rollback` are not offered (the kinds lack the `sql.tx` capability); a transaction is
//! written inside one operation (`BEGIN; …; ROLLBACK`).
//!
//! Passwords reach the client through its environment (`PGPASSWORD`, `MYSQL_PWD`, or the variable
//! `options.password_env` names), never its command line.
//!
//! `sql-cli` options: `format` (`tsv` (default), `csv`, `json` (arrays of objects, as
//! `sqlite3 -json`), `mysql-xml` (as `mysql --xml`)), `header` (`true` (default) / `false`), `null`
//! (the text the client prints for NULL, default `NULL`), `escapes` (`true`: TSV values use
//! backslash escapes `\t \n \\`), `error_regex` (output that means the statement failed even
//! though the client exited 0), `affected_regex` (an output line giving the affected row count in
//! its first group; such lines are not data), `ignore_regex` (other output lines that are not
//! data), `prelude` (text sent before the SQL, e.g. settings), `password_env` (default
//! `ADAPTEST_PASSWORD`), `dialect` (the `onlyif` label, e.g. `postgres`), `version_sql`
//! (default `select version()`). In `cli`, `{host}`, `{port}`, `{user}`, `{database}`, `{path}`
//! and `{workdir}` are replaced by the (shell-quoted) configured values.

use super::sql::{
    Access, Outcome, RowSet, SqlSettings, hex_text, looks_like_query, sql_capabilities,
    sql_error_text,
};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Secret, Session, arg_str,
    configured_identity,
};
use crate::target::{ExecRequest, Target, shell_quote};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What psql and sqlite3 are told to print for NULL (never a value a suite writes).
const NULL_MARK: &str = "<NULL:adaptest>";
/// The column name of the result that reports the affected row count after the SQL.
const AFFECTED_MARK: &str = "adaptest_affected";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Tsv,
    Json,
    MysqlXml,
}

/// How to read the client's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errors {
    Psql,
    Mysql,
    Sqlite,
    Generic,
}

/// How one kind of client is driven and read.
#[derive(Debug)]
struct CliSpec {
    /// The client and its flags, as run by `/bin/sh` on the target.
    command: String,
    /// The program's name, for messages.
    program: String,
    env: Vec<(String, String)>,
    password_env: Option<String>,
    prelude: String,
    /// Appended after the SQL: prints a result named [`AFFECTED_MARK`].
    epilogue: String,
    format: Format,
    header: bool,
    escapes: bool,
    null: Option<String>,
    error_regex: Option<Regex>,
    affected_regex: Option<Regex>,
    ignore_regex: Option<Regex>,
    errors: Errors,
    dialect: Option<String>,
    version_sql: String,
}

/// The CLI adapter of one configured component.
pub struct CliComponent {
    cfg: ComponentConfig,
    settings: SqlSettings,
    spec: Arc<CliSpec>,
}

impl CliComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        let settings = SqlSettings::from_config(cfg)?;
        if settings.kind.access != Access::Cli {
            return Err(settings.unsupported("open"));
        }
        let spec = build_spec(cfg, &settings).map_err(|r| settings.connect_err(r))?;
        Ok(CliComponent {
            cfg: cfg.clone(),
            settings,
            spec: Arc::new(spec),
        })
    }
}

fn build_spec(cfg: &ComponentConfig, settings: &SqlSettings) -> Result<CliSpec, String> {
    let kind = settings.kind;
    let opt = |name: &str| cfg.options.get(name).map(String::as_str);
    let regex = |name: &str| -> Result<Option<Regex>, String> {
        opt(name)
            .map(|r| {
                Regex::new(r).map_err(|e| format!("option `{name}` is not a valid regex: {e}"))
            })
            .transpose()
    };
    let flag = |name: &str, default: bool| -> Result<bool, String> {
        match opt(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "yes" | "1" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "off") => Ok(false),
            Some(v) => Err(format!("option `{name}` must be true or false, not `{v}`")),
        }
    };
    let cli = cfg.cli.clone().or(kind.default_cli.map(str::to_string));
    let Some(cli) = cli.filter(|c| !c.trim().is_empty()) else {
        return Err(format!(
            "kind `{}` needs `cli`: the client command on the target",
            kind.name
        ));
    };
    let program = cli.split_whitespace().next().unwrap_or("").to_string();
    let q = |s: &str| shell_quote(s);
    let host = cfg.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = cfg.port.or(kind.default_port);
    let user = cfg.user.as_deref().or(kind.default_user);
    let database = cfg.database.as_deref().or(kind.default_database);
    let base = CliSpec {
        command: String::new(),
        program,
        env: Vec::new(),
        password_env: None,
        prelude: String::new(),
        epilogue: String::new(),
        format: Format::Tsv,
        header: true,
        escapes: false,
        null: None,
        error_regex: None,
        affected_regex: None,
        ignore_regex: None,
        errors: Errors::Generic,
        dialect: None,
        version_sql: "select version()".into(),
    };
    Ok(match kind.name {
        "psql" => {
            let mut command = format!(
                "{cli} -X -q -w --csv -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -P {} -h {}",
                q(&format!("null={NULL_MARK}")),
                q(&host)
            );
            if let Some(p) = port {
                command.push_str(&format!(" -p {p}"));
            }
            if let Some(u) = user {
                command.push_str(&format!(" -U {}", q(u)));
            }
            if let Some(d) = database {
                command.push_str(&format!(" -d {}", q(d)));
            }
            CliSpec {
                command,
                // As the driver's session: UTF-8, UTC, ISO dates.
                env: vec![
                    ("PGCLIENTENCODING".into(), "UTF8".into()),
                    ("PGTZ".into(), "UTC".into()),
                    ("PGDATESTYLE".into(), "ISO, MDY".into()),
                    ("PGAPPNAME".into(), "adaptest".into()),
                    (
                        "PGCONNECT_TIMEOUT".into(),
                        settings.connect_timeout.as_secs().max(1).to_string(),
                    ),
                ],
                password_env: Some("PGPASSWORD".into()),
                epilogue: format!("\\echo {AFFECTED_MARK}\n\\echo :ROW_COUNT\n"),
                format: Format::Csv,
                null: Some(NULL_MARK.into()),
                errors: Errors::Psql,
                ..base
            }
        }
        "mysql-cli" => {
            let mut command = format!(
                "{cli} --xml --default-character-set=utf8mb4 --connect-timeout={} --init-command={} -h {}",
                settings.connect_timeout.as_secs().max(1),
                q("SET time_zone='+00:00'"),
                q(&host)
            );
            if host != "localhost" {
                // a host name, not the socket the client's my.cnf may name
                command.push_str(" --protocol=TCP");
            }
            if let Some(p) = port {
                command.push_str(&format!(" -P {p}"));
            }
            if let Some(u) = user {
                command.push_str(&format!(" -u {}", q(u)));
            }
            if let Some(d) = database {
                command.push_str(&format!(" {}", q(d)));
            }
            CliSpec {
                command,
                password_env: Some("MYSQL_PWD".into()),
                epilogue: format!("SELECT ROW_COUNT() AS {AFFECTED_MARK};\n"),
                format: Format::MysqlXml,
                errors: Errors::Mysql,
                ..base
            }
        }
        "sqlite-cli" => {
            let path = match &cfg.path {
                Some(p) => p.display().to_string(),
                None => "{workdir}/adaptest.sqlite3".into(),
            };
            CliSpec {
                command: format!("{cli} {}", if cfg.path.is_some() { q(&path) } else { path }),
                // As the driver's connection: stop at the first error, enforce foreign keys, wait
                // for locks held by concurrent sessions.
                prelude: format!(
                    ".bail on\n.timeout 30000\n.headers on\n.mode csv\n.nullvalue {NULL_MARK}\nPRAGMA foreign_keys=ON;\n"
                ),
                epilogue: format!("SELECT changes() AS {AFFECTED_MARK};\n"),
                format: Format::Csv,
                null: Some(NULL_MARK.into()),
                errors: Errors::Sqlite,
                version_sql: "select sqlite_version()".into(),
                ..base
            }
        }
        _ => {
            let mut command = cli.clone();
            for (name, value) in [
                ("{host}", Some(host.clone())),
                ("{port}", port.map(|p| p.to_string())),
                ("{user}", user.map(str::to_string)),
                ("{database}", database.map(str::to_string)),
                ("{path}", cfg.path.as_ref().map(|p| p.display().to_string())),
            ] {
                if command.contains(name) {
                    let Some(v) = value else {
                        return Err(format!(
                            "`cli` uses {name} but the component sets no value for it"
                        ));
                    };
                    command = command.replace(name, &q(&v));
                }
            }
            let format = match opt("format").unwrap_or("tsv") {
                "tsv" => Format::Tsv,
                "csv" => Format::Csv,
                "json" => Format::Json,
                "mysql-xml" => Format::MysqlXml,
                other => {
                    return Err(format!(
                        "option `format` must be tsv, csv, json or mysql-xml, not `{other}`"
                    ));
                }
            };
            CliSpec {
                command,
                password_env: Some(
                    opt("password_env")
                        .unwrap_or("ADAPTEST_PASSWORD")
                        .to_string(),
                ),
                prelude: opt("prelude").map(|p| format!("{p}\n")).unwrap_or_default(),
                format,
                header: flag("header", true)?,
                escapes: flag("escapes", false)?,
                null: Some(opt("null").unwrap_or("NULL").to_string()),
                error_regex: regex("error_regex")?,
                affected_regex: regex("affected_regex")?,
                ignore_regex: regex("ignore_regex")?,
                dialect: opt("dialect").map(str::to_string),
                version_sql: opt("version_sql").unwrap_or("select version()").to_string(),
                ..base
            }
        }
    })
}

#[async_trait::async_trait]
impl Component for CliComponent {
    configured_identity!(sql_capabilities);

    /// Nothing to connect: every operation runs the client afresh (the first one reports a
    /// server that cannot be reached or a rejected password).
    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        Ok(Box::new(CliSession {
            settings: self.settings.clone(),
            spec: self.spec.clone(),
            command: self
                .spec
                .command
                .replace("{workdir}", &shell_quote(&endpoint.workdir)),
            password: self.cfg.password.clone(),
            target: endpoint.target.clone(),
            workdir: endpoint.workdir.clone(),
        }))
    }
}

struct CliSession {
    settings: SqlSettings,
    spec: Arc<CliSpec>,
    command: String,
    password: Option<Secret>,
    target: Arc<dyn Target>,
    workdir: String,
}

impl CliSession {
    async fn run(&mut self, sql: &str, want_rows: bool) -> Result<Outcome, ComponentError> {
        let spec = &self.spec;
        let mut input =
            String::with_capacity(spec.prelude.len() + sql.len() + spec.epilogue.len() + 4);
        input.push_str(&spec.prelude);
        input.push_str(sql.trim_end());
        if !sql.trim_end().ends_with(';') {
            // on its own line: the SQL may end in a `--` comment
            input.push_str("\n;");
        }
        input.push('\n');
        input.push_str(&spec.epilogue);
        let mut req = ExecRequest::new(self.command.clone(), self.settings.op_timeout);
        req.stdin = Some(input.into_bytes());
        req.capture_limit = 64 << 20;
        if !self.workdir.is_empty() {
            req.cwd = Some(self.workdir.clone());
        }
        req.env = spec.env.clone();
        if let (Some(var), Some(pw)) = (&spec.password_env, &self.password) {
            req.env.push((var.clone(), pw.expose().to_string()));
        }
        let out = self.target.exec(req, &CancellationToken::new()).await?;
        if out.timed_out {
            return Err(self.settings.lost(format!(
                "`{}` gave no answer within {} ms (option timeout_ms); it was killed",
                spec.program,
                self.settings.op_timeout.as_millis()
            )));
        }
        if out.cancelled {
            return Err(self.settings.lost("cancelled"));
        }
        if out.stdout_dropped > 0 {
            return Err(ComponentError::Operation(format!(
                "the result is larger than {} MiB",
                out.stdout.len() >> 20
            )));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.exit_code != Some(0) {
            return Err(self.client_error(out.exit_code, &stderr, &out.stdout));
        }
        if let Some(re) = &spec.error_regex {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = stdout
                .lines()
                .chain(stderr.lines())
                .find(|l| re.is_match(l))
            {
                return Err(classify_generic(&self.settings, line.trim(), &stderr));
            }
        }
        let parsed = parse_output(spec, &out.stdout).map_err(|e| {
            ComponentError::Operation(format!("cannot read the output of `{}`: {e}", spec.program))
        })?;
        Ok(parsed.outcome(sql, want_rows))
    }

    /// Turn a failed client run into the right error: the server's SQL error, or a connection
    /// problem (refused, authentication failed), or a missing client.
    fn client_error(&self, code: Option<i32>, stderr: &str, stdout: &[u8]) -> ComponentError {
        let program = &self.spec.program;
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(stdout).trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        if code == Some(127) || (code == Some(126) && text.contains(program.as_str())) {
            return self.settings.connect_err(format!(
                "the client `{program}` cannot be run on target `{}`: {}",
                self.target.id(),
                short(&text)
            ));
        }
        let Some(code) = code else {
            return self.settings.lost(format!(
                "`{program}` was killed by a signal: {}",
                short(&text)
            ));
        };
        match self.spec.errors {
            Errors::Psql => psql_error(&self.settings, code, &text),
            Errors::Mysql => mysql_error(&self.settings, &text),
            Errors::Sqlite => sqlite_error(&self.settings, &text),
            Errors::Generic => classify_generic(&self.settings, &text, &text),
        }
    }
}

/// At most 1000 characters of a message.
fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 1000 {
        return s.to_string();
    }
    let mut t: String = s.chars().take(1000).collect();
    t.push('…');
    t
}

/// A connection problem in words a certifier understands.
fn connect_problem(settings: &SqlSettings, text: &str) -> ComponentError {
    let lower = text.to_lowercase();
    let what = if lower.contains("authentication failed")
        || lower.contains("access denied")
        || lower.contains("password")
    {
        "authentication failed (wrong user name or password?)"
    } else if lower.contains("connection refused") {
        "connection refused (is the server running and listening there?)"
    } else {
        "cannot connect"
    };
    settings.connect_err(format!("{what}: {}", short(text)))
}

fn classify_generic(settings: &SqlSettings, message: &str, all: &str) -> ComponentError {
    let lower = all.to_lowercase();
    let connecting = [
        "authentication failed",
        "access denied",
        "connection refused",
        "could not connect",
        "can't connect",
        "unable to open database",
        "could not translate host",
    ];
    if connecting.iter().any(|c| lower.contains(c)) {
        connect_problem(settings, all)
    } else {
        ComponentError::Operation(short(message))
    }
}

/// psql exits 2 when the connection failed and 3 when a statement failed (`ON_ERROR_STOP`);
/// `VERBOSITY=verbose` puts the SQLSTATE in front of the message (`ERROR:  23505: …`).
fn psql_error(settings: &SqlSettings, code: i32, text: &str) -> ComponentError {
    if code == 2 {
        return connect_problem(settings, text.trim_start_matches("psql: error: "));
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.contains("ERROR:") || l.contains("FATAL:"))
    else {
        return ComponentError::Operation(short(text));
    };
    let first = lines[start];
    let body = first
        .split_once("ERROR:")
        .or_else(|| first.split_once("FATAL:"))
        .map_or(first, |(_, b)| b)
        .trim();
    let (sqlstate, message) = match body.split_once(": ") {
        Some((c, m)) if c.len() == 5 && c.chars().all(|ch| ch.is_ascii_alphanumeric()) => {
            (Some(c), m)
        }
        _ => (None, body),
    };
    let mut detail = Vec::new();
    for l in &lines[start + 1..] {
        let t = l.trim_start();
        if let Some(d) = t
            .strip_prefix("DETAIL:")
            .or_else(|| t.strip_prefix("HINT:"))
        {
            detail.push(d.trim());
        } else if t.starts_with("LINE ")
            || t.starts_with('^')
            || t.contains("NAME:")
            || t.starts_with("LOCATION:")
        {
            continue;
        } else if t.contains("ERROR:") {
            break;
        }
    }
    let codes = sqlstate
        .map(|c| format!("SQLSTATE {c}"))
        .unwrap_or_default();
    let detail = (!detail.is_empty()).then(|| detail.join(" "));
    let text = sql_error_text(message, &codes, detail.as_deref());
    if sqlstate.is_some_and(super::sql_errors::postgres_server_gone) {
        return settings.lost(short(&text));
    }
    ComponentError::Operation(text)
}

/// `ERROR 1062 (23000) at line 1: Duplicate entry …`; client errors (2xxx) are connection
/// problems, 1045 is a rejected password.
fn mysql_error(settings: &SqlSettings, text: &str) -> ComponentError {
    let re = Regex::new(r"ERROR (\d+)(?: \(([0-9A-Z]{5})\))?(?: at line \d+)?: (.*)")
        .expect("valid regex");
    let Some(line) = text.lines().find(|l| re.is_match(l)) else {
        return classify_generic(settings, text, text);
    };
    let c = re.captures(line).expect("matched");
    let number: u32 = c[1].parse().unwrap_or(0);
    let message = c[3].to_string();
    // the message may continue on the following lines
    let rest: Vec<&str> = text.lines().skip_while(|l| *l != line).skip(1).collect();
    let message = if rest.is_empty() {
        message
    } else {
        format!("{message}\n{}", rest.join("\n"))
    };
    let codes = match c.get(2) {
        Some(s) => format!("error {number}, SQLSTATE {}", s.as_str()),
        None => format!("error {number}"),
    };
    let full = sql_error_text(&message, &codes, None);
    match number {
        1045 | 1698 | 1251 => settings.connect_err(format!(
            "authentication failed (wrong user name or password?): {}",
            short(&full)
        )),
        // the MariaDB client reports a refused connection as errno 115 (EINPROGRESS)
        2002 | 2003 if message.contains("(111)") || message.contains("(115)") => settings
            .connect_err(format!(
                "connection refused (is the server running and listening there?): {}",
                short(&full)
            )),
        n if super::sql_errors::mysql_server_gone(n) => settings.lost(short(&full)),
        2000..=2999 => connect_problem(settings, &full),
        _ => ComponentError::Operation(full),
    }
}

/// `Runtime error near line 7: UNIQUE constraint failed: t.a (19)`, `Parse error near line 3: …`,
/// `Error: unable to open database "x"`.
fn sqlite_error(settings: &SqlSettings, text: &str) -> ComponentError {
    let line = text
        .lines()
        .find(|l| l.contains("error") || l.contains("Error"))
        .unwrap_or(text)
        .trim();
    if line.contains("unable to open database") {
        return settings.connect_err(short(text));
    }
    let body = match line.find(": ") {
        Some(i) if line[..i].contains("rror") => &line[i + 2..],
        _ => line,
    };
    let re = Regex::new(r"^(.*) \((\d+)\)$").expect("valid regex");
    let rest: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != line)
        .skip(1)
        .collect();
    let full = match re.captures(body) {
        Some(c) => sql_error_text(&c[1], &format!("error {}", &c[2]), None),
        None => sql_error_text(body, "", None),
    };
    let full = if rest.is_empty() {
        full
    } else {
        format!("{full}\n{}", rest.join("\n"))
    };
    ComponentError::Operation(full)
}

#[async_trait::async_trait]
impl Session for CliSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let sql = self.spec.version_sql.clone();
        Ok(self.run(&sql, true).await?.into_first_value())
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "sql.query" => Ok(self.run(arg_str(op, args, "sql")?, true).await?.into_json()),
            "sql.exec" => match self.run(arg_str(op, args, "sql")?, false).await? {
                Outcome::Affected(n) => Ok(json!({ "affected": n })),
                Outcome::Rows(r) => Ok(json!({ "affected": r.rows.len() })),
            },
            "sql.info" => Ok(self.settings.info(self.spec.dialect.as_deref())),
            other => Err(self.settings.unsupported(other)),
        }
    }
}

// ---------------------------------------------------------------- reading the output

/// What the client printed: result sets in order, and the affected row count if it said.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    sets: Vec<RowSet>,
    affected: Option<u64>,
}

impl Parsed {
    fn outcome(mut self, sql: &str, want_rows: bool) -> Outcome {
        if !want_rows {
            return Outcome::Affected(self.affected);
        }
        if self.sets.is_empty() {
            // Clients that print nothing for an empty result (sqlite3) cannot tell it from a
            // statement without rows: judge by the statement.
            return if looks_like_query(sql) {
                Outcome::Rows(RowSet::default())
            } else {
                Outcome::Affected(self.affected)
            };
        }
        let mut first = self.sets.remove(0);
        for s in self.sets {
            first.rows.extend(s.rows);
        }
        if first.types.is_empty() {
            first.types = infer_types(&first);
        }
        Outcome::Rows(first)
    }
}

/// Type letters judged from the values (a client prints no types): all integers → `I`, all
/// numbers → `R`, else `T`.
fn infer_types(set: &RowSet) -> Vec<String> {
    (0..set.columns.len())
        .map(|i| {
            let mut values = set
                .rows
                .iter()
                .filter_map(|r| r.get(i).cloned().flatten())
                .peekable();
            if values.peek().is_none() {
                return "T".to_string();
            }
            let mut all_int = true;
            let mut all_num = true;
            for v in values {
                let v = v.trim();
                if v.parse::<i128>().is_err() {
                    all_int = false;
                }
                if v.parse::<f64>().is_err() {
                    all_num = false;
                }
            }
            if all_int {
                "I"
            } else if all_num {
                "R"
            } else {
                "T"
            }
            .to_string()
        })
        .collect()
}

/// Bytes as text: UTF-8 as it is, anything else as `\x` hex.
fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => hex_text(b),
    }
}

fn parse_output(spec: &CliSpec, stdout: &[u8]) -> Result<Parsed, String> {
    let mut affected = None;
    // Lines that are not data: affected-count lines and ignored lines (generic clients).
    let stdout: std::borrow::Cow<'_, [u8]> =
        if spec.affected_regex.is_some() || spec.ignore_regex.is_some() {
            let mut kept = Vec::with_capacity(stdout.len());
            for line in stdout.split_inclusive(|b| *b == b'\n') {
                let text = String::from_utf8_lossy(line);
                let t = text.trim_end_matches(['\r', '\n']);
                if let Some(c) = spec.affected_regex.as_ref().and_then(|re| re.captures(t)) {
                    affected = c
                        .get(1)
                        .and_then(|m| m.as_str().parse::<u64>().ok())
                        .or(affected);
                    continue;
                }
                if spec.ignore_regex.as_ref().is_some_and(|re| re.is_match(t)) {
                    continue;
                }
                kept.extend_from_slice(line);
            }
            kept.into()
        } else {
            stdout.into()
        };
    let mut parsed = match spec.format {
        Format::Csv => records_to_sets(parse_csv(&stdout)?, spec),
        Format::Tsv => records_to_sets(parse_tsv(&stdout, spec.escapes), spec),
        Format::Json => parse_json_sets(&stdout)?,
        Format::MysqlXml => parse_mysql_xml(&stdout)?,
    };
    // The marker result the epilogue printed, last.
    if let Some(last) = parsed.sets.last()
        && last.columns.len() == 1
        && last.columns[0] == AFFECTED_MARK
    {
        let n = last
            .rows
            .last()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.trim().parse::<i64>().ok());
        parsed.affected = n.map(|n| n.max(0) as u64);
        parsed.sets.pop();
    }
    if parsed.affected.is_none() {
        parsed.affected = affected;
    }
    Ok(parsed)
}

/// One field of a delimited record: its bytes and whether it was quoted.
type Field = (Vec<u8>, bool);

/// Records (header first) into result sets. Delimited output has no boundaries between results,
/// so everything is one set, except the marker the epilogue printed last (two records).
fn records_to_sets(mut records: Vec<Vec<Field>>, spec: &CliSpec) -> Parsed {
    let mut parsed = Parsed::default();
    let n = records.len();
    let marker_at = n.checked_sub(2).filter(|&i| {
        records[i].len() == 1
            && records[i][0].0 == AFFECTED_MARK.as_bytes()
            && records[i + 1].len() == 1
    });
    let marker = marker_at.map(|i| records.split_off(i));
    let value = |(bytes, quoted): Field| -> Option<String> {
        if !quoted
            && spec
                .null
                .as_deref()
                .is_some_and(|n| n.as_bytes() == bytes.as_slice())
        {
            None
        } else {
            Some(bytes_text(&bytes))
        }
    };
    if !records.is_empty() {
        let mut it = records.into_iter();
        let mut set = RowSet::default();
        if spec.header {
            let header = it.next().expect("not empty");
            set.columns = header.into_iter().map(|(b, _)| bytes_text(&b)).collect();
        }
        for r in it {
            set.rows.push(r.into_iter().map(value).collect());
        }
        if !spec.header {
            let width = set.rows.iter().map(Vec::len).max().unwrap_or(0);
            set.columns = (1..=width).map(|i| format!("column{i}")).collect();
        }
        parsed.sets.push(set);
    }
    if let Some(mut m) = marker {
        let count = m.pop().expect("two records").remove(0);
        parsed.sets.push(RowSet {
            columns: vec![AFFECTED_MARK.into()],
            types: vec!["I".into()],
            rows: vec![vec![Some(bytes_text(&count.0))]],
        });
    }
    parsed
}

/// RFC 4180 CSV (quotes doubled inside quoted fields; newlines inside quotes are data; CRLF or
/// LF between records).
fn parse_csv(input: &[u8]) -> Result<Vec<Vec<Field>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<Field> = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    let mut at_record_start = true;
    while i < input.len() {
        let b = input[i];
        if in_quotes {
            if b == b'"' {
                if input.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(b);
            }
        } else {
            match b {
                b'"' if field.is_empty() && !quoted => {
                    in_quotes = true;
                    quoted = true;
                }
                b',' => record.push((
                    std::mem::take(&mut field),
                    std::mem::replace(&mut quoted, false),
                )),
                b'\r' if input.get(i + 1) == Some(&b'\n') => {}
                b'\n' => {
                    record.push((
                        std::mem::take(&mut field),
                        std::mem::replace(&mut quoted, false),
                    ));
                    records.push(std::mem::take(&mut record));
                    at_record_start = true;
                    i += 1;
                    continue;
                }
                _ => field.push(b),
            }
        }
        at_record_start = false;
        i += 1;
    }
    if in_quotes {
        return Err("a quoted CSV field is not closed".into());
    }
    if !at_record_start {
        record.push((field, quoted));
        records.push(record);
    }
    Ok(records)
}

/// Tab-separated lines; with `escapes`, `\t`, `\n`, `\r`, `\0` and `\\` inside values.
fn parse_tsv(input: &[u8], escapes: bool) -> Vec<Vec<Field>> {
    let mut records = Vec::new();
    for line in input.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        records.push(
            line.split(|b| *b == b'\t')
                .map(|f| {
                    if !escapes {
                        return (f.to_vec(), false);
                    }
                    let mut out = Vec::with_capacity(f.len());
                    let mut it = f.iter();
                    while let Some(&b) = it.next() {
                        if b == b'\\' {
                            match it.next() {
                                Some(b't') => out.push(b'\t'),
                                Some(b'n') => out.push(b'\n'),
                                Some(b'r') => out.push(b'\r'),
                                Some(b'0') => out.push(0),
                                Some(&o) => out.push(o),
                                None => out.push(b'\\'),
                            }
                        } else {
                            out.push(b);
                        }
                    }
                    (out, false)
                })
                .collect(),
        );
    }
    // the newline after the last line does not start a record
    if records
        .last()
        .is_some_and(|r: &Vec<Field>| r.len() == 1 && r[0].0.is_empty())
    {
        records.pop();
    }
    records
}

/// A JSON object with its keys in the order written.
struct OrderedObject(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A sequence of JSON arrays of objects (`sqlite3 -json`), one per result.
fn parse_json_sets(input: &[u8]) -> Result<Parsed, String> {
    let text = String::from_utf8_lossy(input);
    let mut parsed = Parsed::default();
    for item in serde_json::Deserializer::from_str(&text).into_iter::<Vec<OrderedObject>>() {
        let objects = item.map_err(|e| e.to_string())?;
        let mut set = RowSet::default();
        for (i, obj) in objects.into_iter().enumerate() {
            if i == 0 {
                set.columns = obj.0.iter().map(|(k, _)| k.clone()).collect();
            }
            set.rows.push(
                obj.0
                    .into_iter()
                    .map(|(_, v)| match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            );
        }
        parsed.sets.push(set);
    }
    Ok(parsed)
}

/// `mysql --xml`: `<resultset>` elements of `<row>`s of `<field name="…">value</field>` (or
/// `xsi:nil="true"` for NULL). Values may be any bytes; they are read as bytes.
fn parse_mysql_xml(input: &[u8]) -> Result<Parsed, String> {
    fn find(h: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        h.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }
    let mut parsed = Parsed::default();
    let mut pos = 0;
    while let Some(start) = find(input, b"<resultset", pos) {
        let open_end = find(input, b">", start).ok_or("unterminated <resultset>")?;
        let mut set = RowSet::default();
        if input[open_end - 1] == b'/' {
            pos = open_end + 1;
            parsed.sets.push(set);
            continue;
        }
        let end = find(input, b"</resultset>", open_end).ok_or("missing </resultset>")?;
        let body = &input[open_end + 1..end];
        let mut rp = 0;
        let mut first = true;
        while let Some(rs) = find(body, b"<row>", rp) {
            let re = find(body, b"</row>", rs).ok_or("missing </row>")?;
            let row_body = &body[rs + 5..re];
            let mut values = Vec::new();
            let mut fp = 0;
            while let Some(fs) = find(row_body, b"<field name=\"", fp) {
                let name_start = fs + 13;
                let name_end =
                    find(row_body, b"\"", name_start).ok_or("unterminated field name")?;
                let name = unescape_xml(&row_body[name_start..name_end]);
                let tag_end = find(row_body, b">", name_end).ok_or("unterminated <field>")?;
                let tag = &row_body[name_end..tag_end];
                if first {
                    set.columns.push(bytes_text(&name));
                }
                if tag.ends_with(b"/") {
                    // <field name="b" xsi:nil="true" />
                    values.push(if find(tag, b"xsi:nil=\"true\"", 0).is_some() {
                        None
                    } else {
                        Some(String::new())
                    });
                    fp = tag_end + 1;
                } else {
                    let close = find(row_body, b"</field>", tag_end).ok_or("missing </field>")?;
                    values.push(Some(bytes_text(&unescape_xml(
                        &row_body[tag_end + 1..close],
                    ))));
                    fp = close + 8;
                }
            }
            first = false;
            set.rows.push(values);
            rp = re + 6;
        }
        parsed.sets.push(set);
        pos = end + 12;
    }
    Ok(parsed)
}

fn unescape_xml(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'&'
            && let Some(len) = b[i..].iter().take(12).position(|c| *c == b';')
        {
            let ent = &b[i + 1..i + len];
            let rep: Option<Vec<u8>> = match ent {
                b"lt" => Some(b"<".to_vec()),
                b"gt" => Some(b">".to_vec()),
                b"amp" => Some(b"&".to_vec()),
                b"quot" => Some(b"\"".to_vec()),
                b"apos" => Some(b"'".to_vec()),
                _ if ent.first() == Some(&b'#') => {
                    let digits = String::from_utf8_lossy(&ent[1..]).to_string();
                    let n = match digits.strip_prefix('x') {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => digits.parse::<u32>().ok(),
                    };
                    n.and_then(char::from_u32)
                        .map(|c| c.to_string().into_bytes())
                }
                _ => None,
            };
            if let Some(r) = rep {
                out.extend_from_slice(&r);
                i += len + 1;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::sql::{Dialect, sql_kind};

    fn spec_for(kind: &str, options: &[(&str, &str)]) -> CliSpec {
        let cfg = ComponentConfig {
            id: "c".into(),
            kind: kind.into(),
            cli: (kind == "sql-cli").then(|| "vendorsql -h {host}".into()),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        build_spec(&cfg, &SqlSettings::from_config(&cfg).unwrap()).unwrap()
    }

    fn rows(o: &Outcome) -> (Vec<String>, Vec<Vec<Option<String>>>) {
        match o {
            Outcome::Rows(r) => (r.columns.clone(), r.rows.clone()),
            Outcome::Affected(n) => panic!("affected {n:?}"),
        }
    }

    #[test]
    fn psql_csv_with_nulls_quotes_newlines_and_the_marker() {
        let spec = spec_for("psql", &[]);
        let out = b"a,b,c,d\n1,<NULL:adaptest>,,\"x,\"\"y\nz\"\nadaptest_affected\n1\n";
        let p = parse_output(&spec, out).unwrap();
        assert_eq!(p.affected, Some(1));
        let (cols, r) = rows(&p.outcome("select", true));
        assert_eq!(cols, ["a", "b", "c", "d"]);
        assert_eq!(
            r,
            [vec![
                Some("1".into()),
                None,
                Some("".into()),
                Some("x,\"y\nz".into())
            ]]
        );
    }

    #[test]
    fn psql_statement_without_rows_is_affected() {
        let spec = spec_for("psql", &[]);
        let p = parse_output(&spec, b"adaptest_affected\n3\n").unwrap();
        assert_eq!(
            p.outcome("insert into t values (1)", true),
            Outcome::Affected(Some(3))
        );
    }

    #[test]
    fn sqlite_csv_crlf_and_binary() {
        let spec = spec_for("sqlite-cli", &[]);
        let mut out = b"h,t\r\n\"\x01\xff\",\"\xe4\xb8\xad\"\r\n".to_vec();
        out.extend_from_slice(b"adaptest_affected\r\n0\r\n");
        let (cols, r) = rows(&parse_output(&spec, &out).unwrap().outcome("select", true));
        assert_eq!(cols, ["h", "t"]);
        assert_eq!(r, [vec![Some("\\x01ff".into()), Some("中".into())]]);
        // an empty result prints nothing: judged by the statement
        let p = parse_output(&spec, b"adaptest_affected\r\n0\r\n").unwrap();
        assert_eq!(
            p.outcome("select 1 where 0", true),
            Outcome::Rows(RowSet::default())
        );
    }

    #[test]
    fn mysql_xml_sets_nulls_and_entities() {
        let out = "<?xml version=\"1.0\"?>\n\n<resultset statement=\"select\" xmlns:xsi=\"x\">\n  <row>\n\t<field name=\"a\">1</field>\n\t<field name=\"b\" xsi:nil=\"true\" />\n\t<field name=\"c\">x&lt;y&amp;</field>\n  </row>\n</resultset>\n<?xml version=\"1.0\"?>\n\n<resultset statement=\"select ROW_COUNT()\" xmlns:xsi=\"x\">\n  <row>\n\t<field name=\"adaptest_affected\">-1</field>\n  </row>\n</resultset>\n";
        let spec = spec_for("mysql-cli", &[]);
        let p = parse_output(&spec, out.as_bytes()).unwrap();
        assert_eq!(p.affected, Some(0));
        let (cols, r) = rows(&p.outcome("select", true));
        assert_eq!(cols, ["a", "b", "c"]);
        assert_eq!(r, [vec![Some("1".into()), None, Some("x<y&".into())]]);
        let empty = "<resultset statement=\"s\" xmlns:xsi=\"x\"></resultset>";
        let (cols, r) = rows(
            &parse_output(&spec, empty.as_bytes())
                .unwrap()
                .outcome("select", true),
        );
        assert!(cols.is_empty() && r.is_empty());
    }

    #[test]
    fn generic_tsv_with_tags_and_escapes() {
        let spec = spec_for(
            "sql-cli",
            &[
                ("affected_regex", r"^(?:INSERT \d+|UPDATE|DELETE) (\d+)$"),
                ("ignore_regex", r"^\(\d+ rows?\)$"),
                ("escapes", "true"),
            ],
        );
        assert_eq!(spec.command, "vendorsql -h '127.0.0.1'");
        let p = parse_output(&spec, b"a\tb\n1\tNULL\nx\\ty\t\\\\\n(2 rows)\n").unwrap();
        let (cols, r) = rows(&p.outcome("select", true));
        assert_eq!(cols, ["a", "b"]);
        assert_eq!(
            r,
            [
                vec![Some("1".into()), None],
                vec![Some("x\ty".into()), Some("\\".into())]
            ]
        );
        let p = parse_output(&spec, b"INSERT 0 2\n").unwrap();
        assert_eq!(p.outcome("insert", false), Outcome::Affected(Some(2)));
    }

    #[test]
    fn generic_json_keeps_column_order() {
        let spec = spec_for("sql-cli", &[("format", "json")]);
        let p = parse_output(&spec, br#"[{"z":1,"a":null,"m":"t"}]"#).unwrap();
        let (cols, r) = rows(&p.outcome("select", true));
        assert_eq!(cols, ["z", "a", "m"]);
        assert_eq!(r, [vec![Some("1".into()), None, Some("t".into())]]);
    }

    #[test]
    fn psql_errors_keep_sqlstate_and_detail() {
        let s = SqlSettings::from_config(&ComponentConfig {
            id: "pg".into(),
            kind: "psql".into(),
            ..Default::default()
        })
        .unwrap();
        let e = psql_error(
            &s,
            3,
            "NOTICE:  00000: x\nLOCATION:  a\nERROR:  23505: duplicate key value violates unique constraint \"zz_pkey\"\nDETAIL:  Key (a)=(1) already exists.\nSCHEMA NAME:  public\nLOCATION:  _bt_check_unique, nbtinsert.c:664\n",
        );
        assert_eq!(
            e.to_string(),
            "duplicate key value violates unique constraint \"zz_pkey\" (SQLSTATE 23505); DETAIL: Key (a)=(1) already exists."
        );
        let e = psql_error(
            &s,
            2,
            "psql: error: connection to server at \"127.0.0.1\", port 5999 failed: Connection refused",
        );
        assert!(matches!(e, ComponentError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert!(sql_kind("psql").is_some());
    }

    #[test]
    fn mysql_and_sqlite_errors() {
        let s = SqlSettings::from_config(&ComponentConfig {
            id: "m".into(),
            kind: "mysql-cli".into(),
            ..Default::default()
        })
        .unwrap();
        let e = mysql_error(
            &s,
            "ERROR 1062 (23000) at line 1: Duplicate entry '1' for key 'PRIMARY'",
        );
        assert_eq!(
            e.to_string(),
            "Duplicate entry '1' for key 'PRIMARY' (error 1062, SQLSTATE 23000)"
        );
        let e = mysql_error(
            &s,
            "ERROR 1045 (28000): Access denied for user 'u'@'localhost' (using password: YES)",
        );
        assert!(e.to_string().contains("authentication failed"), "{e}");
        let e = mysql_error(
            &s,
            "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (111)",
        );
        assert!(e.to_string().contains("connection refused"), "{e}");
        let e = sqlite_error(
            &s,
            "Runtime error near line 11: UNIQUE constraint failed: t.a (19)",
        );
        assert_eq!(e.to_string(), "UNIQUE constraint failed: t.a (error 19)");
        let e = sqlite_error(
            &s,
            "Parse error near line 6: near \"selec\": syntax error\n  selec 1;\n  ^--- error here",
        );
        assert!(
            e.to_string().starts_with("near \"selec\": syntax error"),
            "{e}"
        );
    }

    #[test]
    fn dialect_of_generic_cli_is_an_option() {
        let spec = spec_for("sql-cli", &[("dialect", "postgres")]);
        assert_eq!(spec.dialect.as_deref(), Some("postgres"));
        assert_eq!(Dialect::Other.label(), "sql");
    }
}
