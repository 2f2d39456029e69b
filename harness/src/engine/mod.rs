//! Executing a plan: targets are started once, combinations run in parallel within per-target
//! slots, cases run in order within a combination, every finished case goes to the journal.
//!
//! Message passing: executors own their combination and report over the event channel; the only
//! shared state is the journal (append under a lock) and the stop flags.

mod case;
mod combination;
mod lifecycle;
mod record;
mod recovery;
mod requirements;
mod residue;
mod resources;
mod slots;

pub use requirements::canonical_arch;

use crate::events::EventSender;
use crate::journal::{Journal, JournalError};
use crate::spec::{Combination, Plan};
use adaptest_reports::Environment;
use combination::run_combination;
use slots::{Ctx, PairSlot, TargetSlot, database_key, make_target};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

pub use crate::kinds::EXCERPT_BYTES;

/// Set on every command a case runs (not on lifecycle commands, whose servers are meant to
/// outlive them) to the combination's scope, `RUN_ID/COMBINATION;`. Processes inherit it, so a
/// daemon that left the command's process tree (double fork, `setsid`) still carries it: when
/// the combination ends, whatever still has it in its environment on the target is killed
/// (the technique of Jenkins' ProcessTreeKiller). The `;` ends the value: ids never contain one.
pub const SCOPE_VAR: &str = "ADAPTEST_SCOPE";

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
                profile: std::sync::Mutex::new(Vec::new()),
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
