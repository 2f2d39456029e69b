//! A pair's lifecycle steps (install, start, ready, stop, uninstall): setup before its first
//! suite, teardown after its last, and `component.restart` for steps.

use super::case::{run_shell, scale_timeout};
use super::combination::scope_of;
use super::record::record;
use super::slots::{Ctx, PairSlot, component_endpoint, pair_adapter, timeout_factor};
use super::{EngineError, SCOPE_VAR};
use crate::kinds::{self, CaseOutcome};
use crate::spec::Combination;
use crate::spec::duration::format_duration;
use crate::spec::suite::{Action, Case};
use adaptest_adapters::text::error_chain;
use adaptest_reports::Status;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What one lifecycle step did.
pub(super) struct StepRun<'p> {
    /// The step's case in the pair's `lifecycle` combination; `None` for the default readiness
    /// check (the plan declares no `ready` command), which is no certification item.
    pub(super) case: Option<&'p Case>,
    pub(super) outcome: CaseOutcome,
    pub(super) duration_ms: u64,
}

/// Run one lifecycle step of a pair (`install`, `start`, `ready`, `stop`, `uninstall`): the one
/// way setup, `component.restart` and teardown run them. Every step's command gets the
/// `ADAPTEST_*` variables of lifecycle commands (never [`SCOPE_VAR`]: what `start` launches
/// must outlive the combination), runs in `workdir`, and has the step's timeout scaled by the
/// target's `timeout_factor`. `ready` is polled until it succeeds or its timeout passes; without
/// a `ready` command a pair that is started by the plan is ready when its component accepts a
/// connection. `None`: nothing to do for this step.
pub(super) async fn lifecycle_step<'p>(
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
pub(super) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest one attempt of a `ready` command may take.
pub(super) const READY_ATTEMPT: Duration = Duration::from_secs(10);
/// Between two readiness attempts.
pub(super) const READY_POLL: Duration = Duration::from_millis(300);

/// The default readiness check: poll until the pair's component accepts a connection (a
/// session opens), or `timeout` passes. `None` when the component has no adapter to connect
/// with (the target's OS).
pub(super) async fn accepts_connection(
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
pub(super) async fn recorded_step(
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
pub(super) async fn setup(ctx: &Ctx, pair: &PairSlot, workdir: &str) -> Result<(), String> {
    pair.setup
        .get_or_init(|| async {
            if let Some(r) = &pair.spec.config.lifecycle.residue
                && pair.spec.config.lifecycle.install.is_some()
                && let Err(why) = super::residue::before(ctx, pair, r).await
            {
                tracing::warn!("component `{}`: residue snapshot: {why}", pair.spec.id);
            }
            for step in ["install", "start", "ready"] {
                match recorded_step(ctx, pair, step, workdir, &ctx.cancel).await {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => return Err(why),
                    Err(e) => return Err(error_chain(&e)),
                }
            }
            super::resources::idle_window(ctx, pair, workdir).await;
            Ok(())
        })
        .await
        .clone()
}

/// Stop and uninstall the component of a pair after its last suite, in the scratch directory
/// of the combination that ran it (never interrupted: we leave the target as we found it).
pub(super) async fn teardown(ctx: &Ctx, pair: &PairSlot, workdir: &str) -> Result<(), EngineError> {
    super::resources::record_profile(ctx, pair).await?;
    super::recovery::record_recovery(ctx, pair, workdir).await?;
    let never = CancellationToken::new();
    for step in ["stop", "uninstall"] {
        if let Err(why) = recorded_step(ctx, pair, step, workdir, &never).await? {
            tracing::warn!("{why}");
        }
    }
    let case = pair.lifecycle.as_ref().and_then(|combo| {
        combo
            .suite
            .cases
            .iter()
            .find(|c| c.id == crate::spec::plan::RESIDUE_CASE)
            .map(|c| (combo, c))
    });
    if let (Some(r), Some((combo, case))) = (&pair.spec.config.lifecycle.residue, case) {
        let started = Instant::now();
        let outcome = super::residue::after(ctx, pair, r).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record(ctx, combo, case, 1, ms, outcome).await?;
    }
    Ok(())
}

/// `component.restart` for steps: the lifecycle's stop and start, then readiness, through the
/// same [`lifecycle_step`] as setup and teardown; each command and its output go into the
/// case's log.
pub(super) struct Restarter<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) pair: &'a PairSlot,
    pub(super) workdir: &'a str,
    /// The combination whose steps run: its [`SCOPE_VAR`] goes on their `shell` commands.
    pub(super) combo: &'a Combination,
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
