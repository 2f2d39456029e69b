//! The client spec per kind (`psql`, `mysql-cli`, `sqlite-cli`, `sql-cli` options): program,
//! arguments, output format and error reader.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv,
    Tsv,
    Json,
    MysqlXml,
}

/// How to read the client's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Errors {
    Psql,
    Mysql,
    Sqlite,
    Generic,
}

/// How one kind of client is driven and read.
#[derive(Debug)]
pub(super) struct CliSpec {
    /// The client and its flags, as run by `/bin/sh` on the target.
    pub(super) command: String,
    /// The program's name, for messages.
    pub(super) program: String,
    pub(super) env: Vec<(String, String)>,
    pub(super) password_env: Option<String>,
    pub(super) prelude: String,
    /// Appended after the SQL: prints a result named [`AFFECTED_MARK`].
    pub(super) epilogue: String,
    pub(super) format: Format,
    pub(super) header: bool,
    pub(super) escapes: bool,
    pub(super) null: Option<String>,
    pub(super) error_regex: Option<Regex>,
    pub(super) affected_regex: Option<Regex>,
    pub(super) ignore_regex: Option<Regex>,
    pub(super) errors: Errors,
    pub(super) dialect: Option<String>,
    pub(super) version_sql: String,
}

pub(super) fn build_spec(cfg: &ComponentConfig, settings: &SqlSettings) -> Result<CliSpec, String> {
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
