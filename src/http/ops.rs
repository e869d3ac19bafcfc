//! Operations endpoints: liveness, readiness, metrics.

use axum::{
    Json,
    extract::State,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::Routes;
use crate::{app::AppState, metrics as m, store};

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
    pub database: DatabaseStatus,
    pub migrations: MigrationStatus,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    Ok,
    Unavailable,
}

#[derive(Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    Applied,
    Pending,
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

/// Ready: the database answers and every embedded migration is applied.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to take callbacks", body = Readiness),
        (status = 503, description = "The database does not answer, or migrations are pending", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (database, migrations) = match store::is_migrated(&state.pool).await {
        Ok(true) => (DatabaseStatus::Ok, MigrationStatus::Applied),
        Ok(false) => (DatabaseStatus::Ok, MigrationStatus::Pending),
        Err(_) => (DatabaseStatus::Unavailable, MigrationStatus::Pending),
    };
    let ready = database == DatabaseStatus::Ok && migrations == MigrationStatus::Applied;
    let (status, ready) = if ready {
        (StatusCode::OK, ReadyStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady)
    };
    let body = Readiness {
        status: ready,
        database,
        migrations,
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format 0.0.4). Keep it off the public internet.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let idle = state.pool.num_idle();
    let size = state.pool.size() as usize;
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(size.saturating_sub(idle) as f64);
    metrics::gauge!(m::DB_POOL_MAX_CONNECTIONS)
        .set(f64::from(state.config.database.max_connections));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
