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

use crate::{app::AppState, metrics as m, store};

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

/// Ready: the database answers and every embedded migration is applied.
async fn readyz(State(state): State<AppState>) -> Response {
    let (database, migrated) = match store::is_migrated(&state.pool).await {
        Ok(migrated) => ("ok", migrated),
        Err(_) => ("unavailable", false),
    };
    let ready = database == "ok" && migrated;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "migrations": if migrated { "applied" } else { "pending" },
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
