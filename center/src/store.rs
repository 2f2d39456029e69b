//! The relational store: product → version → platform → run → combination → case.
//!
//! One set of queries for both backends through `sqlx::Any` (`$N` placeholders work on SQLite
//! and PostgreSQL alike; only the auto-increment key differs, and only in the migration text).
//! Migrations are embedded with `include_str!` and applied in order, each in its own
//! transaction, recorded in `_migrations` (sqlx's `migrate!` needs the `macros` feature).

use adaptest_schema::results::{RunResults, SCHEMA_VERSION, Verdict};
use sha2::Digest as _;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// The embedded migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "init", include_str!("../migrations/0001_init.sql"))];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "run {run_id} is already stored with another results digest ({stored}); a run id names one result"
    )]
    Conflict { run_id: String, stored: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// Where a run came from, beside its results.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub uploader: String,
    /// "none" (a bare results.json) or "verified".
    pub bundle_status: String,
    pub bundle_signer: String,
    pub bundle_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Ingested {
    /// Stored now.
    Created,
    /// The same run id with the same digest was already stored: nothing changed.
    Unchanged,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn verdict_rank(v: &str) -> u8 {
    match v {
        "certified" => 0,
        "certified_with_notes" => 1,
        _ => 2,
    }
}

impl Store {
    /// Open (creating a SQLite file when needed) and migrate. `url` is `sqlite://PATH` or
    /// `postgres://…`; a bare path means SQLite.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let (url, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), Backend::Postgres)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
        };
        let mut opts = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // One writer: SQLite serialises writes anyway, and this avoids SQLITE_BUSY.
            opts = opts.max_connections(1).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            });
        } else {
            opts = opts.max_connections(8);
        }
        let pool = opts.connect(&url).await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS _migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        let id = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        for (version, name, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM _migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&self.pool)
                    .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            // Audited: the text is an embedded migration; only the key type is substituted.
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("@ID@", id)))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO _migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(*version)
                .bind(*name)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied migration");
        }
        Ok(())
    }

    /// Add an uploader token; returns the token (shown once; only its SHA-256 is stored).
    pub async fn add_token(&self, name: &str) -> Result<String, StoreError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| StoreError::Invalid(format!("no randomness: {e}")))?;
        let token = format!(
            "adc_{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        sqlx::query("INSERT INTO tokens (name, hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(sha256_hex(token.as_bytes()))
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    StoreError::Invalid(format!("a token named {name:?} already exists"))
                }
                e => e.into(),
            })?;
        Ok(token)
    }

    /// The uploader a bearer token belongs to.
    pub async fn check_token(&self, token: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM tokens WHERE hash = $1")
                .bind(sha256_hex(token.as_bytes()))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Parse and validate a results.json.
    pub fn parse_results(bytes: &[u8]) -> Result<RunResults, StoreError> {
        #[derive(serde::Deserialize)]
        struct Head {
            schema_version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(|e| {
            StoreError::Invalid(format!(
                "results.json line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        match head.schema_version {
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(StoreError::Invalid(format!(
                    "results.json field schema_version: {v} is not supported (this center reads {SCHEMA_VERSION})"
                )));
            }
            None => {
                return Err(StoreError::Invalid(
                    "results.json: missing field schema_version".into(),
                ));
            }
        }
        let r: RunResults = serde_json::from_slice(bytes).map_err(|e| {
            StoreError::Invalid(format!(
                "results.json line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        if r.run.id.is_empty() || r.run.id.len() > 200 {
            return Err(StoreError::Invalid(
                "results.json field run.id: empty or longer than 200".into(),
            ));
        }
        if r.product.name.is_empty() {
            return Err(StoreError::Invalid(
                "results.json field product.name: empty".into(),
            ));
        }
        Ok(r)
    }

    /// Store one run in one transaction: either all of it or nothing.
    pub async fn ingest(
        &self,
        bytes: &[u8],
        prov: &Provenance,
    ) -> Result<(Ingested, String), StoreError> {
        let r = Self::parse_results(bytes)?;
        let digest = sha256_hex(bytes);
        let mut tx = self.pool.begin().await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT digest FROM runs WHERE run_id = $1")
                .bind(&r.run.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(stored) = stored {
            return if stored == digest {
                Ok((Ingested::Unchanged, r.run.id.clone()))
            } else {
                Err(StoreError::Conflict {
                    run_id: r.run.id.clone(),
                    stored,
                })
            };
        }
        let product_id = upsert_id(
            &mut tx,
            "SELECT id FROM products WHERE name = $1 AND vendor = $2",
            "INSERT INTO products (name, vendor) VALUES ($1, $2) RETURNING id",
            &[&r.product.name, &r.product.vendor],
        )
        .await?;
        let version_id =
            {
                let sel: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM versions WHERE product_id = $1 AND version = $2",
                )
                .bind(product_id)
                .bind(&r.product.version)
                .fetch_optional(&mut *tx)
                .await?;
                match sel {
                    Some(id) => id,
                    None => sqlx::query_scalar(
                        "INSERT INTO versions (product_id, version) VALUES ($1, $2) RETURNING id",
                    )
                    .bind(product_id)
                    .bind(&r.product.version)
                    .fetch_one(&mut *tx)
                    .await?,
                }
            };
        let run_pk: i64 = sqlx::query_scalar(
            "INSERT INTO runs (run_id, digest, version_id, verdict, completion, started_at, finished_at, plan, harness_version, uploader, received_at, bundle_status, bundle_signer, bundle_file, total, passed, failed, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
        )
        .bind(&r.run.id)
        .bind(&digest)
        .bind(version_id)
        .bind(r.certification.verdict.as_str())
        .bind(serde_json::to_value(r.run.completion).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .bind(&r.run.started_at)
        .bind(&r.run.finished_at)
        .bind(&r.run.plan)
        .bind(&r.harness.version)
        .bind(&prov.uploader)
        .bind(now())
        .bind(if prov.bundle_status.is_empty() { "none" } else { prov.bundle_status.as_str() })
        .bind(&prov.bundle_signer)
        .bind(&prov.bundle_file)
        .bind(r.summary.total as i64)
        .bind((r.summary.passed + r.summary.flaky) as i64)
        .bind((r.summary.failed + r.summary.error) as i64)
        .bind(serde_json::to_string(&r.summary).unwrap_or_default())
        .fetch_one(&mut *tx)
        .await?;

        // One platform per environment (target) of the run; its verdict is the worst pair
        // verdict on that target (the run's verdict when the run judged no pairs).
        for (target, env) in &r.environments {
            let pkey = format!(
                "{}|{}|{}|{}|{}|{}",
                env.target_kind, env.arch, env.cpu_vendor, env.cpu_model, env.os_id, env.os_version
            );
            let sel: Option<i64> = sqlx::query_scalar("SELECT id FROM platforms WHERE pkey = $1")
                .bind(&pkey)
                .fetch_optional(&mut *tx)
                .await?;
            let platform_id = match sel {
                Some(id) => id,
                None => sqlx::query_scalar(
                    "INSERT INTO platforms (pkey, target, target_kind, arch, cpu_vendor, cpu_model, os_id, os_version, os_name, kernel) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(&pkey)
                .bind(target)
                .bind(&env.target_kind)
                .bind(&env.arch)
                .bind(&env.cpu_vendor)
                .bind(&env.cpu_model)
                .bind(&env.os_id)
                .bind(&env.os_version)
                .bind(&env.os_name)
                .bind(&env.kernel)
                .fetch_one(&mut *tx)
                .await?,
            };
            let pairs: Vec<Verdict> = r
                .certification
                .pairs
                .iter()
                .filter(|p| &p.target == target)
                .map(|p| p.verdict)
                .collect();
            let verdict = pairs
                .iter()
                .map(|v| v.as_str())
                .max_by_key(|v| verdict_rank(v))
                .unwrap_or(r.certification.verdict.as_str());
            sqlx::query("INSERT INTO run_platforms (run_pk, platform_id, target, verdict) VALUES ($1, $2, $3, $4)")
                .bind(run_pk)
                .bind(platform_id)
                .bind(target)
                .bind(verdict)
                .execute(&mut *tx)
                .await?;
        }

        for c in &r.combinations {
            let combination_pk: i64 = sqlx::query_scalar(
                "INSERT INTO combinations (run_pk, combo_id, target, component, component_kind, suite, suite_version, verdict, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(run_pk)
            .bind(&c.id)
            .bind(&c.target)
            .bind(&c.component)
            .bind(&c.component_kind)
            .bind(&c.suite)
            .bind(&c.suite_version)
            .bind(c.verdict.as_str())
            .bind(c.duration_ms as i64)
            .execute_returning(&mut tx)
            .await?;
            // Multi-row inserts, values always bound (the SQL text holds placeholders only).
            for chunk in c.cases.chunks(CASE_BATCH) {
                let mut sql = String::from(
                    "INSERT INTO cases (run_pk, combination_pk, case_key, title, level, status, reason, attempts, duration_ms, metrics) VALUES ",
                );
                for i in 0..chunk.len() {
                    let b = i * 10;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!(
                        "(${},${},${},${},${},${},${},${},${},${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9,
                        b + 10
                    ));
                }
                // Audited: placeholders only, built from the chunk length; every value is bound.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for case in chunk {
                    q = q
                        .bind(run_pk)
                        .bind(combination_pk)
                        .bind(format!("{}/{}", c.suite, case.id))
                        .bind(&case.title)
                        .bind(
                            if case.level == adaptest_schema::results::Level::Mandatory {
                                "mandatory"
                            } else {
                                "optional"
                            },
                        )
                        .bind(case.status.as_str())
                        .bind(case.reason.clone().unwrap_or_default())
                        .bind(case.attempts as i64)
                        .bind(case.duration_ms as i64)
                        .bind(serde_json::to_string(&case.metrics).unwrap_or_else(|_| "[]".into()));
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok((Ingested::Created, r.run.id.clone()))
    }
}

/// Cases per multi-row INSERT (10 values each; SQLite allows 32,766 bound values).
const CASE_BATCH: usize = 500;

trait ExecReturning {
    async fn execute_returning(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<i64, sqlx::Error>;
}

impl<'q> ExecReturning for sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments> {
    async fn execute_returning(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<i64, sqlx::Error> {
        self.fetch_one(&mut **tx).await
    }
}

async fn upsert_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    select: &'static str,
    insert: &'static str,
    args: &[&String],
) -> Result<i64, sqlx::Error> {
    let mut q = sqlx::query(select);
    for a in args {
        q = q.bind(a.as_str());
    }
    if let Some(row) = q.fetch_optional(&mut **tx).await? {
        return row.try_get::<i64, _>(0);
    }
    let mut q = sqlx::query(insert);
    for a in args {
        q = q.bind(a.as_str());
    }
    q.fetch_one(&mut **tx).await?.try_get::<i64, _>(0)
}
