//! The built-in suites and the embedded default plan, compiled into the binary as data.
//!
//! Users' suite directories load through the same code path as these files; the only difference
//! is that these paths are shown as `builtin:<path>` in diagnostics.

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// Path of the embedded default plan inside [`FILES`].
pub const DEFAULT_PLAN: &str = "default-plan.toml";

/// The embedded file at `path` (relative to `suites/`).
pub fn file(path: &str) -> Option<&'static str> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, c)| *c)
}

/// Embedded suite definitions: every `.toml` file except the default plan.
pub fn suite_files() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .copied()
        .filter(|(p, _)| p.ends_with(".toml") && *p != DEFAULT_PLAN)
}
