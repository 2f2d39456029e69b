//! Executing a plan: targets are started once, combinations run in parallel within per-target
//! slots, cases run in order within a combination, every finished case goes to the journal.
//!
//! Message passing: executors own their combination and report over the event channel; the only
//! shared state is the journal (append under a lock) and the stop flags.

use crate::events::{Event, EventSender};
use crate::expect;
use crate::journal::{CaseRecord, Journal, JournalError, Record};
use crate::kinds::{self, CaseOutcome};
use crate::spec::duration::format_duration;
use crate::spec::suite::{Action, Case, Requirements};
use crate::spec::{Combination, Plan};
use adaptest_adapters::component::{Component, Endpoint};
use adaptest_adapters::{ExecRequest, Target, TargetError};
use adaptest_reports::{Environment, Status};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

/// Bytes of stdout/stderr kept in results and the journal (the log keeps up to the capture limit).
pub const EXCERPT_BYTES: usize = 4096;

/// Set on every command a case runs (not on lifecycle commands, whose servers are meant to
/// outlive them) to the combination's scope, `RUN_ID/COMBINATION;`. Processes inherit it, so a
/// daemon that left the command's process tree (double fork, `setsid`) still carries it: when
/// the combination ends, whatever still has it in its environment on the target is killed
/// (the technique of Jenkins' ProcessTreeKiller). The `;` ends the value: ids never contain one.
pub const SCOPE_VAR: &str = "ADAPTEST_SCOPE";

/// The value of [`SCOPE_VAR`] for one combination of one run.
fn scope_of(run_id: &str, combo: &Combination) -> String {
    format!("{run_id}/{};", combo.id)
}

/// The end-of-combination command: kill what the combination's cases left running (found by
/// [`SCOPE_VAR`] in `/proc/*/environ`: one `grep`, no process per candidate, so it stays cheap
/// under emulation), print their pids, then remove the scratch directory.
fn teardown_command(scope: &str, workdir: &str) -> String {
    use adaptest_adapters::target::shell_quote;
    format!(
        "for f in $(grep -l -s -F {} /proc/[0-9]*/environ 2>/dev/null); do \
         p=${{f#/proc/}}; p=${{p%/environ}}; kill -9 \"$p\" 2>/dev/null && echo \"$p\"; done; \
         rm -rf {}",
        shell_quote(&format!("{SCOPE_VAR}={scope}")),
        shell_quote(workdir)
    )
}

/// How a run is executed.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Combinations at once per target; `None`: the target's `slots`, else its CPU count.
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    /// Between SIGTERM and SIGKILL for a timed-out or cancelled command.
    pub grace: Duration,
}

/// Why the run stopped early, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    FailFast,
}

/// What executing a plan left behind (the journal and logs hold the details).
#[derive(Debug)]
pub struct ExecSummary {
    pub stopped: Option<StopReason>,
    pub environments: HashMap<String, Environment>,
    pub target_errors: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where built images and other reusable artefacts live: `$ADAPTEST_CACHE`, else
/// `$XDG_CACHE_HOME/adaptest`, else `~/.cache/adaptest`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ADAPTEST_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("adaptest");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/adaptest")
}

/// Build the adapter for a plan's target; a target that cannot even be built becomes one whose
/// `start` fails with the reason, so its cases are recorded as errors and the rest run.
fn make_target(
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

struct TargetSlot {
    target: Arc<dyn Target>,
    /// The plan's `timeout_factor`, else the target's own (asked once it has started).
    timeout_factor: Option<f64>,
    slots: Semaphore,
    env: OnceCell<Result<Environment, String>>,
    commands: tokio::sync::Mutex<HashMap<String, bool>>,
}

/// A target × component pair: the component's adapter, endpoint, lifecycle and version.
struct PairSlot {
    target: String,
    spec: crate::spec::ComponentSpec,
    /// `Ok(None)`: the component is the target's OS (no adapter).
    adapter: OnceCell<Result<Option<Arc<dyn Component>>, String>>,
    addr: OnceCell<Result<Option<std::net::SocketAddr>, String>>,
    /// The pair's synthetic `lifecycle` combination, when it declares commands.
    lifecycle: Option<Combination>,
    setup: OnceCell<Result<(), String>>,
    /// Suites of this pair not finished yet; the last one tears the component down.
    remaining: std::sync::atomic::AtomicUsize,
    version: OnceCell<Option<String>>,
    /// Held for the whole of each combination of this pair when its component is a database
    /// that other pairs of the run also reach (the same server and database, e.g. through a
    /// driver and through `psql`): suites create fixed table names, so they take turns.
    database: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// Which database a SQL component reaches, as far as the plan tells: the same key means the
/// same tables. `None` for other components, and for SQLite without a `path` (each component
/// gets a scratch file of its own).
fn database_key(target: &str, spec: &crate::spec::ComponentSpec) -> Option<String> {
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

struct Ctx {
    pairs: HashMap<(String, String), Arc<PairSlot>>,
    run_id: String,
    run_dir: PathBuf,
    journal: Journal,
    events: EventSender,
    cancel: CancellationToken,
    fail_fast: bool,
    fail_fast_hit: AtomicBool,
    grace: Duration,
    targets: HashMap<String, TargetSlot>,
    /// (combination, case) already finished in an earlier session of this run.
    done: HashSet<(String, String)>,
    /// Secret variables case processes do not inherit, and values no evidence may show.
    secrets: crate::secrets::Secrets,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.fail_fast_hit.load(Ordering::Relaxed)
    }
}

/// Where a run records what it does.
#[derive(Debug)]
pub struct Session {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub journal: Journal,
    /// (combination, case) already finished in an earlier session of this run: not run again.
    pub done: HashSet<(String, String)>,
}

/// Execute every combination of `plan`, skipping the cases the session has already finished.
pub async fn execute(
    plan: &Plan,
    session: Session,
    opts: &ExecOptions,
    events: EventSender,
    cancel: CancellationToken,
) -> Result<ExecSummary, EngineError> {
    let Session {
        run_id,
        run_dir,
        journal,
        done,
    } = session;
    let target_ctx = adaptest_adapters::target::TargetContext {
        run_dir: run_dir.clone(),
        cache_dir: cache_dir(),
    };
    let mut targets = HashMap::new();
    for t in &plan.targets {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let slots = opts
            .jobs
            .or(t.slots.map(|s| s as usize))
            .unwrap_or(cpus)
            .max(1);
        targets.insert(
            t.id.clone(),
            TargetSlot {
                target: make_target(t, &target_ctx),
                timeout_factor: t.timeout_factor,
                slots: Semaphore::new(slots),
                env: OnceCell::new(),
                commands: tokio::sync::Mutex::new(HashMap::new()),
            },
        );
    }
    let mut pairs: HashMap<(String, String), Arc<PairSlot>> = HashMap::new();
    let mut databases: HashMap<String, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
    let is_lifecycle = |c: &Combination| c.suite.id == crate::spec::plan::LIFECYCLE_SUITE;
    let is_pending = |c: &Combination| {
        c.suite
            .cases
            .iter()
            .any(|k| !done.contains(&(c.id.clone(), k.id.clone())))
    };
    for combo in plan
        .combinations
        .iter()
        .filter(|c| !is_lifecycle(c) && is_pending(c))
    {
        let Some(spec) = plan.component(&combo.component) else {
            continue;
        };
        if spec.kind == "os"
            && plan
                .combinations
                .iter()
                .all(|c| !(is_lifecycle(c) && c.component == spec.id))
        {
            continue;
        }
        let key = (combo.target.clone(), combo.component.clone());
        let lifecycle = plan
            .combinations
            .iter()
            .find(|c| is_lifecycle(c) && c.target == combo.target && c.component == combo.component)
            .cloned();
        let pair = pairs.entry(key).or_insert_with(|| {
            Arc::new(PairSlot {
                target: combo.target.clone(),
                spec: spec.clone(),
                adapter: OnceCell::new(),
                addr: OnceCell::new(),
                lifecycle,
                setup: OnceCell::new(),
                remaining: std::sync::atomic::AtomicUsize::new(0),
                version: OnceCell::new(),
                database: database_key(&combo.target, spec).map(|k| {
                    databases
                        .entry(k)
                        .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                        .clone()
                }),
            })
        });
        pair.remaining.fetch_add(1, Ordering::Relaxed);
    }
    let ctx = Arc::new(Ctx {
        pairs,
        run_id,
        run_dir,
        journal,
        events,
        cancel,
        fail_fast: opts.fail_fast,
        fail_fast_hit: AtomicBool::new(false),
        grace: opts.grace,
        targets,
        done,
        secrets: crate::secrets::Secrets::of_plan(plan),
    });

    let mut tasks = tokio::task::JoinSet::new();
    for combo in plan
        .combinations
        .iter()
        .filter(|c| !is_lifecycle(c))
        .cloned()
    {
        let pending = combo
            .suite
            .cases
            .iter()
            .any(|c| !ctx.done.contains(&(combo.id.clone(), c.id.clone())));
        if pending {
            let ctx = ctx.clone();
            tasks.spawn(async move { run_combination(ctx, combo).await });
        }
    }
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The journal could not be written: nothing more can be recorded safely.
                ctx.cancel.cancel();
                first_err.get_or_insert(e);
            }
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    // Every finished case durable and reported before the run's results are assembled.
    if let Err(e) = ctx.journal.flush() {
        first_err.get_or_insert(e.into());
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut environments = HashMap::new();
    let mut target_errors = Vec::new();
    for (id, slot) in &ctx.targets {
        match slot.env.get() {
            Some(Ok(env)) => {
                let mut env = env.clone();
                for ((t, c), pair) in &ctx.pairs {
                    if t == id
                        && let Some(Some(v)) = pair.version.get()
                    {
                        env.components.insert(c.clone(), v.clone());
                    }
                }
                environments.insert(id.clone(), env);
            }
            Some(Err(e)) => target_errors.push((id.clone(), e.clone())),
            None => {}
        }
        if slot.env.get().is_some() {
            let _ = slot.target.stop().await;
        }
    }
    let stopped = if ctx.cancel.is_cancelled() {
        Some(StopReason::Interrupted)
    } else if ctx.fail_fast_hit.load(Ordering::Relaxed) {
        Some(StopReason::FailFast)
    } else {
        None
    };
    Ok(ExecSummary {
        stopped,
        environments,
        target_errors,
    })
}

/// Start the target and capture its environment, once per target per run.
async fn target_env(ctx: &Ctx, target_id: &str) -> Result<Environment, String> {
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

/// `outer: inner: innermost` for an error and its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// The last `max` bytes of `bytes` as text, cut at a character boundary.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// A shell error on the way to running cases: every pending case is recorded as `error`.
async fn record_all_error(
    ctx: &Ctx,
    combo: &Combination,
    cases: &[&Case],
    why: &str,
) -> Result<(), EngineError> {
    for case in cases {
        record(ctx, combo, case, 0, 0, CaseOutcome::error(why)).await?;
    }
    Ok(())
}

async fn run_combination(ctx: Arc<Ctx>, combo: Combination) -> Result<(), EngineError> {
    let slot = &ctx.targets[&combo.target];
    let pair = ctx
        .pairs
        .get(&(combo.target.clone(), combo.component.clone()))
        .cloned();
    let (result, workdir) = run_combination_inner(&ctx, &combo, pair.as_deref()).await;
    // The last suite of a pair stops and uninstalls the component, even after a failure or an
    // interruption: we leave the target as we found it. It runs in this combination's scratch
    // directory, or in a fresh one when this combination stopped before it had one.
    let mut workdir = workdir;
    if let Some(pair) = &pair
        && pair.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        && pair.setup.get().is_some()
    {
        let _permit = slot.slots.acquire().await.expect("semaphore never closed");
        if workdir.is_none() {
            workdir = scratch_dir(slot.target.as_ref(), &CancellationToken::new())
                .await
                .ok();
        }
        teardown(&ctx, pair, workdir.as_deref().unwrap_or("/")).await?;
    }
    if let Some(workdir) = workdir {
        clean_up(&ctx, &combo, &workdir).await;
    }
    result
}

/// Create a private scratch directory on the target; `Err` is why not (`None`: cancelled).
async fn scratch_dir(
    target: &dyn Target,
    cancel: &CancellationToken,
) -> Result<String, Option<String>> {
    let mk = ExecRequest::new(
        "d=$(mktemp -d \"${TMPDIR:-/tmp}/adaptest.XXXXXX\") && printf %s \"$d\"",
        Duration::from_secs(30),
    );
    match target.exec(mk, cancel).await {
        Ok(o) if o.exit_code == Some(0) && !o.stdout.is_empty() => {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Ok(o) if o.cancelled => Err(None),
        Ok(o) => Err(Some(format!(
            "could not create a scratch directory on the target: {}",
            excerpt(&o.stderr, 300).trim()
        ))),
        Err(e) => Err(Some(error_chain(&e))),
    }
}

/// End what the combination's cases left running (by [`SCOPE_VAR`]) and remove its scratch
/// directory.
async fn clean_up(ctx: &Ctx, combo: &Combination, workdir: &str) {
    let slot = &ctx.targets[&combo.target];
    let teardown = ExecRequest::new(
        teardown_command(&scope_of(&ctx.run_id, combo), workdir),
        Duration::from_secs(60),
    );
    match slot.target.exec(teardown, &CancellationToken::new()).await {
        Err(e) => tracing::warn!(
            "failed to clean up after {} ({workdir}): {}",
            combo.id,
            error_chain(&e)
        ),
        Ok(o) => {
            let killed: Vec<&str> = std::str::from_utf8(&o.stdout)
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            if !killed.is_empty() {
                tracing::warn!(
                    "{}: killed {} process(es) its cases left running on {}: pid {}",
                    combo.id,
                    killed.len(),
                    combo.target,
                    killed.join(", ")
                );
            }
        }
    }
}

/// Run the pending cases of a combination; also returns its scratch directory, if it made one
/// (removed by the caller, after the pair's teardown).
async fn run_combination_inner(
    ctx: &Arc<Ctx>,
    combo: &Combination,
    pair: Option<&PairSlot>,
) -> (Result<(), EngineError>, Option<String>) {
    let slot = &ctx.targets[&combo.target];
    // The database first, then a slot: a combination waiting for its database holds no slot.
    let _database = match pair.and_then(|p| p.database.as_ref()) {
        Some(m) => Some(m.lock().await),
        None => None,
    };
    let _permit = slot.slots.acquire().await.expect("semaphore never closed");
    if ctx.stopping() {
        return (Ok(()), None);
    }
    let pending: Vec<&Case> = combo
        .suite
        .cases
        .iter()
        .filter(|c| !ctx.done.contains(&(combo.id.clone(), c.id.clone())))
        .collect();
    // Ctrl-C does not wait for a guest to finish booting: the start is dropped (a half-started
    // QEMU is killed with its handle) and the cases stay unrecorded for `--resume`.
    let started = tokio::select! {
        r = target_env(ctx, &combo.target) => r,
        () = ctx.cancel.cancelled() => return (Ok(()), None),
    };
    let env = match started {
        Ok(env) => env,
        Err(msg) => {
            let why = format!("target {} is unavailable: {msg}", combo.target);
            return (record_all_error(ctx, combo, &pending, &why).await, None);
        }
    };
    // A private scratch directory on the target for this combination.
    let workdir = match scratch_dir(slot.target.as_ref(), &ctx.cancel).await {
        Ok(d) => d,
        Err(None) => return (Ok(()), None),
        Err(Some(why)) => return (record_all_error(ctx, combo, &pending, &why).await, None),
    };
    let run_cases = async {
        // Components with lifecycle commands are installed, started and ready before any suite.
        let component = match pair {
            Some(pair) => match setup(ctx, pair, &workdir).await {
                Ok(()) => Some(pair),
                Err(why) => return record_all_error(ctx, combo, &pending, &why).await,
            },
            None => None,
        };
        let commands = available_commands(ctx, &combo.target, &pending).await;
        // The adapter first: a plugin's capabilities are known once it has described itself.
        if let Some(p) = component {
            let _ = pair_adapter(p).await;
        }
        let capabilities: Vec<String> = match component.and_then(|p| p.adapter.get()) {
            Some(Ok(Some(a))) => a.capabilities(),
            _ => adaptest_adapters::component::component_kind(&combo.component_kind)
                .map(|k| k.capabilities.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default(),
        };
        // A suite written for a capability the component turns out not to offer (a plugin
        // describing other ones) does not apply to it.
        let suite_cap = combo.suite.component.as_str();
        let not_offered = (suite_cap != combo.component_kind
            && adaptest_adapters::component::KNOWN_CAPABILITIES.contains(&suite_cap)
            && matches!(component.and_then(|p| p.adapter.get()), Some(Ok(Some(_))))
            && !capabilities.iter().any(|c| c == suite_cap))
        .then(|| {
            format!(
                "suite `{}` exercises capability `{suite_cap}`, which component `{}` does not offer (it offers: {})",
                combo.suite.id,
                combo.component,
                capabilities.join(", ")
            )
        });
        let factor = timeout_factor(&ctx.targets[&combo.target]).await;
        for case in &pending {
            if ctx.stopping() {
                break;
            }
            let scaled;
            let case = if factor == 1.0 {
                *case
            } else {
                scaled = scale_timeout(case, factor);
                &scaled
            };
            if let Some(why) = not_offered
                .clone()
                .or_else(|| unmet(&case.requires, &env, &commands, &capabilities))
            {
                let mut o = CaseOutcome::passed();
                o.status = Status::Skipped;
                o.reason = Some(why);
                record(ctx, combo, case, 0, 0, o).await?;
                continue;
            }
            let started = Instant::now();
            let mut attempts = 0;
            let mut log = String::new();
            let outcome = loop {
                attempts += 1;
                let o = run_case(ctx, combo, case, component, &env, &workdir).await;
                if o.cancelled {
                    return Ok(()); // not finished: a resume runs it again
                }
                use std::fmt::Write as _;
                let _ = writeln!(
                    log,
                    "=== attempt {attempts} of {} ===\n{}",
                    case.retries + 1,
                    o.log.trim_end()
                );
                let _ = writeln!(
                    log,
                    "--- verdict: {} ---",
                    o.reason.as_deref().unwrap_or("passed")
                );
                if o.status == Status::Passed
                    || attempts > case.retries
                    || ctx.cancel.is_cancelled()
                {
                    let mut o = o;
                    if o.status == Status::Passed && attempts > 1 {
                        o.status = Status::Flaky;
                        o.reason = Some(format!(
                            "passed on attempt {attempts} of {}",
                            case.retries + 1
                        ));
                    }
                    break o;
                }
            };
            let mut outcome = outcome;
            outcome.log = log;
            let failed = matches!(outcome.status, Status::Failed | Status::Error);
            record(
                ctx,
                combo,
                case,
                attempts,
                started.elapsed().as_millis() as u64,
                outcome,
            )
            .await?;
            if ctx.fail_fast && failed {
                ctx.fail_fast_hit.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    };
    (run_cases.await, Some(workdir))
}

/// One attempt of one case.
async fn run_case(
    ctx: &Ctx,
    combo: &Combination,
    case: &Case,
    pair: Option<&PairSlot>,
    env: &Environment,
    workdir: &str,
) -> CaseOutcome {
    let slot = &ctx.targets[&combo.target];
    let vars = vec![
        ("ADAPTEST_WORKDIR".to_string(), workdir.to_string()),
        ("ADAPTEST_TARGET".into(), combo.target.clone()),
        ("ADAPTEST_COMPONENT".into(), combo.component.clone()),
        ("ADAPTEST_ARCH".into(), env.arch.clone()),
        ("ADAPTEST_CASE".into(), case.id.clone()),
        ("ADAPTEST_RUN_ID".into(), ctx.run_id.clone()),
        (SCOPE_VAR.into(), scope_of(&ctx.run_id, combo)),
    ];
    if let Action::Run(run) = &case.action {
        // A case's process inherits no secret variable but those it names (`pass_env`).
        let scrub = ctx.secrets.scrubbed_vars(&run.pass_env);
        return run_shell(
            slot.target.as_ref(),
            run,
            case,
            vars,
            (workdir, &scrub),
            ctx.grace,
            &ctx.cancel,
        )
        .await;
    }
    if let Action::Import(imp) = &case.action {
        let scrub = ctx.secrets.scrubbed_vars(&[]);
        return kinds::import::run(
            slot.target.as_ref(),
            imp,
            case,
            vars,
            (workdir, &scrub),
            ctx.grace,
            &ctx.cancel,
        )
        .await;
    }
    let Some(pair) = pair else {
        return CaseOutcome::error(format!(
            "case kind needs a component adapter, and `{}` is the target's shell",
            combo.component
        ));
    };
    let (adapter, endpoint) = match component_endpoint(ctx, pair, workdir).await {
        Ok(x) => x,
        Err(why) => return CaseOutcome::error(why),
    };
    // A component case is bounded by the case's timeout like a shell command, and ends at once
    // on Ctrl-C whatever it waits for (a connect, a login, an operation on a hung server):
    // dropping the work drops its sessions, which closes their connections (and a command's
    // guard kills its process tree). The version query is part of it.
    let work = async {
        note_version(pair, adapter.as_ref(), &endpoint).await;
        match &case.action {
            Action::Run(_) | Action::Import(_) => unreachable!("handled above"),
            Action::Steps(steps) => {
                let control = Restarter {
                    ctx,
                    pair,
                    workdir,
                    combo,
                };
                kinds::steps::run(adapter.as_ref(), &endpoint, &control, steps, &ctx.cancel).await
            }
            Action::Bench(b) => kinds::bench::run(adapter.clone(), &endpoint, b, &ctx.cancel).await,
            Action::Sql(sql) => {
                let mut session = match adapter.open(&endpoint).await {
                    Ok(s) => s,
                    Err(e) => return CaseOutcome::from_error(&e, ""),
                };
                let (name, report) = tokio::select! {
                    r = kinds::sql::run_case(
                        session.as_mut(),
                        &combo.component_kind,
                        sql,
                        &pair.spec.labels,
                    ) => r,
                    () = ctx.cancel.cancelled() => return CaseOutcome::cancelled(),
                };
                let _ = session.close().await;
                kinds::sql::outcome(&name, &combo.component_kind, &report)
            }
        }
    };
    let timed = tokio::time::timeout(case.timeout, work);
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => CaseOutcome::cancelled(),
        r = timed => match r {
            Ok(o) => o,
            Err(_) => {
                CaseOutcome::failed(format!("timed out after {}", format_duration(case.timeout)))
            }
        },
    }
}

async fn run_shell(
    target: &dyn Target,
    run: &crate::spec::suite::RunAction,
    case: &Case,
    vars: Vec<(String, String)>,
    (workdir, scrub): (&str, &[String]),
    grace: Duration,
    cancel: &CancellationToken,
) -> CaseOutcome {
    let mut req = ExecRequest::new(run.command.clone(), case.timeout);
    req.env_remove = scrub.to_vec();
    req.grace = grace;
    // Lifecycle commands start and stop services: what they leave running is the point.
    req.keep_background = case.tags.iter().any(|t| t == "lifecycle");
    req.stdin = run.stdin.clone().map(String::into_bytes);
    req.cwd = Some(run.cwd.clone().unwrap_or_else(|| workdir.to_string()));
    req.env = vars;
    req.env
        .extend(run.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    match target.exec(req, cancel).await {
        Err(e) => CaseOutcome::error(error_chain(&e)),
        Ok(o) if o.cancelled => CaseOutcome::cancelled(),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            let stderr = String::from_utf8_lossy(&o.stderr);
            let verdict = if o.timed_out {
                Some(format!(
                    "timed out after {}; the process tree was terminated ({})",
                    format_duration(case.timeout),
                    adaptest_adapters::exit_status::describe(o.exit_code, o.signal)
                ))
            } else {
                expect::check(&run.expect, o.exit_code, o.signal, &stdout, &stderr)
            };
            let mut log = String::new();
            kinds::command_log::append(&mut log, &run.command, &o, usize::MAX);
            CaseOutcome {
                status: if verdict.is_some() {
                    Status::Failed
                } else {
                    Status::Passed
                },
                reason: verdict,
                exit_code: o.exit_code,
                stdout: excerpt(&o.stdout, EXCERPT_BYTES),
                stderr: excerpt(&o.stderr, EXCERPT_BYTES),
                log,
                metrics: Vec::new(),
                cancelled: false,
                children: Vec::new(),
                sql_records: None,
                leaked: o.leaked,
            }
        }
    }
}

/// The component adapter of a pair (created once) and an endpoint for this combination.
/// The component adapter of a pair, created once (`None`: the target's OS, no adapter).
async fn pair_adapter(pair: &PairSlot) -> Result<Option<Arc<dyn Component>>, String> {
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

async fn component_endpoint(
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
            match (&pair.spec.config.host, target.kind()) {
                (Some(host), "local") => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?
                    .next()
                    .map(Some)
                    .ok_or_else(|| format!("{host} has no address")),
                _ => target
                    .connect_addr(port)
                    .await
                    .map(Some)
                    .map_err(|e| error_chain(&e)),
            }
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
async fn timeout_factor(slot: &TargetSlot) -> f64 {
    match slot.timeout_factor {
        Some(f) => f,
        None => slot.target.timeout_factor().await,
    }
}

/// `case` with its timeout multiplied by `factor` (a slow, emulated target).
fn scale_timeout(case: &Case, factor: f64) -> Case {
    let mut c = case.clone();
    c.timeout = case.timeout.mul_f64(factor);
    c
}

/// Ask the component for its version once per pair (for the environment and the reports).
async fn note_version(pair: &PairSlot, adapter: &dyn Component, endpoint: &Endpoint) {
    pair.version
        .get_or_init(|| async {
            match adapter.open(endpoint).await {
                Ok(mut s) => {
                    let v = s.version().await.ok();
                    let _ = s.close().await;
                    v
                }
                Err(_) => None,
            }
        })
        .await;
}

/// What one lifecycle step did.
struct StepRun<'p> {
    /// The step's case in the pair's `lifecycle` combination; `None` for the default readiness
    /// check (the plan declares no `ready` command), which is no certification item.
    case: Option<&'p Case>,
    outcome: CaseOutcome,
    duration_ms: u64,
}

/// Run one lifecycle step of a pair (`install`, `start`, `ready`, `stop`, `uninstall`): the one
/// way setup, `component.restart` and teardown run them. Every step's command gets the
/// `ADAPTEST_*` variables of lifecycle commands (never [`SCOPE_VAR`]: what `start` launches
/// must outlive the combination), runs in `workdir`, and has the step's timeout scaled by the
/// target's `timeout_factor`. `ready` is polled until it succeeds or its timeout passes; without
/// a `ready` command a pair that is started by the plan is ready when its component accepts a
/// connection. `None`: nothing to do for this step.
async fn lifecycle_step<'p>(
    ctx: &Ctx,
    pair: &'p PairSlot,
    step: &str,
    workdir: &str,
    cancel: &CancellationToken,
) -> Option<StepRun<'p>> {
    let combo = pair.lifecycle.as_ref()?;
    let case = combo.suite.cases.iter().find(|c| c.id == step);
    let started = Instant::now();
    let factor = timeout_factor(&ctx.targets[&pair.target]).await;
    let outcome = match case.map(|c| (c, &c.action)) {
        Some((case, Action::Run(run))) => {
            let case = &scale_timeout(case, factor);
            let target = ctx.targets[&pair.target].target.clone();
            let vars = vec![
                ("ADAPTEST_WORKDIR".to_string(), workdir.to_string()),
                ("ADAPTEST_TARGET".into(), pair.target.clone()),
                ("ADAPTEST_COMPONENT".into(), pair.spec.id.clone()),
            ];
            let target = target.as_ref();
            // Lifecycle commands are the plan's own (a server started with its password): they
            // keep the secret variables; their output is redacted like a case's.
            if step == "ready" {
                let deadline = Instant::now() + case.timeout;
                let mut short = case.clone();
                short.timeout = READY_ATTEMPT.min(case.timeout);
                let mut o = loop {
                    let o = run_shell(
                        target,
                        run,
                        &short,
                        vars.clone(),
                        (workdir, &[]),
                        ctx.grace,
                        cancel,
                    )
                    .await;
                    if o.status == Status::Passed || o.cancelled || Instant::now() >= deadline {
                        break o;
                    }
                    tokio::time::sleep(READY_POLL).await;
                };
                if !o.cancelled && o.status != Status::Passed {
                    o.reason = Some(format!(
                        "not ready within {}: {}",
                        format_duration(case.timeout),
                        o.reason.unwrap_or_default()
                    ));
                }
                o
            } else {
                run_shell(target, run, case, vars, (workdir, &[]), ctx.grace, cancel).await
            }
        }
        Some(_) => return None,
        None if step == "ready" && pair.spec.config.lifecycle.start.is_some() => {
            let timeout = pair
                .spec
                .config
                .lifecycle
                .ready_timeout
                .unwrap_or(DEFAULT_READY_TIMEOUT)
                .mul_f64(factor);
            accepts_connection(ctx, pair, workdir, timeout, cancel).await?
        }
        None => return None,
    };
    Some(StepRun {
        case,
        outcome,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// How long `ready` is waited for when the plan gives no `ready_timeout`.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest one attempt of a `ready` command may take.
const READY_ATTEMPT: Duration = Duration::from_secs(10);
/// Between two readiness attempts.
const READY_POLL: Duration = Duration::from_millis(300);

/// The default readiness check: poll until the pair's component accepts a connection (a
/// session opens), or `timeout` passes. `None` when the component has no adapter to connect
/// with (the target's OS).
async fn accepts_connection(
    ctx: &Ctx,
    pair: &PairSlot,
    workdir: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<CaseOutcome> {
    if !matches!(pair_adapter(pair).await, Ok(Some(_))) {
        return None;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let last = match component_endpoint(ctx, pair, workdir).await {
            Ok((adapter, ep)) => {
                let opened = tokio::select! {
                    r = adapter.open(&ep) => r,
                    () = cancel.cancelled() => return Some(CaseOutcome::cancelled()),
                };
                match opened {
                    Ok(s) => {
                        let _ = s.close().await;
                        return Some(CaseOutcome::passed());
                    }
                    Err(e) => error_chain(&e),
                }
            }
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Some(CaseOutcome::failed(format!(
                "not ready within {}: component `{}` accepts no connection: {last}",
                format_duration(timeout),
                pair.spec.id
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(READY_POLL) => {}
            () = cancel.cancelled() => return Some(CaseOutcome::cancelled()),
        }
    }
}

/// Run a lifecycle step of a pair and journal it as a case of its `lifecycle` combination.
/// `Ok(false)`: the step failed or was cancelled.
async fn recorded_step(
    ctx: &Ctx,
    pair: &PairSlot,
    step: &str,
    workdir: &str,
    cancel: &CancellationToken,
) -> Result<Result<(), String>, EngineError> {
    let Some(run) = lifecycle_step(ctx, pair, step, workdir, cancel).await else {
        return Ok(Ok(()));
    };
    if run.outcome.cancelled {
        return Ok(Err(format!(
            "component `{}`: lifecycle `{step}` was interrupted",
            pair.spec.id
        )));
    }
    let passed = run.outcome.status == Status::Passed;
    let why = run.outcome.reason.clone().unwrap_or_default();
    match (run.case, &pair.lifecycle) {
        (Some(case), Some(combo)) => {
            record(ctx, combo, case, 1, run.duration_ms, run.outcome).await?;
        }
        _ if passed => {}
        // The default readiness check is no case of its own: its failure is the reason.
        _ => {
            return Ok(Err(format!(
                "component `{}`: lifecycle `{step}` failed: {why}",
                pair.spec.id
            )));
        }
    }
    Ok(if passed {
        Ok(())
    } else {
        Err(format!(
            "component `{}`: lifecycle `{step}` failed",
            pair.spec.id
        ))
    })
}

/// Install, start and wait for the component of a pair, once per run.
async fn setup(ctx: &Ctx, pair: &PairSlot, workdir: &str) -> Result<(), String> {
    pair.setup
        .get_or_init(|| async {
            for step in ["install", "start", "ready"] {
                match recorded_step(ctx, pair, step, workdir, &ctx.cancel).await {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => return Err(why),
                    Err(e) => return Err(error_chain(&e)),
                }
            }
            Ok(())
        })
        .await
        .clone()
}

/// Stop and uninstall the component of a pair after its last suite, in the scratch directory
/// of the combination that ran it (never interrupted: we leave the target as we found it).
async fn teardown(ctx: &Ctx, pair: &PairSlot, workdir: &str) -> Result<(), EngineError> {
    let never = CancellationToken::new();
    for step in ["stop", "uninstall"] {
        if let Err(why) = recorded_step(ctx, pair, step, workdir, &never).await? {
            tracing::warn!("{why}");
        }
    }
    Ok(())
}

/// `component.restart` for steps: the lifecycle's stop and start, then readiness, through the
/// same [`lifecycle_step`] as setup and teardown; each command and its output go into the
/// case's log.
struct Restarter<'a> {
    ctx: &'a Ctx,
    pair: &'a PairSlot,
    workdir: &'a str,
    /// The combination whose steps run: its [`SCOPE_VAR`] goes on their `shell` commands.
    combo: &'a Combination,
}

#[async_trait::async_trait]
impl kinds::ComponentControl for Restarter<'_> {
    fn command_env(&self) -> Vec<(String, String)> {
        vec![(
            SCOPE_VAR.to_string(),
            scope_of(&self.ctx.run_id, self.combo),
        )]
    }

    fn scrubbed_vars(&self, pass: &[String]) -> Vec<String> {
        self.ctx.secrets.scrubbed_vars(pass)
    }

    fn grace(&self) -> Duration {
        self.ctx.grace
    }

    async fn restart(&self, log: &mut String) -> Result<(), String> {
        let l = &self.pair.spec.config.lifecycle;
        if l.stop.is_none() || l.start.is_none() {
            return Err(format!(
                "component `{}` declares no lifecycle stop and start commands to restart it with",
                self.pair.spec.id
            ));
        }
        for step in ["stop", "start", "ready"] {
            let Some(run) =
                lifecycle_step(self.ctx, self.pair, step, self.workdir, &self.ctx.cancel).await
            else {
                continue;
            };
            use std::fmt::Write as _;
            let _ = writeln!(log, "\n  restart: lifecycle `{step}`");
            log.push_str(&run.outcome.log);
            if run.outcome.cancelled {
                return Err("interrupted".into());
            }
            if run.outcome.status != Status::Passed {
                return Err(format!(
                    "lifecycle {step} during the restart: {}",
                    run.outcome.reason.unwrap_or_default()
                ));
            }
        }
        Ok(())
    }
}

/// Journal one finished case (its log written first), and tell the reporter.
async fn record(
    ctx: &Ctx,
    combo: &Combination,
    case: &Case,
    attempts: u32,
    duration_ms: u64,
    mut o: CaseOutcome,
) -> Result<(), EngineError> {
    // Nothing written below may show a secret (the children are redacted by their own call).
    ctx.secrets.redact_outcome(&mut o);
    // An import's tests first, each a case of its own (`import-id/test`); the import's own
    // record, written last, marks it finished (rundir::assemble shows the tests in its place).
    let mut imported = Vec::new();
    for child in std::mem::take(&mut o.children) {
        let c = Case {
            id: child.id,
            ..case.clone()
        };
        record_one(
            ctx,
            combo,
            &c,
            attempts,
            child.duration_ms,
            child.outcome,
            Vec::new(),
        )
        .await?;
        imported.push(c.id);
    }
    record_one(ctx, combo, case, attempts, duration_ms, o, imported).await
}

/// Write one case's log (on the blocking pool, not a worker) and journal its record.
async fn record_one(
    ctx: &Ctx,
    combo: &Combination,
    case: &Case,
    attempts: u32,
    duration_ms: u64,
    mut o: CaseOutcome,
    imported: Vec<String>,
) -> Result<(), EngineError> {
    let log = if o.log.is_empty() {
        None
    } else {
        let rel = format!("logs/{}/{}.log", combo.id, case.id);
        let path = ctx.run_dir.join(&rel);
        let text = std::mem::take(&mut o.log);
        let (path, write) = tokio::task::spawn_blocking(move || {
            // The combination's log directory exists after its first case: create it only
            // then, not on every case of the hot path.
            let write = match std::fs::write(&path, &text) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(path.parent().expect("has parent"))
                        .and_then(|()| std::fs::write(&path, &text))
                }
                other => other,
            };
            (path, write)
        })
        .await
        .expect("log writer panicked");
        if let Err(source) = write {
            return Err(EngineError::Write { path, source });
        }
        Some(rel)
    };
    let rec = CaseRecord {
        combination: combo.id.clone(),
        case: case.id.clone(),
        level: case.level,
        status: o.status,
        reason: o.reason.clone(),
        attempts,
        duration_ms,
        exit_code: o.exit_code,
        stdout: o.stdout,
        stderr: o.stderr,
        log,
        metrics: o.metrics,
        finished_at: now_rfc3339(),
        imported,
        sql_records: o.sql_records,
        leaked: o.leaked,
    };
    // The case counts (its event) once its record is durable; the next case runs meanwhile.
    let events = ctx.events.clone();
    let finished = Event::CaseFinished {
        combination: combo.id.clone(),
        case: case.id.clone(),
        level: case.level,
        status: o.status,
        duration_ms,
        attempts,
        reason: o.reason,
    };
    ctx.journal.append_then(&Record::Case(rec), move || {
        let _ = events.send(finished);
    })?;
    Ok(())
}

/// Which commands that pending cases require exist on the target (one probe per target, cached).
async fn available_commands(ctx: &Ctx, target_id: &str, cases: &[&Case]) -> HashMap<String, bool> {
    let slot = &ctx.targets[target_id];
    let wanted: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.requires.commands.iter().map(String::as_str))
        .collect();
    let mut cache = slot.commands.lock().await;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| !cache.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        let mut script = String::from("for c in");
        for c in &missing {
            script.push_str(&format!(" '{}'", c.replace('\'', "'\\''")));
        }
        script.push_str("; do if command -v \"$c\" >/dev/null 2>&1; then echo \"$c\"; fi; done");
        let found: HashSet<String> = match slot
            .target
            .exec(
                ExecRequest::new(script, Duration::from_secs(30)),
                &ctx.cancel,
            )
            .await
        {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect(),
            Err(e) => {
                tracing::warn!("command probe on {target_id} failed: {}", error_chain(&e));
                HashSet::new()
            }
        };
        for c in missing {
            cache.insert(c.to_string(), found.contains(c));
        }
    }
    cache.clone()
}

/// Canonical architecture name (`arm64` → `aarch64`).
pub fn canonical_arch(a: &str) -> &str {
    match a {
        "arm64" => "aarch64",
        "amd64" | "x64" => "x86_64",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// Why a case does not apply here, or `None` when every requirement holds.
fn unmet(
    req: &Requirements,
    env: &Environment,
    commands: &HashMap<String, bool>,
    capabilities: &[String],
) -> Option<String> {
    if !req.arch.is_empty()
        && !req
            .arch
            .iter()
            .any(|a| canonical_arch(a) == canonical_arch(&env.arch))
    {
        return Some(format!(
            "requires arch {} (target is {})",
            req.arch.join("|"),
            env.arch
        ));
    }
    if !req.os.is_empty() && !req.os.iter().any(|o| o.eq_ignore_ascii_case(&env.os_id)) {
        return Some(format!(
            "requires OS {} (target is {})",
            req.os.join("|"),
            env.os_id
        ));
    }
    let missing: Vec<&str> = req
        .commands
        .iter()
        .filter(|c| !commands.get(*c).copied().unwrap_or(false))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "requires command(s) not found on the target: {}",
            missing.join(", ")
        ));
    }
    let missing: Vec<&str> = req
        .capabilities
        .iter()
        .filter(|c| !capabilities.contains(c))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "requires capability {} that the component lacks",
            missing.join(", ")
        ));
    }
    None
}
