//! The store on a real SQLite file: one run in, republish is the same run, another digest under
//! the same run id is refused, a wrong schema version is refused with the field named.

use adaptest_center::{Ingested, Provenance, Store, StoreError};

fn results(run_id: &str, status: &str) -> Vec<u8> {
    serde_json::json!({
        "schema_version": adaptest_schema::results::SCHEMA_VERSION,
        "harness": {"name": "adaptest", "version": "0.1.0"},
        "run": {"id": run_id, "started_at": "2026-12-03T10:00:00Z", "finished_at": "2026-12-03T10:01:00Z",
                "duration_ms": 60000, "completion": "complete", "plan": "p.toml"},
        "product": {"name": "prod", "version": "1.0", "vendor": "acme"},
        "environments": {"local": {"target": "local", "target_kind": "local", "arch": "x86_64",
            "cpu_model": "m", "cpu_vendor": "v", "cores": 2, "memory_bytes": 1, "page_size": 4096,
            "os_id": "debian", "os_version": "13", "os_name": "Debian", "kernel": "6", "libc": "glibc",
            "hostname": "h", "components": {}, "extra": {}}},
        "combinations": [{"id": "local×redis", "target": "local", "component": "redis", "component_kind": "redis",
            "suite": "redis", "suite_title": "t", "suite_title_zh": "t", "suite_version": "1", "duration_ms": 5,
            "verdict": "certified",
            "cases": [{"id": "ping", "title": "ping", "title_zh": "ping", "level": "mandatory", "status": status,
                "reason": null, "attempts": 1, "duration_ms": 1, "exit_code": null, "stdout": "", "stderr": "",
                "log": null, "tags": [], "metrics": []}]}],
        "summary": {"total": 1, "passed": 1, "flaky": 0, "failed": 0, "error": 0, "skipped": 0, "not_run": 0, "mandatory_failed": 0}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn ingest_is_whole_and_idempotent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite3");
    ingest_is_whole_and_idempotent(db.to_str().unwrap()).await;
}

/// The same on the loopback PostgreSQL (trust auth), in a private database dropped afterwards.
#[tokio::test]
async fn ingest_is_whole_and_idempotent_on_postgresql() {
    use sqlx::Connection as _;
    let admin_url = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!("adaptest_center_{}_store", std::process::id());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("the loopback PostgreSQL (scripts/services.sh starts it)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let outcome = tokio::spawn(async move { ingest_is_whole_and_idempotent(&url).await }).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

async fn ingest_is_whole_and_idempotent(url: &str) {
    let store = Store::open(url).await.unwrap();
    let prov = Provenance {
        uploader: "lab".into(),
        ..Default::default()
    };
    let a = results("run-1", "passed");
    assert_eq!(store.ingest(&a, &prov).await.unwrap().0, Ingested::Created);
    assert_eq!(
        store.ingest(&a, &prov).await.unwrap().0,
        Ingested::Unchanged
    );
    let other = results("run-1", "failed");
    assert!(matches!(
        store.ingest(&other, &prov).await,
        Err(StoreError::Conflict { .. })
    ));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(runs, 1);
    // Reopening does not re-run the migration.
    store.pool.close().await;
    drop(store);
    let store = Store::open(url).await.unwrap();
    let mut bad: serde_json::Value = serde_json::from_slice(&a).unwrap();
    bad["schema_version"] = 999.into();
    let e = store
        .ingest(bad.to_string().as_bytes(), &prov)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("schema_version"), "{e}");
    let t = store.add_token("lab").await.unwrap();
    assert_eq!(store.check_token(&t).await.unwrap().as_deref(), Some("lab"));
    assert_eq!(store.check_token("adc_wrong").await.unwrap(), None);
    store.pool.close().await;
}
