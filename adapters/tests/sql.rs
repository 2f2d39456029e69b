//! Integration tests of the SQL component adapters against the real servers of this machine:
//! PostgreSQL 15 on 5432 (user `postgres`, database `test`), MariaDB 10.11 on 3306 (`root`
//! without a password, database `test`), SQLite embedded and through the `sqlite3` shell, and the
//! `psql` and `mysql` clients.
//!
//! Every test uses its own tables (`adaptest_at_<test>_…`), so they run in parallel.

use adaptest_adapters::component::{
    self, Component, ComponentConfig, ComponentError, Endpoint, Secret, Session,
};
use adaptest_adapters::target::LocalTarget;
use serde_json::{Map, Value, json};
use servers::{MariaUser, PasswordPg, free_port};
use std::net::SocketAddr;
use std::sync::Arc;

#[path = "../../tests/support/servers.rs"]
mod servers;

/// The engines of this machine, by kind.
const ENGINES: &[&str] = &[
    "postgres",
    "mariadb",
    "sqlite",
    "psql",
    "mysql-cli",
    "sqlite-cli",
];

fn config(kind: &str) -> ComponentConfig {
    let mut c = ComponentConfig {
        id: format!("db-{kind}"),
        kind: kind.to_string(),
        ..Default::default()
    };
    match kind {
        "postgres" | "psql" => {
            c.user = Some("postgres".into());
            c.database = Some("test".into());
        }
        "mariadb" | "mysql" | "mysql-cli" => {
            c.user = Some("root".into());
            c.database = Some("test".into());
        }
        _ => {}
    }
    c
}

fn port_of(kind: &str) -> Option<u16> {
    component::component_kind(kind).and_then(|k| k.default_port)
}

/// A scratch directory standing in for the combination's work directory on the target;
/// removed when dropped (also when a test fails).
struct Dir(String);

impl std::ops::Deref for Dir {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workdir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("adaptest-sqltest-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d.display().to_string())
}

fn endpoint(kind: &str, port: Option<u16>, dir: &str) -> Endpoint {
    Endpoint {
        addr: port
            .or(port_of(kind))
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        target: Arc::new(LocalTarget::new("local")),
        workdir: dir.to_string(),
    }
}

fn adapter(cfg: &ComponentConfig) -> Arc<dyn Component> {
    component::create(cfg).expect("adapter").expect("not os")
}

async fn open_with(cfg: &ComponentConfig, ep: &Endpoint) -> Box<dyn Session> {
    adapter(cfg)
        .open(ep)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", cfg.kind))
}

fn sql(s: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sql".into(), Value::String(s.to_string()));
    m
}

async fn exec(s: &mut dyn Session, q: &str) -> Value {
    s.execute("sql.exec", &sql(q))
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

async fn query(s: &mut dyn Session, q: &str) -> Value {
    s.execute("sql.query", &sql(q))
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// The error of opening a session and running `select 1` (a client adapter connects only when
/// it runs its first statement), which must fail (`why`).
async fn connect_error(cfg: &ComponentConfig, ep: &Endpoint, why: &str) -> ComponentError {
    match adapter(cfg).open(ep).await {
        Err(e) => e,
        Ok(mut s) => s
            .execute("sql.query", &sql("select 1"))
            .await
            .expect_err(why),
    }
}

fn is_mysql(kind: &str) -> bool {
    matches!(kind, "mariadb" | "mysql" | "mysql-cli")
}

#[tokio::test]
async fn every_engine_round_trips_rows_nulls_and_chinese_text() {
    for kind in ENGINES {
        let dir = workdir(&format!("roundtrip-{kind}"));
        let cfg = config(kind);
        let ep = endpoint(kind, None, &dir);
        let a = adapter(&cfg);
        let mut s = a.open(&ep).await.unwrap();
        let s = s.as_mut();
        let t = format!("adaptest_at_rt_{}", kind.replace('-', "_"));
        exec(s, &format!("drop table if exists {t}")).await;
        let text_type = if is_mysql(kind) {
            "varchar(20)"
        } else {
            "text"
        };
        exec(
            s,
            &format!("create table {t} (id int primary key, name {text_type}, note {text_type})"),
        )
        .await;
        let r = exec(
            s,
            &format!("insert into {t} values (1, '中文', null), (2, '', 'x,y\"z')"),
        )
        .await;
        assert_eq!(r, json!({"affected": 2}), "{kind}");
        let r = query(s, &format!("select id, name, note from {t} order by id")).await;
        assert_eq!(r["columns"], json!(["id", "name", "note"]), "{kind}: {r}");
        assert_eq!(
            r["rows"],
            json!([["1", "中文", null], ["2", "", "x,y\"z"]]),
            "{kind}: {r}"
        );
        assert_eq!(r["types"][0], "I", "{kind}: {r}");
        // an empty result still has its columns where the client prints them
        let r = query(s, &format!("select id, name from {t} where id > 5")).await;
        assert_eq!(r["rows"], json!([]), "{kind}: {r}");
        if !matches!(*kind, "sqlite-cli" | "mysql-cli") {
            assert_eq!(r["columns"], json!(["id", "name"]), "{kind}: {r}");
        }
        // a statement without rows through sql.query
        let r = query(s, &format!("update {t} set note = 'n' where id = 1")).await;
        assert_eq!(r, json!({"affected": 1}), "{kind}");
        let r = exec(s, &format!("delete from {t}")).await;
        assert_eq!(r, json!({"affected": 2}), "{kind}");
        // the SQL may end in a comment and lack the semicolon
        let r = query(s, "select 41 + 1 as answer -- the answer").await;
        assert_eq!(r["rows"], json!([["42"]]), "{kind}: {r}");
        exec(s, &format!("drop table {t}")).await;
        let v = s.version().await.unwrap();
        assert!(!v.is_empty(), "{kind}");
        let info = s.execute("sql.info", &Map::new()).await.unwrap();
        assert_eq!(info["kind"], *kind);
    }
}

#[tokio::test]
async fn sql_errors_carry_the_engines_codes() {
    for kind in ENGINES {
        let dir = workdir(&format!("errors-{kind}"));
        let cfg = config(kind);
        let mut s = open_with(&cfg, &endpoint(kind, None, &dir)).await;
        let s = s.as_mut();
        let t = format!("adaptest_at_err_{}", kind.replace('-', "_"));
        exec(s, &format!("drop table if exists {t}")).await;
        exec(s, &format!("create table {t} (id int primary key)")).await;
        exec(s, &format!("insert into {t} values (1)")).await;
        let e = s
            .execute("sql.exec", &sql(&format!("insert into {t} values (1)")))
            .await
            .expect_err("duplicate key");
        let msg = e.to_string();
        assert!(matches!(e, ComponentError::Operation(_)), "{kind}: {e:?}");
        let code = match *kind {
            "postgres" | "psql" => "SQLSTATE 23505",
            "mariadb" | "mysql-cli" => "error 1062, SQLSTATE 23000",
            _ => "error 19",
        };
        assert!(msg.contains(code), "{kind}: {msg}");
        assert!(
            msg.to_lowercase().contains("duplicate") || msg.contains("UNIQUE"),
            "{kind}: {msg}"
        );
        let e = s
            .execute("sql.query", &sql("selec 1"))
            .await
            .expect_err("syntax");
        assert!(matches!(e, ComponentError::Operation(_)), "{kind}: {e:?}");
        assert!(
            e.to_string().to_lowercase().contains("syntax"),
            "{kind}: {e}"
        );
        exec(s, &format!("drop table {t}")).await;
        let e = s
            .execute("sql.nope", &Map::new())
            .await
            .expect_err("unknown op");
        assert!(
            matches!(e, ComponentError::Unsupported { .. }),
            "{kind}: {e:?}"
        );
        let e = s
            .execute("sql.query", &Map::new())
            .await
            .expect_err("no sql");
        assert!(
            matches!(e, ComponentError::Arguments { .. }),
            "{kind}: {e:?}"
        );
    }
}

#[tokio::test]
async fn drivers_keep_transactions_across_operations_and_isolate_sessions() {
    for kind in ["postgres", "mariadb", "sqlite"] {
        let dir = workdir(&format!("tx-{kind}"));
        let cfg = config(kind);
        let ep = endpoint(kind, None, &dir);
        let a = adapter(&cfg);
        assert!(a.capabilities().contains(&"sql.tx".to_string()));
        let mut s1 = a.open(&ep).await.unwrap();
        let mut s2 = a.open(&ep).await.unwrap();
        let t = format!("adaptest_at_tx_{kind}");
        exec(s1.as_mut(), &format!("drop table if exists {t}")).await;
        exec(
            s1.as_mut(),
            &format!("create table {t} (id int primary key)"),
        )
        .await;
        s1.execute("sql.begin", &Map::new()).await.unwrap();
        exec(s1.as_mut(), &format!("insert into {t} values (1)")).await;
        let inside = query(s1.as_mut(), &format!("select count(*) from {t}")).await;
        assert_eq!(inside["rows"], json!([["1"]]), "{kind}");
        let outside = query(s2.as_mut(), &format!("select count(*) from {t}")).await;
        assert_eq!(
            outside["rows"],
            json!([["0"]]),
            "{kind}: uncommitted row visible"
        );
        s1.execute("sql.rollback", &Map::new()).await.unwrap();
        let after = query(s1.as_mut(), &format!("select count(*) from {t}")).await;
        assert_eq!(after["rows"], json!([["0"]]), "{kind}");
        s1.execute("sql.begin", &Map::new()).await.unwrap();
        exec(s1.as_mut(), &format!("insert into {t} values (2)")).await;
        s1.execute("sql.commit", &Map::new()).await.unwrap();
        let other = query(s2.as_mut(), &format!("select id from {t}")).await;
        assert_eq!(other["rows"], json!([["2"]]), "{kind}");
        exec(s2.as_mut(), &format!("drop table {t}")).await;
        s1.close().await.unwrap();
        s2.close().await.unwrap();
    }
}

#[tokio::test]
async fn cli_sessions_refuse_transactions_spanning_operations() {
    for kind in ["psql", "mysql-cli", "sqlite-cli"] {
        let dir = workdir(&format!("clitx-{kind}"));
        let cfg = config(kind);
        let a = adapter(&cfg);
        assert!(!a.capabilities().contains(&"sql.tx".to_string()));
        let mut s = a.open(&endpoint(kind, None, &dir)).await.unwrap();
        let e = s
            .execute("sql.begin", &Map::new())
            .await
            .expect_err("no tx");
        assert!(
            matches!(e, ComponentError::Unsupported { .. }),
            "{kind}: {e:?}"
        );
        // a transaction inside one operation works
        let t = format!("adaptest_at_clitx_{}", kind.replace('-', "_"));
        exec(s.as_mut(), &format!("drop table if exists {t}")).await;
        exec(s.as_mut(), &format!("create table {t} (id int)")).await;
        exec(
            s.as_mut(),
            &format!("begin; insert into {t} values (1); rollback;"),
        )
        .await;
        let r = query(s.as_mut(), &format!("select count(*) from {t}")).await;
        assert_eq!(r["rows"], json!([["0"]]), "{kind}");
        exec(s.as_mut(), &format!("drop table {t}")).await;
    }
}

#[tokio::test]
async fn a_server_that_is_not_listening_is_connection_refused() {
    let port = free_port();
    for kind in ["postgres", "mariadb", "psql", "mysql-cli"] {
        let dir = workdir(&format!("refused-{kind}"));
        let mut cfg = config(kind);
        cfg.port = Some(port);
        let ep = endpoint(kind, Some(port), &dir);
        let started = std::time::Instant::now();
        let err = connect_error(&cfg, &ep, "refused").await;
        assert!(
            matches!(err, ComponentError::Connect { .. }),
            "{kind}: {err:?}"
        );
        assert!(
            err.to_string().contains("connection refused"),
            "{kind}: {err}"
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{kind}: took {:?}",
            started.elapsed()
        );
    }
}

const PASSWORD: &str = "S3cr3t-adaptest-sqltest-9f2c";

#[tokio::test]
async fn a_wrong_password_is_authentication_failed_and_never_shown() {
    let dir = workdir("auth");
    // PostgreSQL: a private cluster with password authentication
    let pg = PasswordPg::start(PASSWORD);
    // MariaDB: a dedicated user with a password, dropped with `_user`
    let _user = MariaUser::create("adaptest_at_auth", PASSWORD);

    for kind in ["postgres", "psql", "mariadb", "mysql-cli"] {
        let mut cfg = config(kind);
        let mut port = None;
        if is_mysql(kind) {
            cfg.user = Some("adaptest_at_auth".into());
        } else {
            cfg.database = Some("postgres".into());
            cfg.port = Some(pg.port);
            port = Some(pg.port);
        }
        let ep = endpoint(kind, port, &dir);
        // the right password works …
        cfg.password = Some(Secret::new(PASSWORD));
        let mut s = open_with(&cfg, &ep).await;
        let r = query(s.as_mut(), "select 1 as one").await;
        assert_eq!(r["rows"], json!([["1"]]), "{kind}");
        // … a wrong one says so, without showing either
        let wrong = format!("{PASSWORD}-wrong");
        cfg.password = Some(Secret::new(wrong.clone()));
        let err = connect_error(&cfg, &ep, "wrong password").await;
        let text = format!("{err} {err:?}");
        assert!(
            matches!(err, ComponentError::Connect { .. }),
            "{kind}: {err:?}"
        );
        assert!(text.contains("authentication failed"), "{kind}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "{kind}: the password leaked: {text}"
        );
        assert!(
            !format!("{cfg:?}").contains(PASSWORD),
            "{kind}: Debug shows the password"
        );
    }
}

#[tokio::test]
async fn types_render_as_the_servers_text() {
    let postgres = (
        "select 9223372036854775807::bigint, 1.10::numeric(5,2), 0.1::float8, date '2024-02-29', true, '\\x00ff'::bytea".to_string(),
        json!([["9223372036854775807", "1.10", "0.1", "2024-02-29", "t", "\\x00ff"]]),
    );
    // The same values on MariaDB and SQLite, with the bytes `x'{hex}'`.
    let mysql = |hex: &str| {
        (
            format!(
                "select cast(9223372036854775807 as signed), cast(1.1 as decimal(5,2)), 0.1e0, date '2024-02-29', true, x'{hex}'"
            ),
            json!([[
                "9223372036854775807",
                "1.10",
                "0.1",
                "2024-02-29",
                "1",
                format!("\\x{hex}")
            ]]),
        )
    };
    let sqlite = |hex: &str| {
        (
            format!("select 9223372036854775807, 0.1, 1e20, x'{hex}', 'a' || char(10) || 'b'"),
            json!([[
                "9223372036854775807",
                "0.1",
                "1.0e+20",
                format!("\\x{hex}"),
                "a\nb"
            ]]),
        )
    };
    let cases = [
        ("postgres", postgres.clone()),
        ("psql", postgres),
        ("mariadb", mysql("00ff")),
        // (the mysql client prints a NUL byte as a space: binary values with NULs are not
        // shown exactly through it)
        ("mysql-cli", mysql("01ff")),
        ("sqlite", sqlite("00ff")),
        // (the sqlite3 shell stops a value at a NUL byte, as the mysql client does)
        ("sqlite-cli", sqlite("01ff")),
    ];
    for (kind, (q, want)) in cases {
        let dir = workdir(&format!("types-{kind}"));
        let mut s = open_with(&config(kind), &endpoint(kind, None, &dir)).await;
        let r = query(s.as_mut(), &q).await;
        assert_eq!(r["rows"], want, "{kind}: {r}");
    }
}

#[tokio::test]
async fn a_generic_cli_is_read_by_its_format_spec() {
    let dir = workdir("generic");
    // psql in unaligned tuples mode, as a vendor client would be driven
    let mut cfg = ComponentConfig {
        id: "vendor".into(),
        kind: "sql-cli".into(),
        cli: Some("psql -X -q -A -F '\t' -P null=NULL -v ON_ERROR_STOP=1 -h {host} -p {port} -U {user} -d {database}".into()),
        host: Some("127.0.0.1".into()),
        port: Some(5432),
        user: Some("postgres".into()),
        database: Some("test".into()),
        ..Default::default()
    };
    cfg.options.insert("dialect".into(), "postgres".into());
    cfg.options
        .insert("ignore_regex".into(), r"^\(\d+ rows?\)$".into());
    cfg.options
        .insert("password_env".into(), "PGPASSWORD".into());
    let mut s = open_with(&cfg, &endpoint("sql-cli", None, &dir)).await;
    let r = query(s.as_mut(), "select 1 as a, null as b, 'x y' as c").await;
    assert_eq!(r["columns"], json!(["a", "b", "c"]));
    assert_eq!(r["rows"], json!([["1", null, "x y"]]));
    assert_eq!(r["types"], json!(["I", "T", "T"]));
    let info = s.execute("sql.info", &Map::new()).await.unwrap();
    assert_eq!(
        info["labels"],
        json!(["sql-cli", "postgres", "postgresql", "cli"])
    );
    let e = s
        .execute("sql.query", &sql("select 1/0"))
        .await
        .expect_err("division by zero");
    assert!(e.to_string().contains("division by zero"), "{e}");

    // the sqlite3 shell in JSON mode
    let db = format!("{dir}/generic.db");
    let mut cfg = ComponentConfig {
        id: "vendor2".into(),
        kind: "sql-cli".into(),
        cli: Some("sqlite3 -json -bail {path}".into()),
        path: Some(db.into()),
        ..Default::default()
    };
    cfg.options.insert("format".into(), "json".into());
    cfg.options
        .insert("version_sql".into(), "select sqlite_version()".into());
    let mut s = open_with(&cfg, &endpoint("sql-cli", None, &dir)).await;
    let r = query(s.as_mut(), "select 2 as z, null as a, '中' as m").await;
    assert_eq!(r["columns"], json!(["z", "a", "m"]));
    assert_eq!(r["rows"], json!([["2", null, "中"]]));
    assert!(s.version().await.unwrap().starts_with('3'));
    let e = s
        .execute("sql.query", &sql("select * from missing_table"))
        .await
        .expect_err("no table");
    assert!(e.to_string().contains("no such table"), "{e}");

    // a client that is not installed
    let cfg = ComponentConfig {
        id: "missing".into(),
        kind: "sql-cli".into(),
        cli: Some("adaptest-no-such-sql-client".into()),
        ..Default::default()
    };
    let mut s = open_with(&cfg, &endpoint("sql-cli", None, &dir)).await;
    let e = s
        .execute("sql.query", &sql("select 1"))
        .await
        .expect_err("missing client");
    assert!(matches!(e, ComponentError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot be run on target"), "{e}");
}

#[tokio::test]
async fn sqlite_without_a_path_uses_a_scratch_file_removed_with_the_adapter() {
    let dir = workdir("scratch");
    let mut cfg = config("sqlite");
    cfg.id = "scratchtest".into();
    let a = adapter(&cfg);
    let ep = endpoint("sqlite", None, &dir);
    let mut s1 = a.open(&ep).await.unwrap();
    exec(s1.as_mut(), "create table adaptest_at_scratch (x int)").await;
    // a second session sees the same database
    let mut s2 = a.open(&ep).await.unwrap();
    let r = query(s2.as_mut(), "select count(*) from adaptest_at_scratch").await;
    assert_eq!(r["rows"], json!([["0"]]));
    let before = scratch_files();
    assert!(!before.is_empty());
    drop(s1);
    drop(s2);
    drop(a);
    let after = scratch_files();
    assert!(
        before.iter().all(|f| !after.contains(f)),
        "left behind: {after:?}"
    );
}

fn scratch_files() -> Vec<String> {
    let prefix = format!("adaptest-sqlite-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix) && n.contains("scratchtest"))
        .collect()
}

#[tokio::test]
async fn sqlite_memory_is_one_database_shared_by_the_sessions() {
    let dir = workdir("memory");
    let mut cfg = config("sqlite");
    cfg.id = "memtest".into();
    cfg.path = Some("/some/plan/dir/:memory:".into());
    let a = adapter(&cfg);
    let ep = endpoint("sqlite", None, &dir);
    let mut s1 = a.open(&ep).await.unwrap();
    exec(s1.as_mut(), "create table adaptest_at_mem (x int)").await;
    exec(s1.as_mut(), "insert into adaptest_at_mem values (1)").await;
    let mut s2 = a.open(&ep).await.unwrap();
    let r = query(s2.as_mut(), "select x from adaptest_at_mem").await;
    assert_eq!(r["rows"], json!([["1"]]));
    assert!(!std::path::Path::new("/some/plan/dir").exists());
}
