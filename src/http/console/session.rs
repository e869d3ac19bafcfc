//! The console's session cookie, and the checks a cookie-authenticated request must pass.
//!
//! The cookie never holds the token. Its value is `<name>.<expiry>.<mac>`: the token's name
//! (base64url), the Unix second it expires, and HMAC-SHA256 keyed by the token's secret over
//! both (base64url). Checking it needs only the configuration: the name finds the token, the
//! token's secret checks the MAC. So every replica accepts the sessions of every other with no
//! shared state, a session ends when it expires, and changing or removing a token ends every
//! session made with it. The token's scope is read at each request, never from the cookie.
//!
//! A browser sends the cookie with any request to this origin, so a request that changes
//! something must also show it comes from the console's own pages (`same_origin`): `SameSite=
//! Strict` keeps the cookie off cross-site requests in browsers that honour it, and the Origin
//! / `Sec-Fetch-Site` check refuses what a cross-site page could still send.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::{ApiToken, ConsoleConfig, SecureCookie};

/// The cookie's name.
pub const COOKIE: &str = "callhook_session";

/// Header the console's scripts send with every request that changes something, which a form
/// or a link of another site cannot send (without CORS, which callhook never answers).
pub const CONSOLE_HEADER: &str = "x-callhook-console";

/// Binds a MAC to its use here, so no other HMAC keyed by a token can pass for a session.
const CONTEXT: &[u8] = b"callhook console session v1";

/// Why a session cookie is refused. Deliberately coarse: whether a name exists is not told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Not three parts, not base64url, not a number, an unknown name, or a MAC that does not
    /// match.
    Invalid,
    Expired,
}

fn mac(token: &ApiToken, name: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.token.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(CONTEXT);
    mac.update(b"\n");
    mac.update(name.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The cookie value of a session of `token` that ends at Unix second `expires`.
pub fn issue(token: &ApiToken, expires: i64) -> String {
    let tag = mac(token, &token.name, expires).finalize().into_bytes();
    format!(
        "{}.{expires}.{}",
        URL_SAFE_NO_PAD.encode(token.name.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The token a cookie value was issued for, if it is genuine and not expired at `now` (Unix
/// seconds).
pub fn verify<'a>(
    value: &str,
    tokens: &'a [ApiToken],
    now: i64,
) -> Result<&'a ApiToken, SessionError> {
    let mut parts = value.split('.');
    let (Some(name), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SessionError::Invalid);
    };
    let name = URL_SAFE_NO_PAD
        .decode(name)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(SessionError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| SessionError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| SessionError::Invalid)?;
    let token = tokens
        .iter()
        .find(|token| token.name == name)
        .ok_or(SessionError::Invalid)?;
    // Constant time: the MAC is the secret part.
    mac(token, &name, expires)
        .verify_slice(&tag)
        .map_err(|_| SessionError::Invalid)?;
    if expires <= now {
        return Err(SessionError::Expired);
    }
    Ok(token)
}

/// The session cookie's value in a request's `Cookie` headers, if any.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// `Set-Cookie` for a new session. Path `/`: the console's scripts call `/v1` with it.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a cookie of base64url, digits and dots is a valid header")
}

/// `Set-Cookie` that makes the browser forget the session.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    set_cookie("", 0, secure)
}

/// Whether the cookie should carry `Secure` for a login with these request headers.
pub fn secure(config: &ConsoleConfig, headers: &HeaderMap, trust_forwarded: bool) -> bool {
    match config.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => {
            let header = |name: header::HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
            };
            let forwarded_https = trust_forwarded
                && header(header::HeaderName::from_static("x-forwarded-proto"))
                    .and_then(|proto| proto.split(',').next())
                    .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
            // The browser says under which scheme the login page was loaded.
            let origin_https =
                header(header::ORIGIN).is_some_and(|origin| origin.starts_with("https://"));
            forwarded_https || origin_https
        }
    }
}

/// Whether a request comes from a page of this same origin: `Sec-Fetch-Site`, when the browser
/// sends it, must say `same-origin`, and `Origin`, when sent, must name the host the request
/// was sent to (`X-Forwarded-Host` when trusted, else `Host`). A request with neither is
/// refused: every browser sends at least one of them with a POST.
pub fn same_origin(headers: &HeaderMap, trust_forwarded: bool) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = header("sec-fetch-site");
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return false;
    }
    let Some(origin) = header("origin") else {
        return fetch_site.is_some();
    };
    let host = header("x-forwarded-host")
        .filter(|_| trust_forwarded)
        .or_else(|| header("host"))
        .map(|host| host.split(',').next().unwrap_or(host).trim());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Whether a request that changes something through `/v1` with the cookie passes the CSRF
/// check: the console's header and the same origin.
pub fn csrf_ok(headers: &HeaderMap, trust_forwarded: bool) -> bool {
    headers.get(CONSOLE_HEADER).is_some_and(|v| v == "1") && same_origin(headers, trust_forwarded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenScope;

    fn token(name: &str, secret: &str) -> ApiToken {
        ApiToken {
            token: secret.to_owned().into(),
            name: name.into(),
            scope: TokenScope::Full,
        }
    }

    #[test]
    fn a_session_is_checked_by_the_token_it_was_made_with_and_holds_no_token() {
        let tokens = [
            token("ops", "full-token-0123456789abcdef"),
            token("dash.board", "masked-token-0123456789abcdef"),
        ];
        for t in &tokens {
            let value = issue(t, 2_000);
            assert!(!value.contains(t.token.expose_secret()), "{value}");
            assert_eq!(verify(&value, &tokens, 1_999).unwrap().name, t.name);
            assert_eq!(
                verify(&value, &tokens, 2_000).err(),
                Some(SessionError::Expired)
            );
        }
        let value = issue(&tokens[0], 2_000);
        let parts: Vec<&str> = value.split('.').collect();
        let longer = format!("{}.3000.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&longer, &tokens, 1).err(),
            Some(SessionError::Invalid)
        );
        // The same name with another secret (a rotated token): every session of it ends.
        let rotated = [token("ops", "another-secret-0123456789")];
        assert_eq!(
            verify(&value, &rotated, 1).err(),
            Some(SessionError::Invalid)
        );
        assert_eq!(verify(&value, &[], 1).err(), Some(SessionError::Invalid));
        for junk in ["", "a.b", "a.b.c.d", "b3Bz.x.AAAA", "!!.1.AAAA"] {
            assert_eq!(
                verify(junk, &tokens, 1).err(),
                Some(SessionError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=y; callhook_session=v.1.t"),
        );
        assert_eq!(from_headers(&headers), Some("v.1.t"));
        assert_eq!(from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn only_requests_from_this_origin_pass() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        let host = ("host", "console.example:8080");
        assert!(same_origin(
            &with(&[host, ("origin", "http://console.example:8080")]),
            false
        ));
        assert!(same_origin(
            &with(&[host, ("sec-fetch-site", "same-origin")]),
            false
        ));
        assert!(!same_origin(
            &with(&[host, ("origin", "https://evil.example")]),
            false
        ));
        assert!(!same_origin(
            &with(&[
                host,
                ("origin", "http://console.example:8080"),
                ("sec-fetch-site", "cross-site")
            ]),
            false
        ));
        assert!(!same_origin(&with(&[host]), false), "neither header");
        let proxied = with(&[
            host,
            ("x-forwarded-host", "calls.example"),
            ("origin", "https://calls.example"),
        ]);
        assert!(same_origin(&proxied, true));
        assert!(!same_origin(&proxied, false));
        let script = with(&[
            host,
            ("origin", "http://console.example:8080"),
            (CONSOLE_HEADER, "1"),
        ]);
        assert!(csrf_ok(&script, false));
        assert!(!csrf_ok(
            &with(&[host, ("origin", "http://console.example:8080")]),
            false
        ));
    }
}
