//! Authentication headers of the outbound APIs (spec §2.1). Pure: the nonce and the time are
//! given by the caller (the client draws the nonce from the OS's CSPRNG).
//!
//! Two schemes, chosen per app (`[[apps]] auth`):
//! * `aksk` (current): `Authorization: AKSK realm="SDP",profile="UsernameToken",type="Appkey"` and
//!   `X-AKSK: UsernameToken …`, `PasswordDigest = Base64(HMAC-SHA256(APP_Secret, Nonce + Created))`.
//! * `wsse` (the vendor's older Python sample): `Authorization: WSSE …` and `X-WSSE: UsernameToken …`,
//!   `PasswordDigest = Base64(hex_lowercase(SHA256(Nonce + Created + APP_Secret)))`: the 64-character
//!   hex string is what gets Base64-encoded.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::signature::{UsernameToken, format_username_token, hmac_sha256_base64};

/// Which authentication headers an app's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `X-AKSK`, HMAC-SHA256 (the documented scheme).
    #[default]
    Aksk,
    /// `X-WSSE`, hex SHA-256 (legacy).
    Wsse,
}

impl AuthScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aksk => "aksk",
            Self::Wsse => "wsse",
        }
    }

    /// The fixed `Authorization` header value.
    pub fn authorization(self) -> &'static str {
        match self {
            Self::Aksk => super::signature::AKSK_AUTHORIZATION,
            Self::Wsse => r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#,
        }
    }

    /// The name of the header carrying the `UsernameToken`.
    pub fn token_header(self) -> &'static str {
        match self {
            Self::Aksk => "X-AKSK",
            Self::Wsse => "X-WSSE",
        }
    }

    /// The `PasswordDigest` for this scheme.
    pub fn password_digest(self, secret: &str, nonce: &str, created: &str) -> String {
        match self {
            Self::Aksk => aksk_digest(secret, nonce, created),
            Self::Wsse => wsse_digest(secret, nonce, created),
        }
    }
}

/// `Base64(HMAC-SHA256(key = secret, message = nonce + created))`.
pub fn aksk_digest(secret: &str, nonce: &str, created: &str) -> String {
    hmac_sha256_base64(secret.as_bytes(), format!("{nonce}{created}").as_bytes())
}

/// `Base64(hex_lowercase(SHA256(nonce + created + secret)))`.
pub fn wsse_digest(secret: &str, nonce: &str, created: &str) -> String {
    let hash = Sha256::digest(format!("{nonce}{created}{secret}").as_bytes());
    BASE64.encode(hex::encode(hash))
}

/// The two headers that authenticate one request. `Debug` leaves the digest out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeaders {
    /// Value of `Authorization`.
    pub authorization: &'static str,
    /// `X-AKSK` or `X-WSSE`.
    pub token_header: &'static str,
    /// Value of the token header: `UsernameToken Username="…",PasswordDigest="…",…`.
    pub token: Token,
}

/// A rendered `UsernameToken` header value; kept out of `Debug` output because it carries the
/// digest (which proves knowledge of the secret until `Created` goes stale).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// The headers for one request of `app_key`, signed with `secret`. `nonce` must satisfy
/// [`super::signature::is_valid_nonce`]; `created` is [`super::time::format_created`] of now.
pub fn auth_headers(
    scheme: AuthScheme,
    app_key: &str,
    secret: &str,
    nonce: &str,
    created: &str,
) -> AuthHeaders {
    let token = UsernameToken {
        username: app_key.to_owned(),
        password_digest: scheme.password_digest(secret, nonce, created),
        nonce: nonce.to_owned(),
        created: created.to_owned(),
    };
    AuthHeaders {
        authorization: scheme.authorization(),
        token_header: scheme.token_header(),
        token: Token(format_username_token(&token)),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Known answers computed with Python's hashlib/hmac by `tests/fixtures/outbound_auth_vectors.py`.
    const VECTORS: &str = include_str!("../../../tests/fixtures/outbound_auth_vectors.json");

    #[derive(Deserialize)]
    struct Vector {
        app_secret: String,
        nonce: String,
        created: String,
        aksk_password_digest: String,
        wsse_password_digest: String,
    }

    fn vectors() -> Vec<Vector> {
        let vectors: Vec<Vector> = serde_json::from_str(VECTORS).expect("vectors parse");
        assert!(!vectors.is_empty());
        vectors
    }

    #[test]
    fn aksk_digest_matches_the_independent_vectors() {
        for v in vectors() {
            assert_eq!(
                aksk_digest(&v.app_secret, &v.nonce, &v.created),
                v.aksk_password_digest,
                "nonce {}",
                v.nonce
            );
        }
    }

    #[test]
    fn wsse_digest_matches_the_independent_vectors() {
        for v in vectors() {
            assert_eq!(
                wsse_digest(&v.app_secret, &v.nonce, &v.created),
                v.wsse_password_digest,
                "nonce {}",
                v.nonce
            );
        }
    }

    #[test]
    fn headers_render_as_the_spec_shows() {
        let v = &vectors()[0];
        let aksk = auth_headers(
            AuthScheme::Aksk,
            "ka4kTestAppKey01",
            &v.app_secret,
            &v.nonce,
            &v.created,
        );
        assert_eq!(
            aksk.authorization,
            r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#
        );
        assert_eq!(aksk.token_header, "X-AKSK");
        assert_eq!(
            aksk.token.0,
            format!(
                r#"UsernameToken Username="ka4kTestAppKey01",PasswordDigest="{}",Nonce="{}",Created="{}""#,
                v.aksk_password_digest, v.nonce, v.created
            )
        );
        let wsse = auth_headers(AuthScheme::Wsse, "k", &v.app_secret, &v.nonce, &v.created);
        assert_eq!(
            wsse.authorization,
            r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#
        );
        assert_eq!(wsse.token_header, "X-WSSE");
        assert!(
            wsse.token
                .0
                .contains(&format!(r#"PasswordDigest="{}""#, v.wsse_password_digest))
        );
    }

    #[test]
    fn debug_output_hides_the_token() {
        let headers = auth_headers(
            AuthScheme::Aksk,
            "k",
            "secret",
            "N1",
            "2026-11-24T06:00:00Z",
        );
        let digest = aksk_digest("secret", "N1", "2026-11-24T06:00:00Z");
        assert!(!format!("{headers:?}").contains(&digest));
    }
}
