//! The adaptest engine: loading and validating plans and suites, matrix expansion, the
//! scheduler, the journal and resume. The `adaptest` binary is a thin shell over [`cli::main`].

pub mod bundle;
pub mod cli;
pub mod engine;
pub mod events;
pub mod exit_codes;
pub mod expect;
pub mod journal;
pub mod kinds;
pub mod rundir;
pub mod secrets;
pub mod shard;
pub mod spec;
pub mod verdict;

#[cfg(test)]
mod fuzz_tests;
