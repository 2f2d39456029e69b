//! The center's results service: a certification registry holding many runs (SQLite by default,
//! PostgreSQL with `--database postgres://…`), ingest over HTTP with per-uploader tokens and
//! verified evidence bundles, and a server-rendered web view with a JSON API.

pub mod state;
pub mod store;

pub use state::{AppState, ServerConfig};

pub use store::{Backend, Ingested, Provenance, Store, StoreError};
