//! Named exit codes of the `adaptest` binary (documented in README.md); they live in
//! `adaptest-schema` with the other formats other programs rely on.

pub use adaptest_schema::exit_codes::*;
