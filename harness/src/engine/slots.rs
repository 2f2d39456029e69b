//! What the engine holds per target and per target × component pair: the target's adapter
//! and slots, the pair's component adapter, endpoint and database lock, and the run's context.

use crate::events::{Event, EventSender};
use crate::journal::Journal;
use crate::spec::Combination;
use adaptest_adapters::component::{Component, Endpoint};
use adaptest_adapters::text::error_chain;
use adaptest_adapters::{ExecRequest, Target, TargetError};
use adaptest_reports::Environment;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

/// Build the adapter for a plan's target; a target that cannot even be built becomes one whose
/// `start` fails with the reason, so its cases are recorded as errors and the rest run.
pub(super) fn make_target(
    spec: &crate::spec::TargetSpec,
    ctx: &adaptest_adapters::target::TargetContext,
) -> Arc<dyn Target> {
    match adaptest_adapters::target::create(&spec.config, ctx) {
        Ok(t) => t,
        Err(e) => Arc::new(Unavailable {
            id: spec.id.clone(),
            reason: error_chain(&e),
        }),
    }
}

/// A target whose adapter could not be created.
struct Unavailable {
    id: String,
    reason: String,
}

#[async_trait::async_trait]
impl Target for Unavailable {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    async fn start(&self) -> Result<(), TargetError> {
        Err(TargetError::Unreachable {
            target: self.id.clone(),
            reason: self.reason.clone(),
        })
    }
    async fn exec(
        &self,
        _req: ExecRequest,
        _cancel: &CancellationToken,
    ) -> Result<adaptest_adapters::ExecOutput, TargetError> {
        self.start()
            .await
            .map(|()| unreachable!("start always fails"))
    }
    async fn environment(&self) -> Result<Environment, TargetError> {
        self.start()
            .await
            .map(|()| unreachable!("start always fails"))
    }
    async fn stop(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

pub(super) struct TargetSlot {
    pub(super) target: Arc<dyn Target>,
    /// The plan's `timeout_factor`, else the target's own (asked once it has started).
    pub(super) timeout_factor: Option<f64>,
    pub(super) slots: Semaphore,
    pub(super) env: OnceCell<Result<Environment, String>>,
    pub(super) commands: tokio::sync::Mutex<HashMap<String, bool>>,
}

/// A target × component pair: the component's adapter, endpoint, lifecycle and version.
pub(super) struct PairSlot {
    pub(super) target: String,
    pub(super) spec: crate::spec::ComponentSpec,
    /// `Ok(None)`: the component is the target's OS (no adapter).
    pub(super) adapter: OnceCell<Result<Option<Arc<dyn Component>>, String>>,
    pub(super) addr: OnceCell<Result<Option<std::net::SocketAddr>, String>>,
    /// The pair's synthetic `lifecycle` combination, when it declares commands.
    pub(super) lifecycle: Option<Combination>,
    pub(super) setup: OnceCell<Result<(), String>>,
    /// Suites of this pair not finished yet; the last one tears the component down.
    pub(super) remaining: std::sync::atomic::AtomicUsize,
    pub(super) version: OnceCell<Option<String>>,
    /// Held for the whole of each combination of this pair when its component is a database
    /// that other pairs of the run also reach (the same server and database, e.g. through a
    /// driver and through `psql`): suites create fixed table names, so they take turns.
    pub(super) database: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The resource profile's phases sampled so far (`Err`: a phase the sampler failed).
    pub(super) profile: std::sync::Mutex<Vec<Result<super::resources::Phase, String>>>,
}

/// Which database a SQL component reaches, as far as the plan tells: the same key means the
/// same tables. `None` for other components, and for SQLite without a `path` (each component
/// gets a scratch file of its own).
pub(super) fn database_key(target: &str, spec: &crate::spec::ComponentSpec) -> Option<String> {
    let kind = adaptest_adapters::component::component_kind(&spec.kind)?;
    if !kind.capabilities.contains(&"sql") {
        return None;
    }
    let c = &spec.config;
    if let Some(path) = &c.path {
        return Some(format!("{target}|file|{}", path.display()));
    }
    let port = c.port.or(kind.default_port)?;
    let host = match c.host.as_deref().unwrap_or("127.0.0.1") {
        "localhost" | "127.0.0.1" | "::1" | "[::1]" => "loopback",
        h => h,
    };
    Some(format!(
        "{target}|{host}|{port}|{}",
        c.database.as_deref().unwrap_or("")
    ))
}

pub(super) struct Ctx {
    pub(super) pairs: HashMap<(String, String), Arc<PairSlot>>,
    pub(super) run_id: String,
    pub(super) run_dir: PathBuf,
    pub(super) journal: Journal,
    pub(super) events: EventSender,
    pub(super) cancel: CancellationToken,
    pub(super) fail_fast: bool,
    pub(super) fail_fast_hit: AtomicBool,
    pub(super) grace: Duration,
    pub(super) targets: HashMap<String, TargetSlot>,
    /// (combination, case) already finished in an earlier session of this run.
    pub(super) done: HashSet<(String, String)>,
    /// Secret variables case processes do not inherit, and values no evidence may show.
    pub(super) secrets: crate::secrets::Secrets,
}

impl Ctx {
    pub(super) fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.fail_fast_hit.load(Ordering::Relaxed)
    }
}

/// Start the target and capture its environment, once per target per run.
pub(super) async fn target_env(ctx: &Ctx, target_id: &str) -> Result<Environment, String> {
    let slot = &ctx.targets[target_id];
    slot.env
        .get_or_init(|| async {
            let res: Result<Environment, TargetError> = async {
                slot.target.start().await?;
                let mut env = slot.target.environment().await?;
                let factor = timeout_factor(slot).await;
                if factor != 1.0 {
                    env.extra
                        .insert("timeout_factor".into(), format!("{factor}"));
                }
                Ok(env)
            }
            .await;
            match res {
                Ok(env) => {
                    let path = ctx.run_dir.join("env").join(format!("{target_id}.json"));
                    let text = serde_json::to_string_pretty(&env).expect("environment serializes");
                    if let Err(e) = std::fs::write(&path, text) {
                        tracing::warn!("failed to write {}: {e}", path.display());
                    }
                    let _ = ctx.events.send(Event::TargetReady {
                        target: target_id.to_string(),
                        arch: env.arch.clone(),
                        os: env.os_name.clone(),
                    });
                    Ok(env)
                }
                Err(e) => {
                    let msg = error_chain(&e);
                    let _ = ctx.events.send(Event::TargetFailed {
                        target: target_id.to_string(),
                        error: msg.clone(),
                    });
                    Err(msg)
                }
            }
        })
        .await
        .clone()
}

/// The component adapter of a pair, created once (`None`: the target's OS, no adapter).
pub(super) async fn pair_adapter(pair: &PairSlot) -> Result<Option<Arc<dyn Component>>, String> {
    pair.adapter
        .get_or_init(|| async {
            let mut cfg = pair.spec.config.clone();
            if let Some(r) = &pair.spec.password {
                cfg.password = Some(r.resolve()?);
            }
            adaptest_adapters::component::create(&cfg).map_err(|e| error_chain(&e))
        })
        .await
        .clone()
}

/// The component adapter of a pair (created once) and an endpoint for this combination.
pub(super) async fn component_endpoint(
    ctx: &Ctx,
    pair: &PairSlot,
    workdir: &str,
) -> Result<(Arc<dyn Component>, Endpoint), String> {
    let adapter = pair_adapter(pair).await?;
    let Some(adapter) = adapter else {
        return Err(format!(
            "component `{}` has no adapter for this case kind",
            pair.spec.id
        ));
    };
    let target = ctx.targets[&pair.target].target.clone();
    let addr = pair
        .addr
        .get_or_init(|| async {
            let port = pair.spec.config.port.or_else(|| {
                adaptest_adapters::component::component_kind(&pair.spec.kind)
                    .and_then(|k| k.default_port)
            });
            let Some(port) = port else { return Ok(None) };
            target
                .component_addr(pair.spec.config.host.as_deref(), port)
                .await
                .map(Some)
                .map_err(|e| error_chain(&e))
        })
        .await
        .clone()?;
    Ok((
        adapter,
        Endpoint {
            addr,
            target,
            workdir: workdir.to_string(),
        },
    ))
}

/// The factor case timeouts on this target are multiplied by.
pub(super) async fn timeout_factor(slot: &TargetSlot) -> f64 {
    match slot.timeout_factor {
        Some(f) => f,
        None => slot.target.timeout_factor().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adaptest_adapters::component::ComponentConfig;

    fn spec(kind: &str, config: ComponentConfig) -> crate::spec::ComponentSpec {
        crate::spec::ComponentSpec {
            id: "c".into(),
            kind: kind.into(),
            version: None,
            description: String::new(),
            config: ComponentConfig {
                kind: kind.into(),
                ..config
            },
            password: None,
            labels: Vec::new(),
            resources: None,
            recovery: None,
        }
    }

    #[test]
    fn the_same_server_and_database_is_one_key_however_loopback_is_written() {
        let at = |host: Option<&str>, db: &str| {
            spec(
                "postgres",
                ComponentConfig {
                    host: host.map(str::to_string),
                    database: Some(db.into()),
                    ..ComponentConfig::default()
                },
            )
        };
        let default = database_key("t", &at(None, "test")).expect("postgres is sql");
        assert_eq!(default, "t|loopback|5432|test");
        assert_eq!(
            database_key("t", &at(Some("localhost"), "test")),
            Some(default.clone())
        );
        assert_eq!(
            database_key("t", &at(Some("::1"), "test")),
            Some(default.clone())
        );
        assert_ne!(database_key("t", &at(None, "other")), Some(default.clone()));
        assert_ne!(database_key("u", &at(None, "test")), Some(default));
        assert_eq!(
            database_key("t", &at(Some("db.example"), "x")).as_deref(),
            Some("t|db.example|5432|x")
        );
    }

    #[test]
    fn files_are_keyed_by_path_and_non_sql_or_scratch_components_have_none() {
        let sqlite = |path: Option<&str>| {
            spec(
                "sqlite",
                ComponentConfig {
                    path: path.map(PathBuf::from),
                    ..ComponentConfig::default()
                },
            )
        };
        assert_eq!(
            database_key("t", &sqlite(Some("/tmp/a.db"))).as_deref(),
            Some("t|file|/tmp/a.db")
        );
        assert_eq!(database_key("t", &sqlite(None)), None);
        assert_eq!(
            database_key("t", &spec("redis", ComponentConfig::default())),
            None
        );
    }
}
