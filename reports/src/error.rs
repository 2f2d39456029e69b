//! [`RenderError`]: why reading or rendering a results document failed.
//!
//! Messages are lowercase and read after "failed to …", e.g. `failed to parse results JSON`;
//! the underlying cause, when there is one, is the error's [`source`](std::error::Error::source).

use thiserror::Error;

/// An error from reading a results document or rendering one of its reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RenderError {
    /// `results.json` could not be written.
    #[error("serialize results to JSON")]
    SerializeJson(#[source] serde_json::Error),

    /// `results.json` is not valid JSON or does not match the results schema.
    #[error("parse results JSON")]
    ParseJson(#[source] serde_json::Error),

    /// `results.json` was written by a newer harness whose schema this build does not know.
    #[error(
        "read results of schema version {found}: this build of adaptest reads schema version \
         {supported} at most, use a newer adaptest to render them"
    )]
    NewerSchema {
        /// The `schema_version` found in the document.
        found: u32,
        /// [`crate::SCHEMA_VERSION`] of this build.
        supported: u32,
    },

    /// The JUnit XML writer failed.
    #[error("serialize the JUnit XML report")]
    Junit(#[source] quick_junit::SerializeError),

    /// The embedded HTML template did not compile (a bug in this crate).
    #[error("load the HTML report template")]
    Template(#[source] tera::Error),

    /// Rendering the HTML template failed.
    #[error("render the HTML report")]
    Html(#[source] tera::Error),

    /// A report language other than `en` or `zh-CN` was asked for.
    #[error("parse report language `{given}`: expected `en` or `zh-CN`")]
    UnknownLanguage {
        /// The language as given.
        given: String,
    },
}
