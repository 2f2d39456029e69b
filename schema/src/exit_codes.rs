//! Named exit codes of the `adaptest` binary (documented in README.md).

use crate::results::{RunResults, Verdict};

/// The verdict is "certified" or "certified with notes" (`verify`: the bundle is authentic and
/// intact; `compare`: no new failure or metric regression).
pub const OK: i32 = 0;
/// The verdict is "not certified": a mandatory case failed with no valid waiver.
pub const CASE_FAILED: i32 = 1;
/// `verify`: the bundle was rejected (changed, incomplete, or signed by another key).
pub const VERIFY_FAILED: i32 = 1;
/// `compare`: run B has new failures or metric regressions compared with run A.
pub const REGRESSED: i32 = 1;
/// A plan, suite, key or argument is invalid; nothing ran.
pub const INVALID_INPUT: i32 = 2;
/// Infrastructure failed: a target was unreachable, a case could not be run, or the run
/// directory could not be written.
pub const INFRA_ERROR: i32 = 3;
/// The run was interrupted (Ctrl-C / SIGTERM); it can be resumed with `--resume`.
pub const INTERRUPTED: i32 = 130;

/// The exit code of a finished run: interrupted, then an infrastructure error (a case could not
/// run — a resume retries it), then the verdict.
pub fn for_results(results: &RunResults, interrupted: bool) -> i32 {
    if interrupted {
        INTERRUPTED
    } else if results.summary.error > 0 {
        INFRA_ERROR
    } else if results.certification.verdict == Verdict::NotCertified {
        CASE_FAILED
    } else {
        OK
    }
}
