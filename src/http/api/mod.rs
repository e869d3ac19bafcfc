//! The read API under `/v1`: the call log, CDRs, refused callbacks and their reprocessing, CDR
//! gaps, and CSV exports. Every route needs a bearer token of `api.tokens` (`auth`); phone
//! numbers are masked unless the token's scope is `full` (`view`). The SQL is in `store::read`.

mod auth;
pub mod calls;
pub mod cdrs;
pub mod export;
pub mod params;
pub mod rejected;
pub mod view;

use std::sync::Arc;

use axum::{
    Extension, Router,
    routing::{get, post},
};
use tokio::sync::Semaphore;

pub use auth::{ApiCaller, bearer_token};

use crate::app::AppState;

/// The routes that answer within `http.request_timeout_ms` like every other.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/calls", get(calls::list))
        .route("/v1/calls/{session_id}", get(calls::detail))
        .route("/v1/gaps", get(calls::gaps))
        .route("/v1/cdrs", get(cdrs::list))
        .route("/v1/rejected", get(rejected::list))
        .route("/v1/rejected/{id}/reprocess", post(rejected::reprocess_one))
}

/// The routes that may run longer than `http.request_timeout_ms` and must not be cut by it: the
/// CSV exports (bounded instead as `export` describes) and reprocessing everything (each
/// callback commits on its own, so a cut run loses nothing and the next one finishes it).
pub fn long_router(max_concurrent_exports: usize) -> Router<AppState> {
    let slots = export::ExportSlots(Arc::new(Semaphore::new(max_concurrent_exports)));
    Router::new()
        .route("/v1/calls.csv", get(export::calls_csv))
        .route("/v1/cdrs.csv", get(export::cdrs_csv))
        .layer(Extension(slots))
        .route("/v1/rejected/reprocess", post(rejected::reprocess_all))
}
