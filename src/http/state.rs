//! The state of the HTTP edge: `app` builds it at start, every handler reads it. It lives here,
//! not in `app`, so that `app` depends on `http` and never the other way round.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::{
    config::Config,
    ingest::{Durability, ReceiptWriter},
    platform::signature::CallbackVerifier,
    stream::Changes,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Where callbacks go to be kept, in groups.
    pub receipts: ReceiptWriter,
    /// The database, the spool, and which of them takes receipts now.
    pub durability: Arc<Durability>,
    pub config: Arc<Config>,
    pub verifier: Arc<CallbackVerifier>,
    pub metrics: PrometheusHandle,
    /// Callback requests in progress, at most `ingest.max_concurrent_requests`.
    pub callback_slots: Arc<tokio::sync::Semaphore>,
    /// Committed changes of calls, for `GET /v1/stream`.
    pub changes: Changes,
}
