//! End-to-end tests: the real `adaptest` binary on this machine, asserting what a user sees.
//!
//! One test binary (fast to link); helpers in `util`; one module per user story.

#![expect(
    unreachable_pub,
    reason = "helpers are shared across test modules of one binary"
)]

mod util;

/// Private servers, shared with the adapters' tests.
#[path = "../support/servers.rs"]
mod servers;

mod bundle;
mod certification;
mod chromium;
mod compare;
mod default_run;
mod identity;
mod import;
mod integrity;
mod journal_resume;
mod lifecycle;
mod malformed;
mod middleware;
mod plugins;
mod qemu_system;
mod qemu_user;
mod recovery;
mod reports;
mod resources;
mod scheduling;
mod shards;
mod sql;
mod sql_classic;
mod sql_conformance;
mod ssh_target;
