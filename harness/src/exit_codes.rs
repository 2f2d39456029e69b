//! Named exit codes of the `adaptest` binary (documented in README.md).

/// Every mandatory case passed (optional ones may have failed).
pub const OK: i32 = 0;
/// At least one mandatory case failed.
pub const CASE_FAILED: i32 = 1;
/// A plan, suite or argument is invalid; nothing ran.
pub const INVALID_INPUT: i32 = 2;
/// Infrastructure failed: a target was unreachable, a case could not be run, or the run
/// directory could not be written.
pub const INFRA_ERROR: i32 = 3;
/// The run was interrupted (Ctrl-C / SIGTERM); it can be resumed with `--resume`.
pub const INTERRUPTED: i32 = 130;

/// The exit code of a finished run.
pub fn for_results(summary: &adaptest_reports::Summary, interrupted: bool) -> i32 {
    if interrupted {
        INTERRUPTED
    } else if summary.error > 0 {
        INFRA_ERROR
    } else if summary.mandatory_failed > 0 {
        CASE_FAILED
    } else {
        OK
    }
}
