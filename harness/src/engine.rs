//! Executing a plan: targets are started once, combinations run in parallel within per-target
//! slots, cases run in order within a combination, every finished case goes to the journal.
//!
//! Message passing: executors own their combination and report over the event channel; the only
//! shared state is the journal (append under a lock) and the stop flags.

use crate::events::{Event, EventSender};
use crate::expect;
use crate::journal::{CaseRecord, Journal, JournalError, Record};
use crate::spec::duration::format_duration;
use crate::spec::suite::{Action, Case, Requirements};
use crate::spec::{Combination, Plan};
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

/// How a run is executed.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Combinations at once per target; `None`: the target's `slots`, else its CPU count.
    pub jobs: Option<usize>,
    pub fail_fast: bool,
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

/// Build the target adapter for a plan's target.
pub fn make_target(spec: &crate::spec::TargetSpec) -> Arc<dyn Target> {
    match spec.kind.as_str() {
        "local" => Arc::new(adaptest_adapters::target::LocalTarget::new(spec.id.clone())),
        other => unreachable!("target kind `{other}` passed validation but has no adapter"),
    }
}

struct TargetSlot {
    target: Arc<dyn Target>,
    slots: Semaphore,
    env: OnceCell<Result<Environment, String>>,
    commands: tokio::sync::Mutex<HashMap<String, bool>>,
}

struct Ctx {
    run_id: String,
    run_dir: PathBuf,
    journal: Journal,
    events: EventSender,
    cancel: CancellationToken,
    fail_fast: bool,
    fail_fast_hit: AtomicBool,
    targets: HashMap<String, TargetSlot>,
    /// (combination, case) already finished in an earlier session of this run.
    done: HashSet<(String, String)>,
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
                target: make_target(t),
                slots: Semaphore::new(slots),
                env: OnceCell::new(),
                commands: tokio::sync::Mutex::new(HashMap::new()),
            },
        );
    }
    let ctx = Arc::new(Ctx {
        run_id,
        run_dir,
        journal,
        events,
        cancel,
        fail_fast: opts.fail_fast,
        fail_fast_hit: AtomicBool::new(false),
        targets,
        done,
    });

    let mut tasks = tokio::task::JoinSet::new();
    for combo in plan.combinations.iter().cloned() {
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
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut environments = HashMap::new();
    let mut target_errors = Vec::new();
    for (id, slot) in &ctx.targets {
        match slot.env.get() {
            Some(Ok(env)) => {
                environments.insert(id.clone(), env.clone());
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
                slot.target.environment().await
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

async fn run_combination(ctx: Arc<Ctx>, combo: Combination) -> Result<(), EngineError> {
    let slot = &ctx.targets[&combo.target];
    let _permit = slot.slots.acquire().await.expect("semaphore never closed");
    if ctx.stopping() {
        return Ok(());
    }
    let pending: Vec<&Case> = combo
        .suite
        .cases
        .iter()
        .filter(|c| !ctx.done.contains(&(combo.id.clone(), c.id.clone())))
        .collect();
    let env = match target_env(&ctx, &combo.target).await {
        Ok(env) => env,
        Err(msg) => {
            for case in pending {
                record(
                    &ctx,
                    &combo,
                    case,
                    Status::Error,
                    Some(format!("target {} is unavailable: {msg}", combo.target)),
                    0,
                    0,
                    None,
                    None,
                )?;
            }
            return Ok(());
        }
    };
    // A private scratch directory on the target for this combination.
    let mk = ExecRequest::new(
        "d=$(mktemp -d \"${TMPDIR:-/tmp}/adaptest.XXXXXX\") && printf %s \"$d\"",
        Duration::from_secs(30),
    );
    let workdir = match slot.target.exec(mk, &ctx.cancel).await {
        Ok(o) if o.exit_code == Some(0) && !o.stdout.is_empty() => {
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        Ok(o) if o.cancelled => return Ok(()),
        Ok(o) => {
            let why = format!(
                "could not create a scratch directory on the target: {}",
                excerpt(&o.stderr, 300).trim()
            );
            for case in pending {
                record(
                    &ctx,
                    &combo,
                    case,
                    Status::Error,
                    Some(why.clone()),
                    0,
                    0,
                    None,
                    None,
                )?;
            }
            return Ok(());
        }
        Err(e) => {
            let why = error_chain(&e);
            for case in pending {
                record(
                    &ctx,
                    &combo,
                    case,
                    Status::Error,
                    Some(why.clone()),
                    0,
                    0,
                    None,
                    None,
                )?;
            }
            return Ok(());
        }
    };
    let commands = available_commands(&ctx, &combo.target, &pending).await;
    let capabilities = adaptest_adapters::component::component_kind(&combo.component_kind)
        .map(|k| k.capabilities)
        .unwrap_or(&[]);

    for case in pending {
        if ctx.stopping() {
            break;
        }
        if let Some(why) = unmet(&case.requires, &env, &commands, capabilities) {
            record(
                &ctx,
                &combo,
                case,
                Status::Skipped,
                Some(why),
                0,
                0,
                None,
                None,
            )?;
            continue;
        }
        let Action::Run(run) = &case.action;
        let mut log = String::new();
        let mut attempts = 0;
        let started = Instant::now();
        let (status, reason, exit_code, out) = loop {
            attempts += 1;
            let mut req = ExecRequest::new(run.command.clone(), case.timeout);
            req.stdin = run.stdin.clone().map(String::into_bytes);
            req.cwd = Some(run.cwd.clone().unwrap_or_else(|| workdir.clone()));
            req.env = vec![
                ("ADAPTEST_WORKDIR".into(), workdir.clone()),
                ("ADAPTEST_TARGET".into(), combo.target.clone()),
                ("ADAPTEST_COMPONENT".into(), combo.component.clone()),
                ("ADAPTEST_ARCH".into(), env.arch.clone()),
                ("ADAPTEST_CASE".into(), case.id.clone()),
                ("ADAPTEST_RUN_ID".into(), ctx.run_id.clone()),
            ];
            req.env
                .extend(run.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let res = slot.target.exec(req, &ctx.cancel).await;
            let (status, reason, exit_code, out) = match res {
                Err(e) => (Status::Error, Some(error_chain(&e)), None, None),
                Ok(o) if o.cancelled => return Ok(()), // not finished: a resume runs it again
                Ok(o) => {
                    let stdout = String::from_utf8_lossy(&o.stdout);
                    let stderr = String::from_utf8_lossy(&o.stderr);
                    let verdict = if o.timed_out {
                        Some(format!(
                            "timed out after {}; the process tree was killed",
                            format_duration(case.timeout)
                        ))
                    } else {
                        expect::check(&run.expect, o.exit_code, &stdout, &stderr)
                    };
                    append_attempt_log(
                        &mut log,
                        attempts,
                        case.retries + 1,
                        &run.command,
                        &o,
                        verdict.as_deref(),
                    );
                    let st = if verdict.is_some() {
                        Status::Failed
                    } else {
                        Status::Passed
                    };
                    (st, verdict, o.exit_code, Some(o))
                }
            };
            let retry =
                status != Status::Passed && attempts <= case.retries && !ctx.cancel.is_cancelled();
            if !retry {
                let status = if status == Status::Passed && attempts > 1 {
                    Status::Flaky
                } else {
                    status
                };
                let reason = if status == Status::Flaky {
                    Some(format!(
                        "passed on attempt {attempts} of {}",
                        case.retries + 1
                    ))
                } else {
                    reason
                };
                break (status, reason, exit_code, out);
            }
        };
        let log_rel = if log.is_empty() {
            None
        } else {
            let rel = format!("logs/{}/{}.log", combo.id, case.id);
            let path = ctx.run_dir.join(&rel);
            let write = std::fs::create_dir_all(path.parent().expect("has parent"))
                .and_then(|()| std::fs::write(&path, &log));
            if let Err(source) = write {
                return Err(EngineError::Write { path, source });
            }
            Some(rel)
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        record(
            &ctx,
            &combo,
            case,
            status,
            reason,
            attempts,
            duration_ms,
            exit_code,
            out.map(|o| (o, log_rel)),
        )?;
        if ctx.fail_fast && matches!(status, Status::Failed | Status::Error) {
            ctx.fail_fast_hit.store(true, Ordering::Relaxed);
        }
    }
    let rm = ExecRequest::new(
        format!("rm -rf '{}'", workdir.replace('\'', "'\\''")),
        Duration::from_secs(60),
    );
    if let Err(e) = slot.target.exec(rm, &CancellationToken::new()).await {
        tracing::warn!(
            "failed to remove {workdir} on {}: {}",
            combo.target,
            error_chain(&e)
        );
    }
    Ok(())
}

fn append_attempt_log(
    log: &mut String,
    attempt: u32,
    of: u32,
    command: &str,
    o: &adaptest_adapters::ExecOutput,
    verdict: Option<&str>,
) {
    use std::fmt::Write as _;
    let _ = writeln!(log, "=== attempt {attempt} of {of} ===");
    let _ = writeln!(log, "$ {command}");
    let status = match (o.exit_code, o.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "no exit status".into(),
    };
    let _ = writeln!(
        log,
        "--- {status}, {} ms{} ---",
        o.duration.as_millis(),
        if o.timed_out { ", timed out" } else { "" }
    );
    let _ = writeln!(
        log,
        "--- stdout ({} bytes kept, {} dropped) ---",
        o.stdout.len(),
        o.stdout_dropped
    );
    log.push_str(&String::from_utf8_lossy(&o.stdout));
    if !log.ends_with('\n') {
        log.push('\n');
    }
    let _ = writeln!(
        log,
        "--- stderr ({} bytes kept, {} dropped) ---",
        o.stderr.len(),
        o.stderr_dropped
    );
    log.push_str(&String::from_utf8_lossy(&o.stderr));
    if !log.ends_with('\n') {
        log.push('\n');
    }
    let _ = writeln!(log, "--- verdict: {} ---", verdict.unwrap_or("passed"));
}

#[expect(
    clippy::too_many_arguments,
    reason = "one flat record builder is clearer than a struct used once"
)]
fn record(
    ctx: &Ctx,
    combo: &Combination,
    case: &Case,
    status: Status,
    reason: Option<String>,
    attempts: u32,
    duration_ms: u64,
    exit_code: Option<i32>,
    out: Option<(adaptest_adapters::ExecOutput, Option<String>)>,
) -> Result<(), EngineError> {
    let (stdout, stderr, log) = match out {
        Some((o, log)) => (
            excerpt(&o.stdout, EXCERPT_BYTES),
            excerpt(&o.stderr, EXCERPT_BYTES),
            log,
        ),
        None => (String::new(), String::new(), None),
    };
    let rec = CaseRecord {
        combination: combo.id.clone(),
        case: case.id.clone(),
        level: case.level,
        status,
        reason: reason.clone(),
        attempts,
        duration_ms,
        exit_code,
        stdout,
        stderr,
        log,
        metrics: Vec::new(),
        finished_at: now_rfc3339(),
    };
    ctx.journal.append(&Record::Case(rec))?;
    let _ = ctx.events.send(Event::CaseFinished {
        combination: combo.id.clone(),
        case: case.id.clone(),
        level: case.level,
        status,
        duration_ms,
        attempts,
        reason,
    });
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
    capabilities: &[&str],
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
        .filter(|c| !capabilities.contains(&c.as_str()))
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
