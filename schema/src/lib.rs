//! The formats adaptest promises to other programs, apart from the code that produces them (as
//! `nextest-metadata` is for cargo-nextest): the versioned `results.json` document
//! ([`results`], also re-exported at the root), the `--format json` event stream ([`events`],
//! versioned per line) and the exit codes of the binary ([`exit_codes`]).
//!
//! Architecture invariant: this crate depends on serde alone and does no I/O, so a target
//! adapter, a report renderer or a consumer of the event stream can depend on it without
//! pulling in the harness or the renderers (tera, quick-junit).
//!
//! API boundary: [`events::Event`] is `#[non_exhaustive]` (a newer adaptest may add an event),
//! so a reader matches it with a wildcard arm. The results enums (`Status`, `Verdict`, …) are
//! deliberately exhaustive: every renderer and the verdict rules match them, and a new status
//! must be a compile error there, not fall into a wildcard arm; their serialized forms are what
//! `SCHEMA_VERSION` guards.

pub mod events;
pub mod exit_codes;
pub mod hardware;
pub mod results;

pub use hardware::*;
pub use results::*;
