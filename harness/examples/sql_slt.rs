//! Run sqllogictest files through adaptest's SQL adapters and `sql` case runner, without a plan:
//! for writing `.slt` files against the databases of this machine, and for `bench/sql.sh`.
//!
//! ```sh
//! cargo run --release -p adaptest --example sql_slt -- KIND FILE.slt... [--repeat N]
//! ```
//!
//! KIND is a SQL component kind (`postgres`, `mariadb`, `sqlite`, `psql`, `mysql-cli`,
//! `sqlite-cli`, …); the connection is this machine's test setup (PostgreSQL as `postgres` to
//! database `test`, MySQL/MariaDB as `root` to `test`), overridable with `ADAPTEST_SQL_HOST`,
//! `ADAPTEST_SQL_PORT`, `ADAPTEST_SQL_USER`, `ADAPTEST_SQL_DATABASE`, `ADAPTEST_SQL_PASSWORD`,
//! `ADAPTEST_SQL_PATH`, `ADAPTEST_SQL_CLI`. A per-engine variant `FILE.<kind>.slt` beside a file
//! is used instead of it, as suites do. Prints the wall time of each run.

use adaptest::kinds::sql::run_slt;
use adaptest_adapters::component::{self, ComponentConfig, Endpoint, Secret};
use adaptest_adapters::target::LocalTarget;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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
    let (kind, files) = match args.split_first() {
        Some((k, f)) if !f.is_empty() => (k.clone(), f.to_vec()),
        _ => {
            eprintln!("usage: sql_slt KIND FILE.slt... [--repeat N]");
            std::process::exit(2);
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    let dialect = component::sql::sql_kind(&kind)
        .map(|k| k.dialect.label())
        .unwrap_or("");
    let mut cfg = ComponentConfig {
        id: "db".into(),
        kind: kind.clone(),
        host: env("ADAPTEST_SQL_HOST"),
        port: env("ADAPTEST_SQL_PORT").and_then(|p| p.parse().ok()),
        user: env("ADAPTEST_SQL_USER"),
        password: env("ADAPTEST_SQL_PASSWORD").map(Secret::new),
        database: env("ADAPTEST_SQL_DATABASE"),
        path: env("ADAPTEST_SQL_PATH").map(Into::into),
        cli: env("ADAPTEST_SQL_CLI"),
        ..Default::default()
    };
    if dialect == "postgres" || dialect == "mysql" {
        cfg.database.get_or_insert_with(|| "test".into());
    }
    let adapter = match component::create(&cfg) {
        Ok(Some(a)) => a,
        Ok(None) => panic!("{kind} has no adapter"),
        Err(e) => panic!("{e}"),
    };
    let port = cfg
        .port
        .or(component::component_kind(&kind).and_then(|k| k.default_port));
    let workdir = std::env::temp_dir().join(format!("adaptest-sql-slt-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let endpoint = Endpoint {
        addr: port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        target: Arc::new(LocalTarget::new("local")),
        workdir: workdir.display().to_string(),
    };
    let mut failed = false;
    for file in &files {
        let variant = file.strip_suffix(".slt").map(|s| format!("{s}.{kind}.slt"));
        let path = variant
            .filter(|v| std::path::Path::new(v).exists())
            .unwrap_or_else(|| file.clone());
        let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for _ in 0..repeat {
            let started = Instant::now();
            let mut session = adapter
                .open(&endpoint)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let r = run_slt(session.as_mut(), &kind, &path, &script).await;
            let _ = session.close().await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(()) => println!("ok     {kind} {path} {ms:.1} ms"),
                Err(e) => {
                    failed = true;
                    println!("FAILED {kind} {path} {ms:.1} ms: {e}");
                }
            }
        }
    }
    drop(adapter);
    let _ = std::fs::remove_dir_all(&workdir);
    std::process::exit(i32::from(failed));
}
