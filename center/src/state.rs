//! What every request handler shares: the store and the server's configuration.
//!
//! The contract between the two halves of the service: `server.rs` (serve loop, ingest,
//! publish endpoint, auth of uploaders, health, shutdown) builds an [`AppState`] and merges
//! `web::router()` (pages and the read API) into its own router.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};

use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Reading (pages and read API) needs no token when true; a valid token otherwise.
    pub public_read: bool,
    /// Where accepted evidence bundles and results files are kept (the database holds digests).
    pub evidence_dir: PathBuf,
    /// Largest accepted upload body, bytes.
    pub max_upload_bytes: u64,
}

impl AppState {
    /// The uploader a request's `Authorization: Bearer …` token belongs to, or 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<String, StatusCode> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(StatusCode::UNAUTHORIZED)?;
        match self.store.check_token(token).await {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(StatusCode::UNAUTHORIZED),
            Err(e) => {
                tracing::error!(error = %e, "token check failed");
                Err(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Reading is allowed: public, or a valid token.
    pub async fn authorize_read(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        if self.config.public_read {
            return Ok(());
        }
        self.authenticate(headers).await.map(|_| ())
    }
}
