//! SQL databases reached through a driver in the harness (sqlx): PostgreSQL and the
//! PostgreSQL-compatible openGauss and KingbaseES, MySQL and the MySQL-compatible MariaDB,
//! OceanBase and TiDB, and SQLite (embedded: it runs inside the harness, not on the target).
//!
//! Also the parts every SQL adapter shares (kinds, engine labels, result shapes, error text), so
//! the CLI adapters in `sql_cli.rs` answer exactly like the drivers do.
//!
//! Operations: `sql.query {sql}` → `{"columns", "types", "rows"}` (values as text, `null` for
//! NULL) or `{"affected": n}` for statements that return no rows; `sql.exec {sql}` →
//! `{"affected": n}`; `sql.begin` / `sql.commit` / `sql.rollback` → `{}`; `sql.info` →
//! `{"kind", "dialect", "access", "labels"}`.
//!
//! Options: `connect_timeout_ms` (default 10 s), `timeout_ms` (one operation on a server,
//! default 300 s; embedded SQLite is not timed),
//! `sslmode` (PostgreSQL: `disable`, `prefer` (default), `require`, `verify-ca`, `verify-full`;
//! MySQL: `disabled`, `preferred` (default), `required`, `verify_ca`, `verify_identity`).
//!
//! (long because the kind table, the settings/rows/outcome types shared with `sql_cli`, and one sqlx `Session` generic over its three drivers)

use super::net::{self, Settings};
use super::{
    Component, ComponentConfig, ComponentError, Endpoint, Session, arg_str, configured_identity,
    kind_capabilities,
};
use serde_json::{Map, Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Decode, Either, Executor, Row, SqlSafeStr,
    Statement, TypeInfo, ValueRef,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------- kinds

/// The SQL family a kind speaks; also a `skipif`/`onlyif` label in `.slt` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
    /// A vendor CLI (`sql-cli`) whose dialect the plan names in `options.dialect`.
    Other,
}

impl Dialect {
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Other => "sql",
        }
    }
}

/// How the harness reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A driver in the harness, connected to the (forwarded) port.
    Driver,
    /// A client program run on the target for every operation.
    Cli,
}

impl Access {
    pub fn label(self) -> &'static str {
        match self {
            Access::Driver => "driver",
            Access::Cli => "cli",
        }
    }
}

/// One SQL component kind: its dialect, how it is reached, and its defaults.
#[derive(Debug, Clone, Copy)]
pub struct SqlKind {
    pub name: &'static str,
    pub dialect: Dialect,
    pub access: Access,
    pub default_port: Option<u16>,
    pub default_user: Option<&'static str>,
    pub default_database: Option<&'static str>,
    /// CLI kinds: the client program when the plan gives no `cli`.
    pub default_cli: Option<&'static str>,
}

const fn kind(
    name: &'static str,
    dialect: Dialect,
    access: Access,
    port: Option<u16>,
    user: Option<&'static str>,
    database: Option<&'static str>,
    cli: Option<&'static str>,
) -> SqlKind {
    SqlKind {
        name,
        dialect,
        access,
        default_port: port,
        default_user: user,
        default_database: database,
        default_cli: cli,
    }
}

use Access::{Cli, Driver};
use Dialect::{Mysql, Other, Postgres, Sqlite};

/// Every SQL kind this build knows (they are registered in `COMPONENT_KINDS` too).
pub const SQL_KINDS: &[SqlKind] = &[
    kind(
        "postgres",
        Postgres,
        Driver,
        Some(5432),
        Some("postgres"),
        None,
        None,
    ),
    kind(
        "opengauss",
        Postgres,
        Driver,
        Some(5432),
        Some("omm"),
        Some("postgres"),
        None,
    ),
    kind(
        "kingbase",
        Postgres,
        Driver,
        Some(54321),
        Some("system"),
        Some("test"),
        None,
    ),
    kind("mysql", Mysql, Driver, Some(3306), Some("root"), None, None),
    kind(
        "mariadb",
        Mysql,
        Driver,
        Some(3306),
        Some("root"),
        None,
        None,
    ),
    kind(
        "oceanbase",
        Mysql,
        Driver,
        Some(2881),
        Some("root"),
        None,
        None,
    ),
    kind("tidb", Mysql, Driver, Some(4000), Some("root"), None, None),
    kind("sqlite", Sqlite, Driver, None, None, None, None),
    kind(
        "psql",
        Postgres,
        Cli,
        Some(5432),
        Some("postgres"),
        None,
        Some("psql"),
    ),
    kind(
        "mysql-cli",
        Mysql,
        Cli,
        Some(3306),
        Some("root"),
        None,
        Some("mysql"),
    ),
    kind("sqlite-cli", Sqlite, Cli, None, None, None, Some("sqlite3")),
    kind("sql-cli", Other, Cli, None, None, None, None),
];

pub fn sql_kind(name: &str) -> Option<&'static SqlKind> {
    SQL_KINDS.iter().find(|k| k.name == name)
}

/// Other names classic sqllogictest files use for a dialect's label (the original program's
/// engine names): `skipif postgresql` means PostgreSQL.
pub fn dialect_aliases(dialect: &str) -> &'static [&'static str] {
    match dialect {
        "postgres" => &["postgresql"],
        _ => &[],
    }
}

/// The `skipif`/`onlyif` labels of a kind: its name, its dialect with the dialect's aliases and
/// its access (`driver` or `cli`), e.g. `["mariadb", "mysql", "driver"]`, `["postgres",
/// "postgresql", "driver"]`. `dialect` overrides the kind's (for `sql-cli`).
pub fn engine_labels(kind: &str, dialect: Option<&str>) -> Vec<String> {
    let mut labels = vec![kind.to_string()];
    let mut push = |l: &str| {
        if !l.is_empty() && !labels.iter().any(|x| x == l) {
            labels.push(l.to_string());
        }
    };
    if let Some(k) = sql_kind(kind) {
        let d = dialect.unwrap_or(k.dialect.label());
        push(d);
        dialect_aliases(d).iter().for_each(|a| push(a));
        push(k.access.label());
    } else if let Some(d) = dialect {
        push(d);
        dialect_aliases(d).iter().for_each(|a| push(a));
    }
    labels
}

// ---------------------------------------------------------------- shared settings and shapes

/// One operation on a server gives up after this long by default (connecting: as the middleware).
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(300);

/// Identity and timeouts of one configured SQL component.
pub(crate) type SqlSettings = Settings<&'static SqlKind>;

impl SqlSettings {
    pub(crate) fn from_config(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        let kind = sql_kind(&cfg.kind).ok_or_else(|| ComponentError::Unsupported {
            kind: cfg.kind.clone(),
            op: "open".into(),
        })?;
        Settings::resolve(cfg, kind, DEFAULT_OP_TIMEOUT)
    }

    pub(crate) fn unsupported(&self, op: &str) -> ComponentError {
        ComponentError::Unsupported {
            kind: self.kind.name.to_string(),
            op: op.to_string(),
        }
    }

    /// The answer to `sql.info`.
    pub(crate) fn info(&self, dialect: Option<&str>) -> Value {
        json!({
            "kind": self.kind.name,
            "dialect": dialect.unwrap_or(self.kind.dialect.label()),
            "access": self.kind.access.label(),
            "labels": engine_labels(self.kind.name, dialect),
        })
    }
}

/// What an SQL component offers: its kind's capabilities (`sql` for a kind this build does not
/// list).
pub(crate) fn sql_capabilities(cfg: &ComponentConfig) -> Vec<String> {
    kind_capabilities(&cfg.kind).unwrap_or_else(|| vec!["sql".into()])
}

/// A result with rows: column names, sqllogictest type letters, and values as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowSet {
    pub(crate) columns: Vec<String>,
    pub(crate) types: Vec<String>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl RowSet {
    /// `{columns, types, rows}`, moving the values (no copies: this is on every query's path).
    pub(crate) fn into_json(self) -> Value {
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let rows = self
            .rows
            .into_iter()
            .map(|r| {
                Value::Array(
                    r.into_iter()
                        .map(|v| v.map_or(Value::Null, Value::String))
                        .collect(),
                )
            })
            .collect();
        let mut m = Map::with_capacity(3);
        m.insert("columns".into(), strings(self.columns));
        m.insert("types".into(), strings(self.types));
        m.insert("rows".into(), Value::Array(rows));
        Value::Object(m)
    }
}

/// What one statement (or a batch of them) produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Rows(RowSet),
    Affected(Option<u64>),
}

impl Outcome {
    pub(crate) fn into_json(self) -> Value {
        match self {
            Outcome::Rows(r) => r.into_json(),
            Outcome::Affected(n) => json!({ "affected": n }),
        }
    }

    /// The first value of the first row as text, empty for NULL or when there is none (what a
    /// `select version()` answers).
    pub(crate) fn into_first_value(self) -> String {
        match self {
            Outcome::Rows(r) => r
                .rows
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().next().flatten())
                .unwrap_or_default(),
            Outcome::Affected(_) => String::new(),
        }
    }

    pub(crate) fn affected_json(&self) -> Value {
        match self {
            Outcome::Rows(r) => json!({ "affected": r.rows.len() }),
            Outcome::Affected(n) => json!({ "affected": n }),
        }
    }
}

/// The sqllogictest type letter of a database type name: `I` integer, `R` floating point or
/// decimal, `T` anything else.
pub(crate) fn type_letter(type_name: &str) -> &'static str {
    const INTEGERS: &[&str] = &[
        "INT",
        "INT2",
        "INT4",
        "INT8",
        "INTEGER",
        "SMALLINT",
        "BIGINT",
        "TINYINT",
        "MEDIUMINT",
        "YEAR",
        "BOOLEAN",
        "SERIAL",
        "BIGSERIAL",
        "OID",
    ];
    const REALS: &[&str] = &[
        "FLOAT",
        "FLOAT4",
        "FLOAT8",
        "REAL",
        "DOUBLE",
        "DOUBLE PRECISION",
        "NUMERIC",
        "DECIMAL",
        "MONEY",
    ];
    let t = type_name.trim();
    let t = match t.len().checked_sub(9) {
        Some(i) if t.is_char_boundary(i) && t[i..].eq_ignore_ascii_case(" UNSIGNED") => &t[..i],
        _ => t,
    };
    if INTEGERS.iter().any(|n| n.eq_ignore_ascii_case(t)) {
        "I"
    } else if REALS.iter().any(|n| n.eq_ignore_ascii_case(t)) {
        "R"
    } else {
        "T"
    }
}

/// Binary values that are not text, as PostgreSQL prints `bytea`: `\x` and lowercase hex.
pub(crate) fn hex_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An SQL error as every SQL adapter reports it: the server's message, then its codes, then the
/// detail (`duplicate key value violates unique constraint "t_pkey" (SQLSTATE 23505); DETAIL: …`).
pub(crate) fn sql_error_text(message: &str, codes: &str, detail: Option<&str>) -> String {
    let mut s = message.trim().to_string();
    if !codes.is_empty() {
        s.push_str(&format!(" ({codes})"));
    }
    if let Some(d) = detail.map(str::trim).filter(|d| !d.is_empty()) {
        s.push_str(&format!("; DETAIL: {d}"));
    }
    s
}

/// Does `sql` read like a statement that returns rows (used only when the output cannot tell)?
pub(crate) fn looks_like_query(sql: &str) -> bool {
    let mut s = sql.trim_start();
    // skip leading comments
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let word: String = s
        .trim_start_matches('(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "select"
            | "with"
            | "values"
            | "table"
            | "show"
            | "explain"
            | "pragma"
            | "describe"
            | "desc"
            | "execute"
    )
}

// ---------------------------------------------------------------- the sqlx adapter

/// The driver adapter of one configured component (`postgres`, `mysql`, `sqlite` and aliases).
pub struct SqlxComponent {
    cfg: ComponentConfig,
    settings: SqlSettings,
    /// SQLite without a `path`: a fresh database file for this run, removed with the adapter.
    scratch: Option<Arc<ScratchFile>>,
}

/// A database file the adapter created and removes when dropped.
#[derive(Debug)]
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl SqlxComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        let settings = SqlSettings::from_config(cfg)?;
        if settings.kind.access != Access::Driver {
            return Err(settings.unsupported("open"));
        }
        let scratch = (settings.kind.dialect == Dialect::Sqlite && cfg.path.is_none()).then(|| {
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!(
                "adaptest-sqlite-{}-{n}-{}.db",
                std::process::id(),
                sanitize(&cfg.id)
            );
            Arc::new(ScratchFile(std::env::temp_dir().join(name)))
        });
        Ok(SqlxComponent {
            cfg: cfg.clone(),
            settings,
            scratch,
        })
    }

    fn user(&self) -> Option<&str> {
        self.cfg.user.as_deref().or(self.settings.kind.default_user)
    }

    fn database(&self) -> Option<&str> {
        self.cfg
            .database
            .as_deref()
            .or(self.settings.kind.default_database)
    }

    /// Apply the plan's user (or the kind's default), password and database to a server
    /// driver's connect options through the driver's own setters (PostgreSQL's and MySQL's
    /// options have the same three, but no trait in common).
    fn login<O>(
        &self,
        mut o: O,
        username: fn(O, &str) -> O,
        password: fn(O, &str) -> O,
        database: fn(O, &str) -> O,
    ) -> O {
        if let Some(u) = self.user() {
            o = username(o, u);
        }
        if let Some(p) = &self.cfg.password {
            o = password(o, p.expose());
        }
        if let Some(d) = self.database() {
            o = database(o, d);
        }
        o
    }

    /// Connect with `o` (statements not logged) under the connect timeout; a failure names
    /// `target` and says why in a certifier's words ([`connect_reason`]).
    async fn connect<O: ConnectOptions>(
        &self,
        target: &str,
        o: O,
    ) -> Result<O::Connection, ComponentError>
    where
        O::Connection: Sized,
    {
        let o = o.disable_statement_logging();
        self.settings
            .connecting(&format!("connecting to {target}"), o.connect())
            .await?
            .map_err(|e| self.settings.connect_err(connect_reason(target, &e)))
    }

    fn option(&self, name: &str) -> Option<&str> {
        self.cfg.options.get(name).map(|s| s.trim())
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl Component for SqlxComponent {
    configured_identity!(sql_capabilities);

    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        let conn = match self.settings.kind.dialect {
            Dialect::Postgres => {
                let (host, port) = net::server_addr(&self.cfg, endpoint);
                let o = PgConnectOptions::new_without_pgpass()
                    .host(&host)
                    .port(port)
                    .application_name("adaptest")
                    // the server's own float formatting, as psql shows it
                    .extra_float_digits(None::<i8>)
                    .ssl_mode(
                        pg_ssl_mode(self.option("sslmode"))
                            .map_err(|r| self.settings.connect_err(r))?,
                    );
                let o = self.login(
                    o,
                    PgConnectOptions::username,
                    PgConnectOptions::password,
                    PgConnectOptions::database,
                );
                Conn::Pg(self.connect(&format!("{host}:{port}"), o).await?)
            }
            Dialect::Mysql => {
                let (host, port) = net::server_addr(&self.cfg, endpoint);
                let o = MySqlConnectOptions::new()
                    .host(&host)
                    .port(port)
                    .charset("utf8mb4")
                    // keep the server's SQL mode: `||` is OR, as in the mysql client
                    .pipes_as_concat(false)
                    .ssl_mode(
                        mysql_ssl_mode(self.option("sslmode"))
                            .map_err(|r| self.settings.connect_err(r))?,
                    );
                let o = self.login(
                    o,
                    MySqlConnectOptions::username,
                    MySqlConnectOptions::password,
                    MySqlConnectOptions::database,
                );
                Conn::My(self.connect(&format!("{host}:{port}"), o).await?)
            }
            Dialect::Sqlite => {
                let o = match (&self.cfg.path, &self.scratch) {
                    // (the plan loader may have made it relative to the plan's directory)
                    (Some(p), _) if p.file_name().is_some_and(|n| n == ":memory:") => {
                        // one shared in-memory database per component, alive while a session is
                        let url = format!(
                            "sqlite:file:adaptest-{}?mode=memory&cache=shared",
                            sanitize(&self.cfg.id)
                        );
                        url.parse::<SqliteConnectOptions>()
                            .map_err(|e| self.settings.connect_err(e.to_string()))?
                    }
                    (Some(p), _) => SqliteConnectOptions::new()
                        .filename(p)
                        .create_if_missing(true),
                    (None, Some(f)) => SqliteConnectOptions::new()
                        .filename(&f.0)
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal),
                    (None, None) => unreachable!("a scratch file exists when there is no path"),
                };
                let o = o.busy_timeout(Duration::from_secs(30)).foreign_keys(true);
                let target = self
                    .cfg
                    .path
                    .as_ref()
                    .or(self.scratch.as_ref().map(|f| &f.0))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                Conn::Lite(self.connect(&target, o).await?)
            }
            Dialect::Other => return Err(self.settings.unsupported("open")),
        };
        Ok(Box::new(SqlxSession {
            settings: self.settings.clone(),
            conn: Some(conn),
            _scratch: self.scratch.clone(),
        }))
    }
}

fn pg_ssl_mode(v: Option<&str>) -> Result<PgSslMode, String> {
    Ok(match v.unwrap_or("prefer") {
        "disable" => PgSslMode::Disable,
        "allow" => PgSslMode::Allow,
        "prefer" => PgSslMode::Prefer,
        "require" => PgSslMode::Require,
        "verify-ca" => PgSslMode::VerifyCa,
        "verify-full" => PgSslMode::VerifyFull,
        other => {
            return Err(format!(
                "option `sslmode` must be disable, allow, prefer, require, verify-ca or verify-full, not `{other}`"
            ));
        }
    })
}

fn mysql_ssl_mode(v: Option<&str>) -> Result<MySqlSslMode, String> {
    Ok(match v.unwrap_or("preferred") {
        "disabled" => MySqlSslMode::Disabled,
        "preferred" => MySqlSslMode::Preferred,
        "required" => MySqlSslMode::Required,
        "verify_ca" => MySqlSslMode::VerifyCa,
        "verify_identity" => MySqlSslMode::VerifyIdentity,
        other => {
            return Err(format!(
                "option `sslmode` must be disabled, preferred, required, verify_ca or verify_identity, not `{other}`"
            ));
        }
    })
}

/// Why connecting failed, in words a certifier understands: a rejected password says
/// "authentication failed", a closed port says "connection refused".
fn connect_reason(target: &str, e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let text = db_error_text(db.as_ref());
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let mysql_auth = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|m| matches!(m.number(), 1045 | 1698 | 1251));
            if code.starts_with("28") || mysql_auth {
                format!("authentication failed at {target} (wrong user name or password?): {text}")
            } else {
                format!("{target} refused the session: {text}")
            }
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {target} (is the server running and listening there?)")
        }
        sqlx::Error::Io(io) => format!("cannot connect to {target}: {io}"),
        sqlx::Error::Tls(t) => format!("TLS with {target} failed: {t}"),
        other => format!("cannot connect to {target}: {other}"),
    }
}

/// The message of a server-side error with its codes (SQLSTATE, MySQL error number, SQLite
/// result code) and detail.
fn db_error_text(db: &dyn sqlx::error::DatabaseError) -> String {
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        return sql_error_text(
            pg.message(),
            &format!("SQLSTATE {}", pg.code()),
            pg.detail(),
        );
    }
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        let codes = match my.code() {
            Some(state) => format!("error {}, SQLSTATE {state}", my.number()),
            None => format!("error {}", my.number()),
        };
        return sql_error_text(my.message(), &codes, None);
    }
    // SQLite: the extended result code; its low byte is the primary code the sqlite3 shell prints.
    let codes = match db.code().and_then(|c| c.parse::<i64>().ok()) {
        Some(n) => format!("error {}", n & 0xff),
        None => String::new(),
    };
    sql_error_text(db.message(), &codes, None)
}

/// Is this server error one of `sql_errors`' "the server went away"?
fn server_gone(db: &dyn sqlx::error::DatabaseError) -> bool {
    use super::sql_errors::{mysql_server_gone, postgres_server_gone};
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        return postgres_server_gone(pg.code());
    }
    db.try_downcast_ref::<MySqlDatabaseError>()
        .is_some_and(|my| mysql_server_gone(u32::from(my.number())))
}

enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

/// One driver connection.
struct SqlxSession {
    settings: SqlSettings,
    /// `None` once the connection was found broken: later operations fail fast.
    conn: Option<Conn>,
    _scratch: Option<Arc<ScratchFile>>,
}

impl SqlxSession {
    async fn run(&mut self, sql: &str, want_rows: bool) -> Result<Outcome, ComponentError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self
                .settings
                .lost("the connection broke in an earlier operation"));
        };
        let res = match conn {
            // A server across the network may stop answering: every operation is timed.
            Conn::Pg(c) => {
                tokio::time::timeout(self.settings.op_timeout, run_on(c, sql, want_rows)).await
            }
            Conn::My(c) => {
                tokio::time::timeout(self.settings.op_timeout, run_on(c, sql, want_rows)).await
            }
            // Embedded SQLite cannot go away; its waits for locks end with its busy timeout. (No
            // timer per operation: on this path it is a measurable share of the cost.)
            Conn::Lite(c) => Ok(run_on(c, sql, want_rows).await),
        };
        match res {
            Err(_) => {
                self.conn = None;
                Err(self.settings.lost(format!(
                    "no answer within {} ms (option timeout_ms)",
                    self.settings.op_timeout.as_millis()
                )))
            }
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(self.op_error(e)),
        }
    }

    fn op_error(&mut self, e: sqlx::Error) -> ComponentError {
        match e {
            sqlx::Error::Database(db) if server_gone(db.as_ref()) => {
                self.conn = None;
                self.settings.lost(db_error_text(db.as_ref()))
            }
            sqlx::Error::Database(db) => ComponentError::Operation(db_error_text(db.as_ref())),
            e @ (sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut) => {
                self.conn = None;
                self.settings.lost(e.to_string())
            }
            other => ComponentError::Operation(other.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl Session for SqlxSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let sql = match self.settings.kind.dialect {
            Dialect::Sqlite => "select sqlite_version()",
            _ => "select version()",
        };
        Ok(self.run(sql, true).await?.into_first_value())
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "sql.query" => Ok(self.run(arg_str(op, args, "sql")?, true).await?.into_json()),
            "sql.exec" => Ok(self
                .run(arg_str(op, args, "sql")?, false)
                .await?
                .affected_json()),
            "sql.begin" | "sql.commit" | "sql.rollback" => {
                let sql = match op {
                    "sql.begin" => "BEGIN",
                    "sql.commit" => "COMMIT",
                    _ => "ROLLBACK",
                };
                self.run(sql, false).await?;
                Ok(json!({}))
            }
            "sql.info" => Ok(self.settings.info(None)),
            other => Err(self.settings.unsupported(other)),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), ComponentError> {
        let res = match self.conn.take() {
            Some(Conn::Pg(c)) => c.close().await,
            Some(Conn::My(c)) => c.close().await,
            Some(Conn::Lite(c)) => c.close().await,
            None => Ok(()),
        };
        res.map_err(|e| self.settings.lost(e.to_string()))
    }
}

// ---------------------------------------------------------------- rows as text

/// Values of a driver's rows as the text a client shows.
trait TextRow: Row {
    /// The value of column `i` as text, `None` for NULL.
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    /// The type letter of column `i` in this row (from the value's type where the column's is
    /// unknown).
    fn letter(&self, i: usize) -> &'static str {
        type_letter(self.columns()[i].type_info().name())
    }
}

fn decode_err(i: usize, e: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: i.to_string(),
        source: e,
    }
}

impl TextRow for sqlx::postgres::PgRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        let v = self.try_get_raw(i)?;
        if v.is_null() {
            return Ok(None);
        }
        // Queries without parameters use the simple protocol: every value arrives as text.
        match v.format() {
            sqlx::postgres::PgValueFormat::Text => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .map_err(|e| decode_err(i, e)),
            sqlx::postgres::PgValueFormat::Binary => {
                Ok(Some(hex_text(v.as_bytes().map_err(|e| decode_err(i, e))?)))
            }
        }
    }
}

impl TextRow for sqlx::mysql::MySqlRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        let v = self.try_get_raw(i)?;
        if v.is_null() {
            return Ok(None);
        }
        // The text protocol: every value arrives as the text the server formats; binary strings
        // that are not UTF-8 are shown as hex.
        let bytes = <&[u8] as Decode<sqlx::MySql>>::decode(v).map_err(|e| decode_err(i, e))?;
        Ok(Some(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => hex_text(bytes),
        }))
    }
}

impl TextRow for sqlx::sqlite::SqliteRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        let v = self.try_get_raw(i)?;
        if v.is_null() {
            return Ok(None);
        }
        if v.type_info().name() == "BLOB" {
            let b = <Vec<u8> as Decode<sqlx::Sqlite>>::decode(v).map_err(|e| decode_err(i, e))?;
            return Ok(Some(hex_text(&b)));
        }
        // SQLite's own conversion to text (`sqlite3_value_text`), as its shell prints values.
        <String as Decode<sqlx::Sqlite>>::decode(v)
            .map(Some)
            .map_err(|e| decode_err(i, e))
    }

    fn letter(&self, i: usize) -> &'static str {
        match self.try_get_raw(i) {
            Ok(v) if !v.is_null() => type_letter(v.type_info().name()),
            _ => type_letter(self.columns()[i].type_info().name()),
        }
    }
}

/// The row count of a driver's statement result.
trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Run `sql` (one statement or several) without parameters, through the driver's simple/text
/// protocol, and collect what it produced.
async fn run_on<C>(conn: &mut C, sql: &str, want_rows: bool) -> Result<Outcome, sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Row: TextRow,
    <C::Database as sqlx::Database>::QueryResult: RowsAffected,
{
    use futures_util::TryStreamExt as _;
    let mut set = RowSet::default();
    let mut affected = 0u64;
    let mut saw_rows = false;
    {
        let mut stream = conn.fetch_many(AssertSqlSafe(sql));
        while let Some(item) = stream.try_next().await? {
            match item {
                Either::Left(done) => affected += done.rows(),
                Either::Right(row) => {
                    if !want_rows {
                        continue;
                    }
                    if !saw_rows {
                        saw_rows = true;
                        set.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                        set.types = (0..row.len()).map(|i| row.letter(i).to_string()).collect();
                    }
                    let mut values = Vec::with_capacity(row.len());
                    for i in 0..row.len() {
                        values.push(row.text(i)?);
                    }
                    set.rows.push(values);
                }
            }
        }
    }
    if !want_rows {
        return Ok(Outcome::Affected(Some(affected)));
    }
    if saw_rows {
        return Ok(Outcome::Rows(set));
    }
    // No rows: describe the statement to tell an empty result from a statement without one.
    // (Preparing does not execute it again; a batch or an unpreparable statement counts as
    // one without rows.)
    match conn.prepare(AssertSqlSafe(sql).into_sql_str()).await {
        Ok(stmt) if !stmt.columns().is_empty() => {
            set.columns = stmt
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            set.types = stmt
                .columns()
                .iter()
                .map(|c| type_letter(c.type_info().name()).to_string())
                .collect();
            Ok(Outcome::Rows(set))
        }
        _ => Ok(Outcome::Affected(Some(affected))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_kind_dialect_and_access() {
        assert_eq!(
            engine_labels("mariadb", None),
            ["mariadb", "mysql", "driver"]
        );
        assert_eq!(
            engine_labels("psql", None),
            ["psql", "postgres", "postgresql", "cli"]
        );
        assert_eq!(
            engine_labels("postgres", None),
            ["postgres", "postgresql", "driver"]
        );
        assert_eq!(
            engine_labels("sql-cli", Some("postgres")),
            ["sql-cli", "postgres", "postgresql", "cli"]
        );
        assert_eq!(
            engine_labels("sqlite-cli", None),
            ["sqlite-cli", "sqlite", "cli"]
        );
    }

    #[test]
    fn sql_kinds_are_component_kinds_with_the_same_port() {
        // the driver adapter connects where `net::server_addr` says, which takes the default
        // port from `COMPONENT_KINDS`
        for k in SQL_KINDS {
            let c = crate::component::component_kind(k.name).expect(k.name);
            assert_eq!(c.default_port, k.default_port, "{}", k.name);
        }
    }

    #[test]
    fn query_detection_skips_comments() {
        assert!(looks_like_query("-- c\n /* x */ SELECT 1"));
        assert!(looks_like_query("(select 1) union (select 2)"));
        assert!(!looks_like_query("insert into t values (1)"));
    }

    #[test]
    fn type_letters() {
        assert_eq!(type_letter("INT4"), "I");
        assert_eq!(type_letter("BIGINT UNSIGNED"), "I");
        assert_eq!(type_letter("NUMERIC"), "R");
        assert_eq!(type_letter("TEXT"), "T");
    }

    #[test]
    fn errors_carry_codes_and_detail() {
        assert_eq!(
            sql_error_text(
                "duplicate key",
                "SQLSTATE 23505",
                Some("Key (a)=(1) already exists.")
            ),
            "duplicate key (SQLSTATE 23505); DETAIL: Key (a)=(1) already exists."
        );
        assert_eq!(hex_text(&[1, 0xff]), "\\x01ff");
    }
}
