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

mod errors;
mod output;
mod session;
mod spec;

use errors::*;
use output::*;
pub use session::*;
use spec::*;

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
