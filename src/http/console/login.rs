//! Logging in with a token of `api.tokens`, and out.
//!
//! The token is posted in a form body (never a URL), checked like a bearer token, and traded
//! for the session cookie (`session`); only its name is logged.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    layout::{self, Nav},
    session,
};
use crate::{http::AppState, http::api::recognise};

fn login_page(problem: Option<&str>) -> Markup {
    let body = html! {
        form.login method="post" action="/console/login" {
            p { "Enter one of the tokens of " code { "api.tokens" } ". Its scope applies: a "
                code { "masked" } " token sees phone numbers masked on every page." }
            @if let Some(problem) = problem {
                p.problem role="alert" { (problem) }
            }
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Log in" }
        }
    };
    layout::page("Log in", None, Nav::None, body)
}

/// `GET /console/login`.
pub async fn form() -> Markup {
    login_page(None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: SecretString,
}

/// `POST /console/login`: a known token gets the session cookie and goes to the live page; any
/// other answer is the form again, saying why.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let trust_forwarded = state.config.http.trust_forwarded_headers;
    if !session::same_origin(&headers, trust_forwarded) {
        return (
            StatusCode::FORBIDDEN,
            login_page(Some(
                "This login did not come from this console's own page.",
            )),
        )
            .into_response();
    }
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            login_page(Some("Send the token in the form's token field.")),
        )
            .into_response();
    };
    use secrecy::ExposeSecret;
    let Some(token) = recognise(form.token.expose_secret(), &state.config.api.tokens) else {
        tracing::info!("console login with an unknown token refused");
        return (
            StatusCode::UNAUTHORIZED,
            login_page(Some("That is not one of the configured api.tokens.")),
        )
            .into_response();
    };
    let lifetime = state.config.console.session_secs;
    let expires = OffsetDateTime::now_utc().unix_timestamp() + lifetime as i64;
    let secure = session::secure(&state.config.console, &headers, trust_forwarded);
    tracing::info!(api_client = %token.name, "console login");
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&session::issue(token, expires), lifetime, secure),
        )],
        Redirect::to("/console"),
    )
        .into_response()
}

/// `POST /console/logout`: the browser forgets the session. (The cookie itself stays valid
/// until it expires; changing the token ends it everywhere.)
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let trust_forwarded = state.config.http.trust_forwarded_headers;
    if !session::same_origin(&headers, trust_forwarded) {
        return (
            StatusCode::FORBIDDEN,
            login_page(Some(
                "This logout did not come from this console's own page.",
            )),
        )
            .into_response();
    }
    let secure = session::secure(&state.config.console, &headers, trust_forwarded);
    (
        [(header::SET_COOKIE, session::clear_cookie(secure))],
        Redirect::to("/console/login"),
    )
        .into_response()
}
