//! Run events and how they are shown: progress bars on a terminal, plain lines in a pipe, or a
//! JSON event stream (`--format json`, the versioned lines of `adaptest_schema::events`).

use adaptest_schema::Status;
pub use adaptest_schema::events::{EVENT_STREAM_VERSION, Event, EventLine};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use tokio::sync::mpsc;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress bars on a terminal, plain lines otherwise.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

pub type EventSender = mpsc::UnboundedSender<Event>;

/// Consume events until the channel closes.
pub async fn report(mut rx: mpsc::UnboundedReceiver<Event>, format: Format) {
    let bars = format == Format::Human && std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut out = std::io::stdout();
    while let Some(ev) = rx.recv().await {
        if format == Format::Json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&EventLine::new(ev)).expect("events serialize")
            );
            let _ = out.flush();
            continue;
        }
        let line = human_line(&ev);
        match (&ev, bars) {
            (
                Event::RunStarted {
                    cases,
                    already_done,
                    ..
                },
                true,
            ) => {
                let b = ProgressBar::with_draw_target(
                    Some(*cases as u64),
                    ProgressDrawTarget::stderr(),
                );
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
                    )
                    .expect("valid template"),
                );
                b.set_position(*already_done as u64);
                b.println(line.unwrap_or_default());
                bar = Some(b);
            }
            (
                Event::CaseFinished {
                    combination,
                    case,
                    status,
                    ..
                },
                true,
            ) => {
                if let Some(b) = &bar {
                    b.inc(1);
                    b.set_message(format!("{combination} {case}"));
                    if !status.is_pass() && *status != Status::Skipped {
                        b.println(line.unwrap_or_default());
                    }
                }
            }
            (Event::RunFinished { .. }, true) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if let Some(l) = line {
                    let _ = writeln!(out, "{l}");
                }
            }
            (_, true) => {
                if let (Some(b), Some(l)) = (&bar, &line) {
                    b.println(l);
                } else if let Some(l) = line {
                    let _ = writeln!(out, "{l}");
                }
            }
            (_, false) => {
                if let Some(l) = line {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
    }
    let _ = out.flush();
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Passed => "PASS",
        Status::Flaky => "FLAKY",
        Status::Failed => "FAIL",
        Status::Error => "ERROR",
        Status::Skipped => "SKIP",
        Status::NotRun => "NOTRUN",
    }
}

/// The plain-text line for an event (`None`: nothing to print).
pub fn human_line(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::RunStarted {
            run_id,
            run_dir,
            combinations,
            cases,
            already_done,
            resumed,
        } => {
            let verb = if *resumed { "resuming" } else { "starting" };
            format!(
                "{verb} run {run_id}: {combinations} combination(s), {cases} case(s), {already_done} already done → {run_dir}"
            )
        }
        Event::TargetReady { target, arch, os } => format!("target {target}: {arch}, {os}"),
        Event::TargetFailed { target, error } => format!("target {target} failed: {error}"),
        Event::CaseFinished {
            combination,
            case,
            status,
            duration_ms,
            attempts,
            reason,
            ..
        } => {
            let mut l = format!(
                "{:<6} {combination} {case} ({duration_ms} ms",
                status_word(*status)
            );
            if *attempts > 1 {
                l.push_str(&format!(", {attempts} attempts"));
            }
            l.push(')');
            if let Some(r) = reason {
                l.push_str(": ");
                l.push_str(r);
            }
            l
        }
        Event::Interrupted { reason } => {
            format!("interrupted: {reason}; finished cases are kept, resume with --resume")
        }
        Event::RunFinished {
            run_dir,
            summary: s,
            exit_code,
            ..
        } => format!(
            "{} case(s): {} passed, {} failed, {} flaky, {} error, {} skipped, {} not run; exit code {exit_code}\nresults: {run_dir}",
            s.total, s.passed, s.failed, s.flaky, s.error, s.skipped, s.not_run
        ),
        // `Event` is non-exhaustive (it is the stream's public type); an event added there
        // shows in `--format json` and gets a line here when it is worth one.
        _ => return None,
    })
}
