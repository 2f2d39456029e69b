//! The recovery item: write data (`prepare`), SIGKILL the component's main process (the pid in
//! `pid_file`), then either restart it with the lifecycle `start` or wait for a service manager
//! to (a new pid in the file, alive), within a timeout; readiness, then `check` that the data
//! is still there. Recorded with the recovery time as a metric.

use super::lifecycle::lifecycle_step;
use super::slots::{Ctx, PairSlot};
use crate::kinds::CaseOutcome;
use crate::spec::plan::{RECOVERY_CASE, RecoverySpec};
use adaptest_adapters::target::{ExecRequest, Target, shell_quote};
use adaptest_reports::Status;
use adaptest_schema::results::Metric;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Run a shell command on the target in `workdir`; `Ok(stdout)` on exit 0.
async fn sh(
    target: &dyn Target,
    command: &str,
    workdir: &str,
    timeout: Duration,
    log: &mut String,
) -> Result<String, String> {
    let mut req = ExecRequest::new(command, timeout);
    req.cwd = Some(workdir.to_string());
    req.keep_background = true;
    let out = target
        .exec(req, &CancellationToken::new())
        .await
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = writeln!(
        log,
        "$ {command}\n{stdout}{stderr}(exit {:?})",
        out.exit_code
    );
    if out.exit_code == Some(0) {
        Ok(stdout)
    } else {
        Err(format!(
            "`{}` exited with {:?}: {}",
            adaptest_adapters::target::short_command(command),
            out.exit_code,
            stderr.trim()
        ))
    }
}

/// Poll every 100 ms until `pid_file` holds a live pid other than `old`, or `deadline`.
async fn new_pid(
    target: &dyn Target,
    spec: &RecoverySpec,
    old: &str,
    workdir: &str,
    deadline: Instant,
    log: &mut String,
) -> Result<(), String> {
    let f = shell_quote(&spec.pid_file);
    let probe = format!(
        "p=$(cat {f} 2>/dev/null) && [ -n \"$p\" ] && [ \"$p\" != {} ] && kill -0 \"$p\"",
        shell_quote(old)
    );
    loop {
        let mut quiet = String::new();
        if sh(target, &probe, workdir, Duration::from_secs(10), &mut quiet)
            .await
            .is_ok()
        {
            let _ = writeln!(log, "a new main process is running");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no new main process in {} within {}",
                spec.pid_file,
                crate::spec::duration::format_duration(spec.timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn recover(
    ctx: &Ctx,
    pair: &PairSlot,
    spec: &RecoverySpec,
    workdir: &str,
    log: &mut String,
) -> Result<u64, String> {
    let target = ctx.targets[&pair.target].target.clone();
    let target = target.as_ref();
    let step = Duration::from_secs(60);
    if let Some(prepare) = &spec.prepare {
        sh(target, prepare, workdir, step, log)
            .await
            .map_err(|e| format!("prepare: {e}"))?;
    }
    let f = shell_quote(&spec.pid_file);
    let old = sh(target, &format!("cat {f}"), workdir, step, log)
        .await
        .map_err(|e| format!("no main process: {e}"))?;
    let old = old.trim().to_string();
    if old.is_empty() || !old.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{} holds no pid: `{old}`", spec.pid_file));
    }
    // SIGKILL, then wait until it is gone (at most 10 s: a SIGKILLed process dies).
    let kill = format!(
        "kill -9 {old} && i=0; while kill -0 {old} 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; ! kill -0 {old} 2>/dev/null"
    );
    sh(target, &kill, workdir, Duration::from_secs(30), log)
        .await
        .map_err(|e| format!("SIGKILL of {old}: {e}"))?;
    let killed = Instant::now();
    let deadline = killed + spec.timeout;
    if spec.by_start {
        let _ = writeln!(log, "restart with the lifecycle `start`");
        let run = lifecycle_step(ctx, pair, "start", workdir, &ctx.cancel)
            .await
            .ok_or("the component declares no lifecycle `start` to restart it with")?;
        log.push_str(&run.outcome.log);
        if run.outcome.status != Status::Passed {
            return Err(format!(
                "lifecycle start after the kill: {}",
                run.outcome.reason.unwrap_or_default()
            ));
        }
    }
    new_pid(target, spec, &old, workdir, deadline, log).await?;
    if let Some(run) = lifecycle_step(ctx, pair, "ready", workdir, &ctx.cancel).await {
        log.push_str(&run.outcome.log);
        if run.outcome.status != Status::Passed {
            return Err(format!(
                "not ready after the kill: {}",
                run.outcome.reason.unwrap_or_default()
            ));
        }
    }
    let recovered_ms = killed.elapsed().as_millis() as u64;
    if killed.elapsed() > spec.timeout {
        return Err(format!(
            "recovered in {recovered_ms} ms, beyond the timeout of {}",
            crate::spec::duration::format_duration(spec.timeout)
        ));
    }
    if let Some(check) = &spec.check {
        sh(target, check, workdir, step, log)
            .await
            .map_err(|e| format!("data written before the kill: {e}"))?;
    }
    Ok(recovered_ms)
}

/// Run and journal the pair's `recovery` item (at teardown, before `stop`).
pub(super) async fn record_recovery(
    ctx: &Ctx,
    pair: &PairSlot,
    workdir: &str,
) -> Result<(), super::EngineError> {
    let (Some(spec), Some(combo)) = (&pair.spec.recovery, &pair.lifecycle) else {
        return Ok(());
    };
    let Some(case) = combo.suite.cases.iter().find(|c| c.id == RECOVERY_CASE) else {
        return Ok(());
    };
    let started = Instant::now();
    let mut log = String::new();
    let mut o = match recover(ctx, pair, spec, workdir, &mut log).await {
        Ok(ms) => {
            let mut o = CaseOutcome::passed();
            o.metrics.push(Metric {
                name: "recovery_ms".into(),
                value: ms as f64,
                unit: "ms".into(),
                threshold: Some(format!("<= {}", spec.timeout.as_millis())),
            });
            o
        }
        Err(why) => CaseOutcome::failed(why),
    };
    o.log = log;
    let ms = started.elapsed().as_millis() as u64;
    super::record::record(ctx, combo, case, 1, ms, o).await
}
