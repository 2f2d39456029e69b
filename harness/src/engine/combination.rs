//! One combination: its slot and database lock, its scratch directory, its pending cases in
//! order, then the pair's teardown and the clean-up of what its cases left running.

use super::case::{run_with_retries, scale_timeout};
use super::lifecycle::{setup, teardown};
use super::record::{record, record_all_error};
use super::requirements::{available_commands, unmet};
use super::slots::{Ctx, PairSlot, pair_adapter, target_env, timeout_factor};
use super::{EngineError, SCOPE_VAR};
use crate::kinds::CaseOutcome;
use crate::spec::Combination;
use crate::spec::suite::Case;
use adaptest_adapters::text::{error_chain, excerpt};
use adaptest_adapters::{ExecRequest, Target};
use adaptest_reports::Status;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The value of [`SCOPE_VAR`] for one combination of one run.
pub(super) fn scope_of(run_id: &str, combo: &Combination) -> String {
    format!("{run_id}/{};", combo.id)
}

/// The end-of-combination command: kill what the combination's cases left running (found by
/// [`SCOPE_VAR`] in `/proc/*/environ`: one `grep`, no process per candidate, so it stays cheap
/// under emulation), print their pids, then remove the scratch directory.
pub(super) fn teardown_command(scope: &str, workdir: &str) -> String {
    use adaptest_adapters::target::shell_quote;
    format!(
        "for f in $(grep -l -s -F {} /proc/[0-9]*/environ 2>/dev/null); do \
         p=${{f#/proc/}}; p=${{p%/environ}}; kill -9 \"$p\" 2>/dev/null && echo \"$p\"; done; \
         rm -rf {}",
        shell_quote(&format!("{SCOPE_VAR}={scope}")),
        shell_quote(workdir)
    )
}

pub(super) async fn run_combination(ctx: Arc<Ctx>, combo: Combination) -> Result<(), EngineError> {
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
pub(super) async fn scratch_dir(
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
pub(super) async fn clean_up(ctx: &Ctx, combo: &Combination, workdir: &str) {
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
pub(super) async fn run_combination_inner(
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
        // The suite is a phase of the component's resource profile.
        let cases = async {
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
                let Some((outcome, attempts)) =
                    run_with_retries(ctx, combo, case, component, &env, &workdir).await
                else {
                    return Ok(()); // not finished: a resume runs it again
                };
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
        super::resources::sampled(ctx, component, &workdir, &combo.suite.id, cases).await
    };
    (run_cases.await, Some(workdir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_scope_is_quoted_and_ends_the_grep() {
        let cmd = teardown_command("run 1/it's;", "/tmp/a b");
        assert!(
            cmd.contains(r"grep -l -s -F 'ADAPTEST_SCOPE=run 1/it'\''s;'"),
            "{cmd}"
        );
        assert!(cmd.ends_with("rm -rf '/tmp/a b'"), "{cmd}");
    }

    /// The command run as it is on a target: it kills the process that carries this scope (and
    /// prints its pid), spares one of another scope, and removes the scratch directory.
    #[test]
    fn teardown_kills_only_its_scope_and_removes_the_workdir() {
        let workdir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::write(workdir.join("left"), "x").expect("write");
        let scope = format!("unit-{}/teardown;", std::process::id());
        let spawn = |value: &str| {
            std::process::Command::new("sleep")
                .arg("300")
                .env(SCOPE_VAR, value)
                .spawn()
                .expect("spawn sleep")
        };
        let mut ours = spawn(&scope);
        let mut other = spawn(&format!("unit-{}/other;", std::process::id()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(teardown_command(&scope, workdir.to_str().expect("utf-8")))
            .output()
            .expect("run teardown");
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.split_whitespace().collect::<Vec<_>>(),
            [ours.id().to_string()]
        );
        assert_eq!(ours.wait().expect("wait").signal(), Some(9));
        assert_eq!(
            other.try_wait().expect("try_wait"),
            None,
            "another scope's process survives"
        );
        other.kill().expect("kill the other sleep");
        other.wait().expect("wait");
        assert!(!workdir.exists());
    }
}
