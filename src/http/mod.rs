//! The HTTP edge: routes, and the middleware every request passes through.

pub mod api;
mod body;
pub mod callbacks;
pub mod error;
pub mod openapi;
mod ops;
pub mod serve;

use axum::{
    Router,
    extract::MatchedPath,
    http::{HeaderName, Request, StatusCode},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::{RequestBodyTimeoutLayer, TimeoutLayer},
    trace::TraceLayer,
};

use crate::app::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application: callback endpoints, operations endpoints, the read API and its
/// OpenAPI document, with the middleware (outermost first): request id → trace span → panic to
/// 500 → timeouts. The whole-request timeout (`http.request_timeout_ms`) is layered onto the
/// routes that exist when it is added, so the long routes merged after it (CSV exports,
/// reprocess-all) are not cut by it; `api::long_router` says what bounds them instead.
pub fn router(state: AppState) -> Router {
    let http = &state.config.http;
    let timed = Router::new()
        .merge(callbacks::router())
        .merge(ops::router())
        .merge(api::router())
        .merge(openapi::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout(),
        ));
    Router::new()
        .merge(timed)
        .merge(api::long_router(state.config.api.max_concurrent_exports))
        .fallback(|| async {
            error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(RequestBodyTimeoutLayer::new(http.body_timeout()))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str);
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok());
                // Never a header: Authorization carries bearer tokens. `api_client` (the
                // token's name) is filled in once the token is recognised.
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    route,
                    request_id,
                    api_client = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
