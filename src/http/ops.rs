//! Operations endpoints: liveness, readiness, metrics.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use crate::{app::AppState, ingest::KeptIn, metrics as m, store};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Alive: the process answers. Deliberately does not touch the database, so an outage does not
/// get every replica restarted.
async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready: this replica can keep a callback durably, in the database or in its spool. The JSON
/// says which, whether the schema is in place, how many receipts wait for projection (across
/// replicas) and what the spool holds.
async fn readyz(State(state): State<AppState>) -> Response {
    let durability = &state.durability;
    let accepting = durability.accepting();
    let backlog = if durability.database_up() {
        let counted = async {
            let mut connection = state.pool.acquire().await?;
            store::raw::backlog(&mut connection).await
        };
        tokio::time::timeout(Duration::from_secs(2), counted)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let spool = durability.spool.status();
    let oldest_age = spool
        .oldest
        .map(|oldest| (OffsetDateTime::now_utc() - oldest).whole_seconds().max(0));
    let ready = accepting.is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "accepting": accepting.map_or("none", KeptIn::as_str),
        "database": if durability.database_up() { "up" } else { "down" },
        "migrations": if durability.schema_ready() { "applied" } else { "pending" },
        "projection": {"backlog": backlog},
        "spool": {
            "records": spool.records,
            "bytes": spool.bytes,
            "oldest_age_seconds": oldest_age,
        },
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let idle = state.pool.num_idle();
    let size = state.pool.size() as usize;
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(size.saturating_sub(idle) as f64);
    metrics::gauge!(m::DB_POOL_MAX_CONNECTIONS)
        .set(f64::from(state.config.database.max_connections));
    placed_calls(&state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Outbound operations are placed by other processes (`callhook call`, a library user), which
/// no one scrapes; their record in `placed_calls` is what every replica can report. Bounded, so
/// a slow database leaves the last values in place rather than stalling the scrape.
async fn placed_calls(state: &AppState) {
    let counts = tokio::time::timeout(
        Duration::from_secs(2),
        store::placed_calls::counts(&state.pool),
    )
    .await;
    match counts {
        Ok(Ok(counts)) => {
            for (operation, outcome, count) in counts {
                metrics::counter!(m::PLACED_CALLS_TOTAL, "operation" => operation, "outcome" => outcome)
                    .absolute(u64::try_from(count).unwrap_or(0));
            }
        }
        Ok(Err(error)) => tracing::warn!(%error, "could not count placed_calls for /metrics"),
        Err(_) => tracing::warn!("counting placed_calls for /metrics timed out"),
    }
}
