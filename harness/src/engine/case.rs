//! One case: its attempts (the retry loop), one attempt of any kind, and a shell command's
//! verdict.

use super::combination::scope_of;
use super::lifecycle::Restarter;
use super::slots::{Ctx, PairSlot, component_endpoint};
use super::{EXCERPT_BYTES, SCOPE_VAR};
use crate::expect;
use crate::kinds::{self, CaseOutcome};
use crate::spec::Combination;
use crate::spec::duration::format_duration;
use crate::spec::suite::{Action, Case};
use adaptest_adapters::component::{Component, Endpoint};
use adaptest_adapters::text::{error_chain, excerpt};
use adaptest_adapters::{ExecRequest, Target};
use adaptest_reports::{Environment, Status};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Run a case until it passes, its retries are spent or the run is interrupted; every attempt
/// goes into the outcome's log, and a pass after a failure is `flaky`. The outcome and how many
/// attempts it took; `None`: cancelled (not finished: a resume runs it again).
pub(super) async fn run_with_retries(
    ctx: &Ctx,
    combo: &Combination,
    case: &Case,
    component: Option<&PairSlot>,
    env: &Environment,
    workdir: &str,
) -> Option<(CaseOutcome, u32)> {
    let mut attempts = 0;
    let mut log = String::new();
    let outcome = loop {
        attempts += 1;
        let o = run_case(ctx, combo, case, component, env, workdir).await;
        if o.cancelled {
            return None; // not finished: a resume runs it again
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
        if o.status == Status::Passed || attempts > case.retries || ctx.cancel.is_cancelled() {
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
    Some((outcome, attempts))
}

/// One attempt of one case.
pub(super) async fn run_case(
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

pub(super) async fn run_shell(
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

/// `case` with its timeout multiplied by `factor` (a slow, emulated target).
pub(super) fn scale_timeout(case: &Case, factor: f64) -> Case {
    let mut c = case.clone();
    c.timeout = case.timeout.mul_f64(factor);
    c
}

/// Ask the component for its version once per pair (for the environment and the reports).
pub(super) async fn note_version(pair: &PairSlot, adapter: &dyn Component, endpoint: &Endpoint) {
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
