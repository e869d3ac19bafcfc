//! The read API under `/v1`: the call log, CDRs, refused callbacks and their reprocessing, CDR
//! gaps, CSV exports, the voice KPIs and the live stream of call changes. Every route needs a bearer token of `api.tokens` (`auth`); phone
//! numbers are masked unless the token's scope is `full` (`view`). The SQL is in `store::read`.

mod auth;
pub mod calls;
pub mod cdrs;
pub mod export;
pub mod kpis;
pub mod params;
pub mod refused;
pub mod stream;
pub mod view;

use std::sync::Arc;

use axum::{Extension, http::Method};
use tokio::sync::Semaphore;

pub use auth::{ApiCaller, bearer_token, recognise};

use crate::http::Routes;

/// The routes that answer within `http.request_timeout_ms` like every other.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/v1/calls", calls::list)
        .route(Method::GET, "/v1/calls/{session_id}", calls::detail)
        .route(Method::GET, "/v1/gaps", calls::gaps)
        .route(Method::GET, "/v1/cdrs", cdrs::list)
        .route(Method::GET, "/v1/kpis", kpis::get)
        .route(Method::GET, "/v1/refused", refused::list)
        .route(
            Method::POST,
            "/v1/refused/{id}/reprocess",
            refused::reprocess_one,
        )
        // The refused-callback paths said `rejected`, one of the outcomes they list; they are
        // redirected for the clients written against them (docs/api.md, "Moved paths").
        .moved(Method::GET, "/v1/rejected", "/v1/refused")
        .moved(
            Method::POST,
            "/v1/rejected/{id}/reprocess",
            "/v1/refused/{id}/reprocess",
        )
        .moved(
            Method::POST,
            "/v1/rejected/reprocess",
            "/v1/refused/reprocess",
        )
}

/// The routes that may run longer than `http.request_timeout_ms` and must not be cut by it: the
/// CSV exports (bounded instead as `export` describes), reprocessing everything (each
/// callback commits on its own, so a cut run loses nothing and the next one finishes it), and
/// the stream of changes (open as long as its client stays; ended by shutdown, bounded by
/// `stream.max_subscribers` and `stream.buffer`).
pub fn long_routes(max_concurrent_exports: usize) -> Routes {
    let slots = export::ExportSlots(Arc::new(Semaphore::new(max_concurrent_exports)));
    Routes::default()
        .route(Method::GET, "/v1/calls.csv", export::calls_csv)
        .route(Method::GET, "/v1/cdrs.csv", export::cdrs_csv)
        .map(|exports| exports.layer(Extension(slots)))
        .route(
            Method::POST,
            "/v1/refused/reprocess",
            refused::reprocess_all,
        )
        .route(Method::GET, "/v1/stream", stream::stream)
}
