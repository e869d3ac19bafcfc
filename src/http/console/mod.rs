//! The web console at `/console`: server-rendered HTML (maud), a little plain JavaScript, and
//! charts drawn as SVG on the server. Every asset is compiled into the binary (`assets`), so
//! the console works offline and needs no front-end build.
//!
//! | page | file | reads |
//! |---|---|---|
//! | `/console/login`, `/console/logout` | `login.rs` | `api.tokens` → session cookie (`session.rs`) |
//! | `/console` live calls | `live.rs` | `store::read::calls`; `/v1/stream` tells the page when to fetch its rows again |
//! | `/console/calls/{session_id}` one call | `call.rs` | `store::read::call_detail`, timeline SVG |
//! | `/console/kpis` | `kpis.rs` | `store::kpis::compute` |
//! | `/console/refused` refused callbacks | `refused.rs` | `store::read::refused`; reprocess via `/v1` |
//! | `/console/operations` | `operations.rs` | what `/readyz` and `/metrics` answer |
//!
//! What a page shows goes through the same view layer as `/v1` (`http::api::view`), so a
//! `masked` token sees masked numbers here as everywhere. Pages need the session cookie; without
//! one they send the browser to the login page.

mod assets;
mod call;
mod kpis;
mod layout;
mod live;
mod login;
mod operations;
mod refused;
pub mod session;
mod svg;

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use maud::Markup;
use time::{OffsetDateTime, macros::format_description};

use super::Routes;
use crate::{http::AppState, http::api::ApiCaller, http::error::ApiError};

pub fn routes() -> Routes {
    Routes::default()
        .page(Method::GET, "/console", live::page)
        .page(Method::GET, "/console/live/rows", live::rows)
        .page(Method::GET, "/console/login", login::form)
        .page(Method::POST, "/console/login", login::submit)
        .page(Method::POST, "/console/logout", login::logout)
        .page(Method::GET, "/console/calls/{session_id}", call::page)
        .page(Method::GET, "/console/kpis", kpis::page)
        .page(Method::GET, "/console/refused", refused::page)
        .page_moved("/console/rejected", "/console/refused")
        .page(Method::GET, "/console/operations", operations::page)
        .page(Method::GET, "/console/assets/{file}", assets::serve)
        .map(|console| console.layer(axum::middleware::map_response(protect)))
}

/// Headers of every console answer: only this origin's scripts, styles and connections, no
/// framing (clickjacking), no referrer to other sites (session ids are in URLs; `no-referrer`
/// would also make the browser send `Origin: null` with the console's own forms, which the
/// CSRF check refuses), and pages are not cached (they show data the next user of the browser
/// may not be meant to see).
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The person using the console: the token their session cookie names. A page asked for
/// without a valid session sends the browser to the login page.
pub struct Viewer(pub ApiCaller);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Redirect> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        session::from_headers(&parts.headers)
            .and_then(|cookie| session::verify(cookie, &state.config.api.tokens, now).ok())
            .map(|token| {
                tracing::Span::current().record("api_client", token.name.as_str());
                Self(ApiCaller::of(token))
            })
            .ok_or_else(|| Redirect::to("/console/login"))
    }
}

/// A page that cannot be shown: the status, and why, on a page of its own.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
    viewer: Option<ApiCaller>,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            viewer: None,
        }
    }

    /// The same error as `/v1` would answer (its status and message).
    pub fn from_api(error: ApiError, viewer: &ApiCaller) -> Self {
        Self {
            status: error.status(),
            message: match error.field() {
                Some(field) => format!("{} ({field})", error.message()),
                None => error.message(),
            },
            viewer: Some(viewer.clone()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = maud::html! {
            section.error {
                h2 { (title) }
                p { (self.message) }
            }
        };
        let page = layout::page(&title, self.viewer.as_ref(), layout::Nav::None, body);
        (self.status, page).into_response()
    }
}

pub type PageResult = Result<Markup, PageError>;

/// A time as the console shows it: UTC, to the second.
pub fn show_time(at: Option<OffsetDateTime>) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.and_then(|at| at.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| "–".into())
}

/// A path segment for a link (session ids may hold `/`, `?`, `#` or `%`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Seconds as people read a duration: `42 s`, `3 min 05 s`.
pub fn show_seconds(seconds: Option<i32>) -> String {
    match seconds {
        None => "–".into(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) => format!("{} min {:02} s", s / 60, s % 60),
    }
}

/// A form field's value, or `None` when it was left empty (a form sends every field).
fn present(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_encoded_for_links() {
        assert_eq!(
            encode_segment("1200_366_0_20161228102743@callenabler.home1.com"),
            "1200_366_0_20161228102743@callenabler.home1.com"
        );
        assert_eq!(encode_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn durations_read_like_durations() {
        assert_eq!(show_seconds(None), "–");
        assert_eq!(show_seconds(Some(42)), "42 s");
        assert_eq!(show_seconds(Some(185)), "3 min 05 s");
    }
}
