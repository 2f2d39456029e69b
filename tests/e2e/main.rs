//! End-to-end tests: the real `adaptest` binary on this machine, asserting what a user sees.
//!
//! One test binary (fast to link); helpers in `util`; one module per user story.

#![expect(
    unreachable_pub,
    reason = "helpers are shared across test modules of one binary"
)]

mod util;

mod default_run;
mod journal_resume;
mod malformed;
mod reports;
mod scheduling;
