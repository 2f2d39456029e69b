//! The adaptest results schema (`RunResults`, versioned) and its renderers.
//!
//! Architecture invariant: this crate knows no adapter and performs no I/O besides writing the
//! outputs it is asked to render, so `adaptest report results.json` works on any machine.
//!
//! Renderers: [`to_json`]/[`from_json`] (`results.json`, the stored form), [`to_junit`]
//! (`junit.xml` for CI) and [`to_html`]/[`render_html`] (the self-contained bilingual
//! certification report). All of them fail with [`RenderError`]. [`verdict`] holds the
//! certification rules, [`fingerprint`] the evidence fingerprint, [`compare`] the comparison of
//! two runs.

pub mod compare;
pub mod error;
pub mod fingerprint;
pub mod html;
pub mod inherit;
pub mod json;
pub mod junit;
mod labels;
mod text;
pub mod verdict;

/// The results schema, kept here under its old path; it lives in `adaptest-schema`.
pub use adaptest_schema::results as schema;
pub use error::RenderError;
pub use html::{Lang, render_html, to_html};
pub use json::{from_json, to_json};
pub use junit::to_junit;
pub use schema::*;
