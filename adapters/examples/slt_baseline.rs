//! The benchmark baseline for `sql` cases: sqllogictest files run by the sqllogictest runner
//! over a direct sqlx connection — no adaptest in between. `bench/sql.sh` compares it with the
//! same files through adaptest.
//!
//! ```sh
//! cargo run --release -p adaptest-adapters --example slt_baseline -- URL FILE.slt [--repeat N]
//! ```
//!
//! URL: `postgres://postgres@127.0.0.1:5432/test`, `mysql://root@127.0.0.1:3306/test` or
//! `sqlite:///path/to.db`.

use futures_util::TryStreamExt as _;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use sqlx::{
    AssertSqlSafe, ConnectOptions as _, Decode, Either, Executor as _, Row as _, TypeInfo,
    ValueRef as _,
};
use std::time::Instant;

enum Conn {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
    Lite(sqlx::SqliteConnection),
}

struct Db(Conn);

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn text(v: Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) if s.is_empty() => "(empty)".into(),
        Some(s) => s,
    }
}

#[async_trait::async_trait]
impl AsyncDB for Db {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut width = 0;
        let mut affected = 0;
        macro_rules! collect {
            ($conn:expr, $cell:expr) => {{
                let mut s = $conn.fetch_many(AssertSqlSafe(sql));
                while let Some(item) = s.try_next().await.map_err(|e| Error(e.to_string()))? {
                    match item {
                        Either::Left(r) => affected += r.rows_affected(),
                        Either::Right(row) => {
                            width = row.columns().len();
                            let mut out = Vec::with_capacity(width);
                            for i in 0..width {
                                out.push(text($cell(&row, i)));
                            }
                            rows.push(out);
                        }
                    }
                }
            }};
        }
        match &mut self.0 {
            Conn::Pg(c) => collect!(c, |row: &sqlx::postgres::PgRow, i| {
                let v = row.try_get_raw(i).unwrap();
                (!v.is_null()).then(|| v.as_str().unwrap().to_string())
            }),
            Conn::My(c) => collect!(c, |row: &sqlx::mysql::MySqlRow, i| {
                let v = row.try_get_raw(i).unwrap();
                (!v.is_null()).then(|| {
                    String::from_utf8_lossy(<&[u8] as Decode<sqlx::MySql>>::decode(v).unwrap())
                        .into_owned()
                })
            }),
            Conn::Lite(c) => collect!(c, |row: &sqlx::sqlite::SqliteRow, i| {
                let v = row.try_get_raw(i).unwrap();
                if v.is_null() {
                    None
                } else if v.type_info().name() == "BLOB" {
                    Some(format!(
                        "{:?}",
                        <Vec<u8> as Decode<sqlx::Sqlite>>::decode(v).unwrap()
                    ))
                } else {
                    Some(<String as Decode<sqlx::Sqlite>>::decode(v).unwrap())
                }
            }),
        }
        if rows.is_empty() {
            Ok(DBOutput::StatementComplete(affected))
        } else {
            Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            })
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        match self.0 {
            Conn::Pg(_) => "postgres",
            Conn::My(_) => "mysql",
            Conn::Lite(_) => "sqlite",
        }
    }
}

async fn connect(url: &str) -> Db {
    let conn = if url.starts_with("postgres") {
        let o: sqlx::postgres::PgConnectOptions = url.parse().expect("postgres url");
        Conn::Pg(o.connect().await.expect("connect"))
    } else if url.starts_with("mysql") {
        let o: sqlx::mysql::MySqlConnectOptions = url.parse().expect("mysql url");
        Conn::My(o.pipes_as_concat(false).connect().await.expect("connect"))
    } else {
        let o: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("sqlite url");
        let o = o
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        Conn::Lite(o.connect().await.expect("connect"))
    };
    Db(conn)
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 1;
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        repeat = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--repeat N");
        args.drain(i..i + 2);
    }
    let [url, file] = args.as_slice() else {
        eprintln!("usage: slt_baseline URL FILE.slt [--repeat N]");
        std::process::exit(2);
    };
    let script = std::fs::read_to_string(file).expect("read the file");
    let mut failed = false;
    for _ in 0..repeat {
        let started = Instant::now();
        let db = connect(url).await;
        let mut slot = Some(db);
        let mut runner = Runner::new(move || {
            let db = slot.take();
            async move { db.ok_or_else(|| Error("one connection".into())) }
        });
        let label = if url.starts_with("postgres") {
            "postgres"
        } else if url.starts_with("mysql") {
            "mysql"
        } else {
            "sqlite"
        };
        runner.add_label(label);
        let r = runner
            .run_script_with_name_async(&script, file.as_str())
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(()) => println!("ok     baseline {file} {ms:.1} ms"),
            Err(e) => {
                failed = true;
                println!("FAILED baseline {file} {ms:.1} ms: {}", e.display(false));
            }
        }
    }
    std::process::exit(i32::from(failed));
}
