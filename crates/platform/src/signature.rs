//! Callback signatures (spec §1.2): `Authorization: AKSK …` plus
//! `X-AKSK: UsernameToken Username="…", PasswordDigest="…", Nonce="…", Created="…"`.
//!
//! The spec leaves three things open (⚠ CONFLICT/UNKNOWN), so the verifier takes each as a
//! set of accepted variants: the digest string (with or without "\n" separators), the signed
//! URL, and whether `Created` is UTC or Beijing wall-clock time. No I/O here: replay detection
//! needs the nonce store and lives with storage.

use std::{fmt, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::time::parse_platform_time;

const BEIJING_OFFSET: time::Duration = time::Duration::hours(8);

/// The two published digest strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestVariant {
    /// `url + "\n" + nonce + "\n" + created` (2026 docs).
    Newline,
    /// `url + nonce + created` (2022/2023 docs).
    Concat,
}

/// The attributes of an `X-AKSK` (or `X-WSSE`) header. `Debug` leaves the digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct UsernameToken {
    pub username: String,
    pub password_digest: String,
    pub nonce: String,
    pub created: String,
}

impl fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsernameToken")
            .field("username", &self.username)
            .field("password_digest", &"[redacted]")
            .field("nonce", &self.nonce)
            .field("created", &self.created)
            .finish()
    }
}

/// What checking a callback's signature concluded. Stored in `raw_callbacks.signature_verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Checking is off.
    NotChecked,
    /// No X-AKSK header (the FAQ says callbacks may carry none).
    Absent,
    /// The header is there but cannot be read, or its nonce is not 1–128 letters and digits.
    Malformed,
    /// `Username` is not a configured app.
    UnknownApp,
    /// No configured secret, digest variant and URL reproduces `PasswordDigest`.
    BadDigest,
    /// `Created` is outside the clock-skew window under every accepted time zone.
    Stale,
    /// Correct, but the nonce was already used inside the window.
    Replayed,
    Valid,
}

impl Verdict {
    pub const ALL: [Self; 8] = [
        Self::NotChecked,
        Self::Absent,
        Self::Malformed,
        Self::UnknownApp,
        Self::BadDigest,
        Self::Stale,
        Self::Replayed,
        Self::Valid,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotChecked => "not_checked",
            Self::Absent => "absent",
            Self::Malformed => "malformed",
            Self::UnknownApp => "unknown_app",
            Self::BadDigest => "bad_digest",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::Valid => "valid",
        }
    }
}

/// Parses `UsernameToken Username="…",PasswordDigest="…",Nonce="…",Created="…"`. Attributes are
/// `key="value"` pairs separated by commas with optional spaces, in any order (samples omit the
/// space the doc tables show).
pub fn parse_username_token(header: &str) -> Option<UsernameToken> {
    let rest = attributes(header)?;
    let (mut username, mut digest, mut nonce, mut created) = (None, None, None, None);
    for attribute in rest.split(',') {
        let (key, value) = attribute.split_once('=')?;
        let value = value
            .trim()
            .strip_prefix('"')?
            .strip_suffix('"')?
            .to_owned();
        match key.trim() {
            "Username" => username = Some(value),
            "PasswordDigest" => digest = Some(value),
            "Nonce" => nonce = Some(value),
            "Created" => created = Some(value),
            _ => {}
        }
    }
    Some(UsernameToken {
        username: username?,
        password_digest: digest?,
        nonce: nonce?,
        created: created?,
    })
}

/// What follows the `UsernameToken` scheme (any case; nothing need separate them).
fn attributes(header: &str) -> Option<&str> {
    let rest = header.trim();
    rest.get(..13)
        .filter(|scheme| scheme.eq_ignore_ascii_case("UsernameToken"))
        .map(|_| &rest[13..])
}

/// The header as it may be stored or logged: every attribute `parse_username_token` could read
/// as the digest becomes `[redacted]`, and so does any attribute whose key ends in the word
/// PasswordDigest in any case. The attributes are split where the parser splits them (after
/// the scheme, which no blank need follow), so no spelling it reads slips through.
pub fn redact_username_token(header: &str) -> String {
    let start = match attributes(header) {
        Some(_) => header.len() - header.trim_start().len() + 13,
        None => 0,
    };
    let (scheme, rest) = header.split_at(start);
    let attributes: Vec<String> = rest
        .split(',')
        .map(|attribute| match attribute.split_once('=') {
            Some((key, _))
                if key
                    .split_whitespace()
                    .last()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PasswordDigest")) =>
            {
                format!("{key}=\"[redacted]\"")
            }
            _ => attribute.to_owned(),
        })
        .collect();
    format!("{scheme}{}", attributes.join(","))
}

/// Renders the header value, as the platform and our client send it.
pub fn format_username_token(token: &UsernameToken) -> String {
    format!(
        r#"UsernameToken Username="{}",PasswordDigest="{}",Nonce="{}",Created="{}""#,
        token.username, token.password_digest, token.nonce, token.created
    )
}

/// The fixed `Authorization` value the platform sends with every signed callback (and that its
/// outbound API takes in `aksk` mode): the realm, profile and type never vary.
pub const AKSK_AUTHORIZATION: &str = r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#;

/// The two headers of a signed callback, as the platform sends them.
#[derive(Debug, Clone)]
pub struct CallbackHeaders {
    /// `Authorization`: always [`AKSK_AUTHORIZATION`].
    pub authorization: &'static str,
    /// `X-AKSK`: the `UsernameToken` signed over the URL, nonce and Created.
    pub x_aksk: String,
}

/// Signs a callback as the platform does: what the stand-in platform, the load generator and the
/// tests send, and what `judge` verifies.
pub fn sign_callback(
    app_key: &str,
    secret: &str,
    signed_url: &str,
    nonce: String,
    created: String,
    variant: DigestVariant,
) -> CallbackHeaders {
    let token = UsernameToken {
        username: app_key.to_owned(),
        password_digest: callback_digest(secret, signed_url, &nonce, &created, variant),
        nonce,
        created,
    };
    CallbackHeaders {
        authorization: AKSK_AUTHORIZATION,
        x_aksk: format_username_token(&token),
    }
}

/// The spec's nonce rule: 1–128 characters, digits and ASCII letters.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (1..=128).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `Base64(HMAC-SHA256(secret, message))`.
pub fn hmac_sha256_base64(secret: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

/// The digest a callback carries, for one variant.
pub fn callback_digest(
    secret: &str,
    url: &str,
    nonce: &str,
    created: &str,
    variant: DigestVariant,
) -> String {
    let message = match variant {
        DigestVariant::Newline => format!("{url}\n{nonce}\n{created}"),
        DigestVariant::Concat => format!("{url}{nonce}{created}"),
    };
    hmac_sha256_base64(secret.as_bytes(), message.as_bytes())
}

/// How to judge a callback's signature; built once from configuration.
#[derive(Debug, Clone)]
pub struct CallbackVerifier {
    pub apps: Vec<(String, Vec<SecretString>)>,
    pub variants: Vec<DigestVariant>,
    pub accept_utc: bool,
    pub accept_beijing: bool,
    pub clock_skew: Duration,
}

impl CallbackVerifier {
    /// Checks everything but the nonce's freshness (that needs the store). `signed_urls` are the
    /// candidate URLs the platform may have signed.
    pub fn verify(
        &self,
        token: &UsernameToken,
        signed_urls: &[String],
        now: OffsetDateTime,
    ) -> Verdict {
        if !is_valid_nonce(&token.nonce) {
            return Verdict::Malformed;
        }
        let Some((_, secrets)) = self.apps.iter().find(|(key, _)| *key == token.username) else {
            return Verdict::UnknownApp;
        };
        let presented = token.password_digest.as_bytes();
        let mut matched = false;
        // Every candidate is computed, so the time taken does not tell which one matched.
        for secret in secrets {
            for url in signed_urls {
                for &variant in &self.variants {
                    let expected = callback_digest(
                        secret.expose_secret(),
                        url,
                        &token.nonce,
                        &token.created,
                        variant,
                    );
                    matched |= bool::from(expected.as_bytes().ct_eq(presented));
                }
            }
        }
        if !matched {
            return Verdict::BadDigest;
        }
        if !self.is_fresh(&token.created, now) {
            return Verdict::Stale;
        }
        Verdict::Valid
    }

    /// Whether `created` is within the skew window of `now` under an accepted reading.
    pub fn is_fresh(&self, created: &str, now: OffsetDateTime) -> bool {
        let Some(as_utc) = parse_platform_time(created) else {
            return false;
        };
        let skew = time::Duration::try_from(self.clock_skew).unwrap_or(time::Duration::MAX);
        let within = |instant: OffsetDateTime| (now - instant).abs() <= skew;
        (self.accept_utc && within(as_utc))
            || (self.accept_beijing && within(as_utc - BEIJING_OFFSET))
    }

    /// How long a nonce must be remembered: a request older than this is stale anyway.
    pub fn nonce_retention(&self) -> Duration {
        let beijing = if self.accept_beijing {
            Duration::from_secs(8 * 3600)
        } else {
            Duration::ZERO
        };
        beijing + self.clock_skew * 2
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn verifier() -> CallbackVerifier {
        CallbackVerifier {
            apps: vec![(
                "app".into(),
                vec![SecretString::from("old"), SecretString::from("new")],
            )],
            variants: vec![DigestVariant::Newline, DigestVariant::Concat],
            accept_utc: true,
            accept_beijing: true,
            clock_skew: Duration::from_secs(300),
        }
    }

    fn token(secret: &str, url: &str, created: &str, variant: DigestVariant) -> UsernameToken {
        UsernameToken {
            username: "app".into(),
            password_digest: callback_digest(
                secret,
                url,
                "66C92B11FF8A425FB8D4CCFE0ED9ED1F",
                created,
                variant,
            ),
            nonce: "66C92B11FF8A425FB8D4CCFE0ED9ED1F".into(),
            created: created.into(),
        }
    }

    const URL: &str = "https://hooks.example.com/voicecall/status";
    const NOW: OffsetDateTime = datetime!(2026-11-24 06:00:00 UTC);

    #[test]
    fn parses_both_published_spacings_and_any_order() {
        let compact = r#"UsernameToken Username="app",PasswordDigest="ZGln",Nonce="n1",Created="2026-11-24T06:00:00Z""#;
        let spaced = r#"UsernameToken Created="2026-11-24T06:00:00Z", Nonce="n1", PasswordDigest="ZGln", Username="app""#;
        assert_eq!(parse_username_token(compact), parse_username_token(spaced));
        assert_eq!(
            parse_username_token(compact).unwrap().password_digest,
            "ZGln"
        );
        assert_eq!(parse_username_token("Basic abc"), None);
        assert_eq!(
            parse_username_token(r#"UsernameToken Username="app""#),
            None
        );
    }

    #[test]
    fn known_answer_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"secret",
        //   b"https://hooks.example.com/voicecall/status\nabc\n2026-11-24T06:00:00Z", hashlib.sha256).digest()).decode())'
        assert_eq!(
            callback_digest(
                "secret",
                URL,
                "abc",
                "2026-11-24T06:00:00Z",
                DigestVariant::Newline
            ),
            "jJLZObL3LoHYQ+gJNESer5mDMF1AjMH/bMjUJc7g3s0="
        );
    }

    #[test]
    fn accepts_both_variants_and_every_rotated_secret() {
        let v = verifier();
        for variant in [DigestVariant::Newline, DigestVariant::Concat] {
            for secret in ["old", "new"] {
                let t = token(secret, URL, "2026-11-24T06:01:00Z", variant);
                assert_eq!(
                    v.verify(&t, &[URL.into()], NOW),
                    Verdict::Valid,
                    "{variant:?} {secret}"
                );
            }
        }
    }

    #[test]
    fn refuses_wrong_secret_url_and_unknown_app() {
        let v = verifier();
        let t = token("wrong", URL, "2026-11-24T06:00:00Z", DigestVariant::Newline);
        assert_eq!(v.verify(&t, &[URL.into()], NOW), Verdict::BadDigest);
        let t = token(
            "new",
            "https://other/",
            "2026-11-24T06:00:00Z",
            DigestVariant::Newline,
        );
        assert_eq!(v.verify(&t, &[URL.into()], NOW), Verdict::BadDigest);
        let mut t = token("new", URL, "2026-11-24T06:00:00Z", DigestVariant::Newline);
        t.username = "stranger".into();
        assert_eq!(v.verify(&t, &[URL.into()], NOW), Verdict::UnknownApp);
    }

    #[test]
    fn created_may_be_utc_or_beijing_time_within_the_skew() {
        let v = verifier();
        let beijing = token("new", URL, "2026-11-24T14:03:00Z", DigestVariant::Newline);
        assert_eq!(v.verify(&beijing, &[URL.into()], NOW), Verdict::Valid);
        let stale = token("new", URL, "2026-11-24T05:50:00Z", DigestVariant::Newline);
        assert_eq!(v.verify(&stale, &[URL.into()], NOW), Verdict::Stale);
        let utc_only = CallbackVerifier {
            accept_beijing: false,
            ..v
        };
        assert_eq!(
            utc_only.verify(&beijing, &[URL.into()], NOW),
            Verdict::Stale
        );
    }

    #[test]
    fn a_nonce_outside_the_documented_alphabet_is_malformed() {
        let mut t = token("new", URL, "2026-11-24T06:00:00Z", DigestVariant::Newline);
        t.nonce = "not a nonce!".into();
        assert_eq!(
            verifier().verify(&t, &[URL.into()], NOW),
            Verdict::Malformed
        );
    }

    #[test]
    fn redaction_removes_every_digest_the_parser_could_read() {
        let headers = [
            r#"UsernameToken Username="app",PasswordDigest="c2VjcmV0",Nonce="n",Created="t""#,
            r#"UsernameToken PasswordDigest = "c2VjcmV0", Username="app""#,
            r#"UsernameToken Username="app",PasswordDigest="decoy",Nonce="n",PasswordDigest="c2VjcmV0""#,
            r#"UsernameToken passworddigest="c2VjcmV0""#,
            // Found by fuzzing (tests/api/fuzz.rs): the parser needs no blank after the scheme.
            r#"UsernameTokenPasswordDigest="c2VjcmV0",Username="app""#,
            "UsernameToken\tPasswordDigest=\"c2VjcmV0\",Username=\"app\"",
        ];
        for header in headers {
            let redacted = redact_username_token(header);
            assert!(!redacted.contains("c2VjcmV0"), "{header} -> {redacted}");
            assert!(redacted.contains("[redacted]"), "{header} -> {redacted}");
        }
        assert!(
            redact_username_token(headers[0])
                .ends_with(r#"PasswordDigest="[redacted]",Nonce="n",Created="t""#)
        );
    }

    #[test]
    fn debug_output_hides_the_digest() {
        let t = token("new", URL, "2026-11-24T06:00:00Z", DigestVariant::Newline);
        assert!(!format!("{t:?}").contains(&t.password_digest));
    }
}
