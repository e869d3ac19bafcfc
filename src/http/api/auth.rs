//! Who calls the read API: a bearer token of `api.tokens`, or the console's session cookie.
//!
//! The token is compared in constant time against every configured token (both sides hashed
//! first, so neither the content nor the length of a configured token shows in the timing), and
//! is never logged: the request span records the token's *name* (`api_client`), and the
//! request-span maker in `http::router` records no headers at all.
//!
//! Without an `Authorization` header, the console's session cookie is taken instead
//! (`http::console::session`): it names a token and proves it was made with it. A request that
//! changes something with the cookie must pass the CSRF check as well (the console's header and
//! the same origin), since a browser attaches the cookie to whatever a page makes it send.

use axum::{extract::FromRequestParts, http::request::Parts};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    config::{ApiToken, TokenScope},
    http::AppState,
    http::{console::session, error::ApiError},
};

/// Who is calling, once their token was recognised.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub name: String,
    pub scope: TokenScope,
}

impl ApiCaller {
    /// 403 unless the token has the `full` scope (needed to change anything).
    pub fn require_full(&self) -> Result<(), ApiError> {
        if self.scope == TokenScope::Full {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "scope_insufficient",
                "this needs a token with scope \"full\"",
            ))
        }
    }

    pub fn full(&self) -> bool {
        self.scope == TokenScope::Full
    }

    /// 403 when a masked token filters exactly on a value its answers would mask (`mask` is how
    /// that field is masked): rows for a number that exists and none for one that does not
    /// would confirm the number it is not shown. A value masking leaves alone is no secret.
    pub fn may_filter(
        &self,
        parameter: &'static str,
        value: Option<&str>,
        mask: fn(&str) -> String,
    ) -> Result<(), ApiError> {
        match value {
            Some(value) if !self.full() && mask(value) != value => Err(ApiError::Forbidden {
                field: Some(parameter.into()),
                code: "filter_not_allowed",
                message: format!(
                    "a token with scope \"masked\" cannot filter on {parameter} by a phone number: \
                         whether rows come back would confirm a number it is not shown; use a token \
                         with scope \"full\""
                ),
            }),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorization = parts.headers.get(axum::http::header::AUTHORIZATION);
        if authorization.is_none()
            && let Some(cookie) = session::from_headers(&parts.headers)
        {
            return Self::from_session(cookie, parts, state);
        }
        let presented = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::TokenRefused {
                code: "token_missing",
                message: "send Authorization: Bearer <token> with one of the configured api.tokens \
                          (or log in at /console)",
            })?;
        let Some(token) = recognise(presented, &state.config.api.tokens) else {
            tracing::info!("API request with an unknown bearer token refused");
            return Err(ApiError::TokenRefused {
                code: "token_invalid",
                message: "the bearer token is not one of the configured api.tokens",
            });
        };
        tracing::Span::current().record("api_client", token.name.as_str());
        Ok(Self::of(token))
    }
}

impl ApiCaller {
    /// The caller a console session cookie names, with the CSRF check for requests that change
    /// something.
    fn from_session(cookie: &str, parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = session::verify(cookie, &state.config.api.tokens, now).map_err(|error| {
            tracing::info!(?error, "API request with a console session refused");
            ApiError::SessionRefused
        })?;
        let trust_forwarded = state.config.http.trust_forwarded_headers;
        if !parts.method.is_safe() && !session::csrf_ok(&parts.headers, trust_forwarded) {
            tracing::warn!(api_client = %token.name, "cookie-authenticated change without the CSRF proof refused");
            return Err(ApiError::Forbidden {
                code: "csrf_check_failed",
                message: "a change made with the console's session cookie must come from the \
                          console: send X-Callhook-Console: 1 and an Origin of this host, or use \
                          Authorization: Bearer"
                    .into(),
                field: Some(session::CONSOLE_HEADER.into()),
            });
        }
        tracing::Span::current().record("api_client", token.name.as_str());
        Ok(Self::of(token))
    }

    /// The caller a recognised token makes.
    pub fn of(token: &ApiToken) -> Self {
        Self {
            name: token.name.clone(),
            scope: token.scope,
        }
    }
}

/// The configured token `presented` is, compared in constant time (module docs).
pub fn recognise<'a>(presented: &str, tokens: &'a [ApiToken]) -> Option<&'a ApiToken> {
    let presented = Sha256::digest(presented.as_bytes());
    let mut recognised = None;
    // No early exit: every configured token is compared, whichever matches.
    for token in tokens {
        let expected = Sha256::digest(token.token.expose_secret().as_bytes());
        if bool::from(expected.ct_eq(&presented)) && recognised.is_none() {
            recognised = Some(token);
        }
    }
    recognised
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn reads_the_token_of_a_bearer_header_only() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
