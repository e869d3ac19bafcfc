//! The HTTP edge: routes, and the middleware every request passes through.

pub mod api;
mod body;
pub mod callbacks;
pub mod console;
pub mod error;
pub mod openapi;
mod ops;
pub mod serve;
mod state;

pub use state::AppState;

use axum::{
    Router,
    extract::MatchedPath,
    handler::Handler,
    http::{HeaderName, Method, Request, StatusCode},
    response::IntoResponse,
    routing::{MethodFilter, MethodRouter, on},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::{RequestBodyTimeoutLayer, TimeoutLayer},
    trace::TraceLayer,
};

use crate::config::Config;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A router and the lists of what it routes, made by the same calls, so the lists cannot miss
/// a route: the OpenAPI test checks the document against them (`routes`, `pages`).
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    /// The API: each one is in the OpenAPI document.
    list: Vec<(Method, &'static str)>,
    /// The console's HTML pages, forms and assets: for people, so not in the document.
    pages: Vec<(Method, &'static str)>,
}

impl Routes {
    /// `method` on `path` goes to `handler`.
    pub fn route<H, T>(self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = on(Self::filter(&method), handler);
        self.add(method, path, route)
    }

    /// As `route`, for a route that answers people rather than programs (the console).
    pub fn page<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(Self::filter(&method), handler));
        self.pages.push((method, path));
        self
    }

    /// As `route`, with every other method on `path` going to `otherwise`.
    pub fn route_or<H, T, F, U>(
        self,
        method: Method,
        path: &'static str,
        handler: H,
        otherwise: F,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
        F: Handler<U, AppState>,
        U: 'static,
    {
        let route = on(Self::filter(&method), handler).fallback(otherwise);
        self.add(method, path, route)
    }

    /// Changes the routes added so far (layers apply to those only).
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn merge(mut self, other: Self) -> Self {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self.pages.extend(other.pages);
        self
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, route);
        self.list.push((method, path));
        self
    }

    fn filter(method: &Method) -> MethodFilter {
        MethodFilter::try_from(method.clone()).expect("a method axum routes by")
    }
}

/// Every route: callback endpoints, operations endpoints, the read API and its OpenAPI
/// document. The whole-request timeout (`http.request_timeout_ms`) is layered onto the routes
/// that exist when it is added, so the long routes merged after it (CSV exports, reprocess-all)
/// are not cut by it; `api::long_routes` says what bounds them instead.
fn all_routes(config: &Config) -> Routes {
    let http = &config.http;
    let long = api::long_routes(config.api.max_concurrent_exports);
    Routes::default()
        .merge(callbacks::routes())
        .merge(ops::routes())
        .merge(api::routes())
        .merge(openapi::routes(&config.api, &long.list))
        .merge(console::routes())
        .map(|timed| {
            timed.layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                http.request_timeout(),
            ))
        })
        .merge(long)
}

/// Every (method, path) of the API, paths as axum writes them (`/v1/calls/{id}`).
pub fn routes() -> Vec<(Method, &'static str)> {
    all_routes(&Config::defaults()).list
}

/// Every (method, path) of the console: HTML pages, their forms and assets (`Routes::page`).
/// With `routes`, everything the application routes.
pub fn pages() -> Vec<(Method, &'static str)> {
    all_routes(&Config::defaults()).pages
}

/// The whole application: every route (`all_routes`) with the middleware (outermost first):
/// request id → trace span → panic to 500 → body timeout → Retry-After on 503s.
pub fn router(state: AppState) -> Router {
    let http = &state.config.http;
    all_routes(&state.config)
        .router
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            http.retry_after_secs,
            error::stamp_retry_after,
        ))
        .layer(RequestBodyTimeoutLayer::new(http.body_timeout()))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                // The same JSON error as every other answer; what panicked is in the log.
                error::ApiError::internal("the request failed; nothing was stored").into_response()
            },
        ))
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
