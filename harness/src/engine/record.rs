//! Journaling a finished case: its log file first, then its record, then the reporter's
//! event; an import's tests as cases of their own.

use super::EngineError;
use super::slots::Ctx;
use crate::events::Event;
use crate::journal::{CaseRecord, Record};
use crate::kinds::CaseOutcome;
use crate::spec::Combination;
use crate::spec::suite::Case;

pub(super) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// A shell error on the way to running cases: every pending case is recorded as `error`.
pub(super) async fn record_all_error(
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

/// Journal one finished case (its log written first), and tell the reporter.
pub(super) async fn record(
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
pub(super) async fn record_one(
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
