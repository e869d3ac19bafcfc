//! Operations endpoints: liveness, readiness, metrics.

use axum::{
    Json,
    extract::State,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::Routes;
use crate::{http::AppState, ingest::KeptIn, metrics as m, store};

pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/healthz", healthz)
        .route(Method::GET, "/readyz", readyz)
        .route(Method::GET, "/metrics", metrics)
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

/// Always ok: anything answering is alive.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    /// Where a callback would be kept now.
    pub accepting: Accepting,
    pub database: DatabaseStatus,
    pub migrations: MigrationStatus,
    pub projection: ProjectionStatus,
    pub spool: SpoolState,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Accepting {
    Database,
    Spool,
    /// Neither: callbacks are answered 503.
    None,
}

/// Whether receipts go to the database now (`down` from a failed commit until the spool is
/// drained).
#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    Up,
    Down,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    Applied,
    Pending,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// Receipts acknowledged but not projected yet, across replicas; null when it cannot be
    /// counted (database down).
    pub backlog: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SpoolState {
    pub records: u64,
    pub bytes: u64,
    pub oldest_age_seconds: Option<i64>,
}

/// Alive: the process answers. Deliberately does not touch the database, so an outage does not
/// get every replica restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// Ready: this replica can keep a callback durably, in the database or in its spool. The JSON
/// says which, whether the schema is in place, how many receipts wait for projection (across
/// replicas) and what the spool holds.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Callbacks are kept durably (in the database or the spool)", body = Readiness),
        (status = 503, description = "Callbacks cannot be kept: the database is down and the spool is full", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (status, body) = readiness(&state).await;
    (status, Json(body)).into_response()
}

/// What `/readyz` answers (the console's operations page shows the same).
pub(super) async fn readiness(state: &AppState) -> (StatusCode, Readiness) {
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
    let (status, ready) = if accepting.is_some() {
        (StatusCode::OK, ReadyStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady)
    };
    let body = Readiness {
        status: ready,
        accepting: match accepting {
            Some(KeptIn::Database) => Accepting::Database,
            Some(KeptIn::Spool) => Accepting::Spool,
            None => Accepting::None,
        },
        database: if durability.database_up() {
            DatabaseStatus::Up
        } else {
            DatabaseStatus::Down
        },
        migrations: if durability.schema_ready() {
            MigrationStatus::Applied
        } else {
            MigrationStatus::Pending
        },
        projection: ProjectionStatus { backlog },
        spool: SpoolState {
            records: spool.records,
            bytes: spool.bytes,
            oldest_age_seconds: spool
                .oldest
                .map(|oldest| (OffsetDateTime::now_utc() - oldest).whole_seconds().max(0)),
        },
    };
    (status, body)
}

/// Prometheus metrics (text exposition format 0.0.4). Keep it off the public internet.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state).await,
    )
        .into_response()
}

/// What `/metrics` answers (the console's operations page reads the same).
pub(super) async fn render_metrics(state: &AppState) -> String {
    let idle = state.pool.num_idle();
    let size = state.pool.size() as usize;
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(size.saturating_sub(idle) as f64);
    metrics::gauge!(m::DB_POOL_MAX_CONNECTIONS)
        .set(f64::from(state.config.database.max_connections));
    placed_calls(state).await;
    state.metrics.render()
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
