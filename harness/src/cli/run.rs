//! `adaptest run`: a plan (or `--resume` of a run directory) through the engine, then its reports.

use super::{CliError, SuiteArgs, load_suites, runtime};
use crate::engine::{self, ExecOptions};
use crate::events::{self, Event, Format};
use crate::exit_codes;
use crate::journal::{Journal, Record};
use crate::rundir;
use crate::spec;
use clap::Args;
use std::collections::HashSet;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The reports of a run could not be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write the reports")]
pub struct ReportsError(#[source] pub super::error::Boxed);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file; without it, the embedded default plan.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
    /// Combinations at once per target (default: the target's `slots`, else its CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Where run directories are created.
    #[arg(long, value_name = "DIR", default_value = "adaptest-runs")]
    out: PathBuf,
    /// Continue an interrupted run: only cases without a finished record run.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Stop scheduling new cases after the first failed or errored case.
    #[arg(long)]
    fail_fast: bool,
    /// How long a timed-out or interrupted command gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_grace)]
    grace_period: std::time::Duration,
    /// Run only shard I of N (1-based): every Nth combination in plan order; see `merge`.
    #[arg(long, value_name = "I/N", conflicts_with = "resume")]
    shard: Option<crate::shard::Shard>,
    /// Progress output.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    #[command(flatten)]
    cover: super::CoverArgs,
}

pub fn cmd_run(a: RunArgs) -> Result<i32, CliError> {
    let (meta, plan, dir, resumed) = if let Some(dir) = &a.resume {
        match rundir::load_inputs(dir) {
            Ok((meta, plan)) => (meta, plan, dir.clone(), true),
            Err(rundir::RunDirError::Load(e)) => return Err(e.into()),
            Err(e) => return Err(CliError::InvalidDiagnostic(Box::new(e))),
        }
    } else {
        let plan = load_suites(&a.suites).and_then(|s| spec::load_plan(a.plan.as_deref(), &s))?;
        let run_id = rundir::new_run_id();
        match rundir::create(&a.out, &run_id, &plan) {
            Ok(dir) => (
                rundir::read_meta(&dir).expect("just written"),
                plan,
                dir,
                false,
            ),
            Err(e) => return Err(CliError::InfraDiagnostic(Box::new(e))),
        }
    };
    // `--shard I/N`, or the shard a resumed directory recorded: only its combinations run.
    let plan = crate::shard::apply(&dir, a.shard, plan).map_err(CliError::infra)?;
    let rt = runtime();
    rt.block_on(run_plan(a, meta, plan, dir, resumed))
}

async fn run_plan(
    a: RunArgs,
    meta: rundir::RunMeta,
    plan: spec::Plan,
    dir: PathBuf,
    resumed: bool,
) -> Result<i32, CliError> {
    let journal_path = dir.join("journal.jsonl");
    let prior = rundir::journal_records(&dir).map_err(CliError::infra)?;
    let journal = Journal::open(&journal_path).map_err(CliError::infra)?;
    let session = Record::Session {
        started_at: jiff::Timestamp::now().to_string(),
        resumed,
        harness_version: env!("CARGO_PKG_VERSION").into(),
    };
    journal.append(&session).map_err(CliError::infra)?;
    let done: HashSet<(String, String)> = prior
        .iter()
        .filter(|(_, r)| r.is_final())
        .map(|(k, _)| k.clone())
        .collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(events::report(rx, a.format));
    let total: usize = plan.combinations.iter().map(|c| c.suite.cases.len()).sum();
    let _ = tx.send(Event::RunStarted {
        run_id: meta.run_id.clone(),
        run_dir: dir.display().to_string(),
        combinations: plan.combinations.len(),
        cases: total,
        already_done: done.len(),
        resumed,
    });
    let cancel = CancellationToken::new();
    let signals = {
        let cancel = cancel.clone();
        let tx = tx.clone();
        // Registered here, before any target starts, not on the task's first poll: a Ctrl-C
        // that came before that poll would have killed the process the default way.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let _ = tx.send(Event::Interrupted {
                reason: format!("{which} received"),
            });
            cancel.cancel();
        })
    };
    let opts = ExecOptions {
        jobs: a.jobs.map(|j| j as usize),
        fail_fast: a.fail_fast,
        grace: a.grace_period,
    };
    let exec = engine::execute(
        &plan,
        engine::Session {
            run_id: meta.run_id.clone(),
            run_dir: dir.clone(),
            journal,
            done,
        },
        &opts,
        tx.clone(),
        cancel.clone(),
    )
    .await;
    signals.abort();
    let exec = match exec {
        Ok(e) => e,
        Err(e) => {
            drop(tx);
            let _ = reporter.await;
            return Err(CliError::infra(e));
        }
    };
    let records = rundir::journal_records(&dir).map_err(CliError::infra)?;
    let mut envs = rundir::read_environments(&dir);
    envs.extend(exec.environments);
    let mut results =
        rundir::assemble(&meta, &plan, &records, envs, exec.stopped, &meta.created_at);
    a.cover.apply_to_run(&dir, resumed, &mut results.product);
    rundir::write_reports(&dir, &results).map_err(|e| CliError::infra(ReportsError(e)))?;
    let mut code = exit_codes::for_results(
        &results,
        exec.stopped == Some(engine::StopReason::Interrupted),
    );
    if !exec.target_errors.is_empty() && code == exit_codes::OK {
        code = exit_codes::INFRA_ERROR;
    }
    let _ = tx.send(Event::RunFinished {
        run_dir: dir.display().to_string(),
        summary: results.summary.clone(),
        verdict: results.certification.verdict,
        exit_code: code,
    });
    drop(tx);
    let _ = reporter.await;
    if a.format == Format::Human {
        println!(
            "verdict: {}",
            crate::verdict::label(results.certification.verdict)
        );
    }
    Ok(code)
}

/// `--grace-period`, in the project's one duration grammar.
fn parse_grace(
    text: &str,
) -> Result<std::time::Duration, adaptest_adapters::duration::DurationError> {
    adaptest_adapters::duration::parse_duration(text)
}
