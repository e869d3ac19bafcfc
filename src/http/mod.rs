//! The HTTP edge: routes, and the middleware every request passes through.

pub mod api;
mod body;
/// The callback endpoints' request and answer schemas and the vocabulary of their answers.
pub mod callback_schema;
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
    http::{HeaderName, Method, Request, StatusCode, Uri},
    response::{IntoResponse, Redirect},
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
    /// API paths that moved, and where to (also in `list`): the document marks them deprecated.
    moved: Vec<(Method, &'static str, &'static str)>,
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

    /// `method` on `path`, an API path that moved to `to`: a permanent redirect there
    /// (`moved_to`). Listed with the API, so it stays documented (deprecated) and tested.
    pub fn moved(mut self, method: Method, path: &'static str, to: &'static str) -> Self {
        self.moved.push((method.clone(), path, to));
        let route = moved_to(Self::filter(&method), path, to);
        self.add(method, path, route)
    }

    /// As `moved`, for a console page (a bookmark): listed with the pages.
    pub fn page_moved(mut self, path: &'static str, to: &'static str) -> Self {
        self.router = self
            .router
            .route(path, moved_to(MethodFilter::GET, path, to));
        self.pages.push((Method::GET, path));
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
        self.moved.extend(other.moved);
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

/// The route of a path that moved from `from` to `to` (both axum paths, with the same
/// `{parameters}`): 308 Permanent Redirect, so clients keep the method, the body and, on the
/// same host, the `Authorization` header; the query is kept as sent.
fn moved_to(methods: MethodFilter, from: &'static str, to: &'static str) -> MethodRouter<AppState> {
    on(methods, move |uri: Uri| async move {
        Redirect::permanent(&moved_location(from, to, &uri))
    })
}

/// `to` with each `{parameter}` replaced by the segment of `uri` that `from` has it in, still
/// percent-encoded as sent, and `uri`'s query.
fn moved_location(from: &str, to: &str, uri: &Uri) -> String {
    let mut location = to.to_owned();
    for (name, segment) in from.split('/').zip(uri.path().split('/')) {
        if name.starts_with('{') {
            location = location.replace(name, segment);
        }
    }
    if let Some(query) = uri.query() {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// Every route: callback endpoints, operations endpoints, the read API and its OpenAPI
/// document. The whole-request timeout (`http.request_timeout_ms`) is layered onto the routes
/// that exist when it is added, so the long routes merged after it (CSV exports, reprocess-all)
/// are not cut by it; `api::long_routes` says what bounds them instead.
fn all_routes(config: &Config) -> Routes {
    let http = &config.http;
    let api = api::routes();
    let long = api::long_routes(config.api.max_concurrent_exports);
    let moved = [api.moved.as_slice(), long.moved.as_slice()].concat();
    Routes::default()
        .merge(callbacks::routes())
        .merge(ops::routes())
        .merge(api)
        .merge(openapi::routes(&config.api, &long.list, &moved))
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

/// The API paths that moved, as (method, old path, new path); each also in `routes`.
pub fn moved() -> Vec<(Method, &'static str, &'static str)> {
    all_routes(&Config::defaults()).moved
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_path_keeps_its_parameters_as_sent_and_its_query() {
        let uri: Uri = "/v1/rejected/a%2Fb/reprocess?x=1&y=%20".parse().unwrap();
        assert_eq!(
            moved_location(
                "/v1/rejected/{id}/reprocess",
                "/v1/refused/{id}/reprocess",
                &uri
            ),
            "/v1/refused/a%2Fb/reprocess?x=1&y=%20"
        );
        let uri: Uri = "/v1/rejected".parse().unwrap();
        assert_eq!(
            moved_location("/v1/rejected", "/v1/refused", &uri),
            "/v1/refused"
        );
    }
}
