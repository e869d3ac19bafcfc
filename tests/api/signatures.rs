//! Callback signatures (X-AKSK): what each mode accepts, refuses and records, and that the
//! digest itself is never stored.

use std::sync::Arc;

use callhook::{
    config::{Config, SignatureMode},
    platform::{
        signature::{DigestVariant, callback_digest},
        time::format_created,
    },
};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;

use crate::helpers::{
    APP_KEY, APP_SECRET, Signature, TestApp, answered_outcome, callback_id, json, last_raw,
    spawn_app, spawn_app_with, status_body, with_test_app,
};

const BASE: &str = "https://hooks.example.com";
const ROTATED_SECRET: &str = "rotated-app-secret-value";
const AUTHORIZATION: &str = r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#;

const FORWARDED: &[(&str, &str)] = &[
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "hooks.example.net"),
];
const NO_HEADERS: &[(&str, &str)] = &[];

fn status_url() -> String {
    format!("{BASE}/voicecall/status")
}

/// The test app with two secrets (the current one and a rotated one) under `public_base_url`.
fn signing(config: &mut Config, mode: SignatureMode) {
    with_test_app(config);
    config.apps =
        serde_json::from_value(json!([{"key": APP_KEY, "secrets": [APP_SECRET, ROTATED_SECRET]}]))
            .unwrap();
    config.signature.mode = mode;
    config.public_base_url = BASE.into();
}

async fn enforcing(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |c| signing(c, SignatureMode::Enforce)).await
}

/// Posts a status event with the given X-AKSK header value, or none, and returns once what it
/// was answered has been projected.
async fn post_with_aksk(
    app: &TestApp,
    path: &str,
    body: String,
    aksk: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json;charset=UTF-8")
        .header("authorization", AUTHORIZATION);
    if let Some(aksk) = aksk {
        request = request.header("x-aksk", aksk);
    }
    let response = request.body(body).send().await.expect("request is sent");
    app.projected().await;
    response
}

/// Asserts a 401 with `code`, and that the request was kept as unauthorized with `verdict`.
async fn assert_unauthorized(
    app: &TestApp,
    case: &str,
    response: reqwest::Response,
    code: &str,
    verdict: &str,
) {
    assert_eq!(response.status().as_u16(), 401, "case {case}: status");
    let body = json(response).await;
    assert_eq!(
        body["error"]["code"], code,
        "case {case}: error code in {body}"
    );
    assert_eq!(
        body["error"]["field"], "X-AKSK",
        "case {case}: error field in {body}"
    );
    let (outcome, http_status, error, raw_verdict) = last_raw(&app.pool).await;
    assert_eq!(outcome, "unauthorized", "case {case}: raw outcome");
    assert_eq!(http_status, 401, "case {case}: raw http_status");
    assert_eq!(
        error.as_ref(),
        Some(&body["error"]),
        "case {case}: raw error is the answered error"
    );
    assert_eq!(raw_verdict, verdict, "case {case}: raw signature_verdict");
}

/// Asserts a 200 (answered `accepted`) whose receipt was kept with `verdict` and, once projected,
/// stored its event. Call it once projected.
async fn assert_accepted(app: &TestApp, case: &str, response: reqwest::Response, verdict: &str) {
    assert_accepted_as(app, case, response, verdict, "stored").await;
}

/// Asserts a 200 (answered `accepted`) whose receipt was kept with `verdict` and projected as
/// `projected`. Call it once projected.
async fn assert_accepted_as(
    app: &TestApp,
    case: &str,
    response: reqwest::Response,
    verdict: &str,
    projected: &str,
) {
    assert_eq!(response.status().as_u16(), 200, "case {case}: status");
    assert_eq!(
        answered_outcome(&response).as_deref(),
        Some("accepted"),
        "case {case}: x-callhook-outcome"
    );
    let id = callback_id(&response);
    let body = json(response).await;
    assert_eq!(
        body,
        json!({"resultcode": "0", "resultdesc": "Success"}),
        "case {case}: answer"
    );
    let (outcome, http_status, error, raw_verdict): (String, i16, Option<Value>, String) =
        sqlx::query_as(
            "select outcome, http_status, error, signature_verdict from raw_callbacks where id = $1",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the acknowledged receipt is kept");
    assert_eq!(outcome, projected, "case {case}: raw outcome");
    assert_eq!(http_status, 200, "case {case}: raw http_status");
    assert_eq!(error, None, "case {case}: raw error");
    assert_eq!(raw_verdict, verdict, "case {case}: raw signature_verdict");
}

/// In enforce mode every accepted way of signing is let through and recorded as valid.
#[sqlx::test]
async fn enforce_accepts_every_valid_signature(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let fresh = Signature::new(status_url());
    let cases = [
        (
            "newline digest",
            Signature {
                variant: DigestVariant::Newline,
                ..fresh.clone()
            },
        ),
        (
            "concat digest",
            Signature {
                variant: DigestVariant::Concat,
                ..fresh.clone()
            },
        ),
        (
            "rotated secret",
            Signature {
                secret: ROTATED_SECRET.into(),
                ..fresh.clone()
            },
        ),
        (
            "Created in Beijing time",
            Signature {
                created: format_created(OffsetDateTime::now_utc() + Duration::hours(8)),
                ..fresh.clone()
            },
        ),
        (
            "signed over the fee URL",
            Signature {
                signed_url: format!("{BASE}/voicecall/fee"),
                ..fresh
            },
        ),
    ];

    for (i, (case, signature)) in cases.into_iter().enumerate() {
        // Each case its own nonce and event, so none is a replay or a duplicate of another.
        let signature = Signature {
            nonce: format!("NONCE{i}X{}", uuid::Uuid::new_v4().simple()),
            ..signature
        };
        let body = status_body("callout", &format!("s-valid-{i}"), json!({}));

        // Act
        let response = app.post_signed("/voicecall/status", body, &signature).await;

        // Assert
        assert_accepted(&app, case, response, "valid").await;
        assert_eq!(
            app.count("call_events").await,
            i64::try_from(i).unwrap() + 1,
            "case {case}: event stored"
        );
    }
}

/// In enforce mode every bad signature is answered 401 with its own code, kept, and not stored.
#[sqlx::test]
async fn enforce_refuses_every_bad_signature(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let sign = |change: fn(&mut Signature)| {
        let mut signature = Signature::new(status_url());
        change(&mut signature);
        Some(signature.header())
    };
    let cases: [(&str, Option<String>, &str, &str); 7] = [
        (
            "wrong secret",
            sign(|s| s.secret = "wrong-secret".into()),
            "signature_invalid",
            "bad_digest",
        ),
        (
            "signed over another URL",
            sign(|s| s.signed_url = "https://elsewhere.example.com/voicecall/status".into()),
            "signature_invalid",
            "bad_digest",
        ),
        ("no X-AKSK", None, "signature_missing", "absent"),
        (
            "unparseable X-AKSK",
            Some("UsernameToken garbage".into()),
            "signature_malformed",
            "malformed",
        ),
        (
            "nonce outside the alphabet",
            sign(|s| s.nonce = "not a nonce!".into()),
            "signature_malformed",
            "malformed",
        ),
        (
            "unknown app key",
            sign(|s| s.app_key = "strangerAppKey99".into()),
            "signature_unknown_app",
            "unknown_app",
        ),
        (
            "stale Created",
            sign(|s| s.created = format_created(OffsetDateTime::now_utc() - Duration::hours(1))),
            "signature_stale",
            "stale",
        ),
    ];

    for (i, (case, aksk, code, verdict)) in cases.into_iter().enumerate() {
        let before = app.count("raw_callbacks").await;
        let body = status_body("callout", &format!("s-bad-{i}"), json!({}));

        // Act
        let response = post_with_aksk(&app, "/voicecall/status", body, aksk.as_deref()).await;

        // Assert
        assert_unauthorized(&app, case, response, code, verdict).await;
        assert_eq!(
            app.count("raw_callbacks").await,
            before + 1,
            "case {case}: kept"
        );
        assert_eq!(
            app.count("call_events").await,
            0,
            "case {case}: nothing stored"
        );
        let remembered: i64 = sqlx::query_scalar(
            "select count(*) from raw_callbacks where signature_verdict = 'valid'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(remembered, 0, "case {case}: no nonce remembered as used");
    }
}

/// In enforce mode a nonce is good once: the second use is refused even with another body.
#[sqlx::test]
async fn enforce_refuses_a_replayed_nonce(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let signature = Signature::new(status_url());

    // Act
    let first = app
        .post_signed(
            "/voicecall/status",
            status_body("callout", "s-replay-1", json!({})),
            &signature,
        )
        .await;
    let first_status = first.status().as_u16();
    let second = app
        .post_signed(
            "/voicecall/status",
            status_body("callout", "s-replay-2", json!({})),
            &signature,
        )
        .await;

    // Assert
    assert_eq!(first_status, 200, "first use");
    assert_unauthorized(&app, "second use", second, "signature_replayed", "replayed").await;
    let sessions: Vec<String> = sqlx::query_scalar("select session_id from call_events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(sessions, ["s-replay-1"], "only the first use is stored");
}

/// With no public_base_url and trusted forwarding headers, the signed URL is rebuilt from those
/// headers, else from Host.
#[sqlx::test]
async fn the_signed_url_is_rebuilt_from_request_headers_without_a_public_base_url(pool: PgPool) {
    // Arrange
    let app = spawn_app_with(pool, |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        c.public_base_url = String::new();
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let host_url = app.url("/voicecall/status");
    let cases = [
        (
            "forwarded headers",
            FORWARDED,
            "https://hooks.example.net/voicecall/status".to_owned(),
            200,
        ),
        ("Host header", NO_HEADERS, host_url.clone(), 200),
        ("forwarded headers win over Host", FORWARDED, host_url, 401),
    ];

    for (i, (case, headers, signed_url, status)) in cases.into_iter().enumerate() {
        let signature = Signature::new(signed_url);
        let mut request = app
            .client
            .post(app.url("/voicecall/status"))
            .header("content-type", "application/json;charset=UTF-8")
            .header("authorization", AUTHORIZATION)
            .header("x-aksk", signature.header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }

        // Act
        let response = request
            .body(status_body(
                "callout",
                &format!("s-forwarded-{i}"),
                json!({}),
            ))
            .send()
            .await
            .expect("request is sent");
        app.projected().await;

        // Assert
        if status == 200 {
            assert_accepted(&app, case, response, "valid").await;
        } else {
            assert_unauthorized(&app, case, response, "signature_invalid", "bad_digest").await;
        }
    }
}

/// Untrusted (the default), X-Forwarded-Proto/Host are ignored: a signature over the URL they
/// name is wrong, one over the Host URL is right, whatever forwarding headers come with it.
#[sqlx::test]
async fn untrusted_forwarding_headers_do_not_name_the_signed_url(pool: PgPool) {
    // Arrange: observe mode, as enforce without a public URL or trusted headers cannot start.
    let app = spawn_app_with(pool, |c| {
        with_test_app(c);
        c.public_base_url = String::new();
    })
    .await;
    let host_url = app.url("/voicecall/status");
    let cases = [
        (
            "signed over the forwarded URL",
            "https://hooks.example.net/voicecall/status".to_owned(),
            "bad_digest",
        ),
        ("signed over the Host URL", host_url, "valid"),
    ];

    for (i, (case, signed_url, verdict)) in cases.into_iter().enumerate() {
        let mut request = app
            .client
            .post(app.url("/voicecall/status"))
            .header("content-type", "application/json;charset=UTF-8")
            .header("authorization", AUTHORIZATION)
            .header("x-aksk", Signature::new(signed_url).header());
        for (name, value) in FORWARDED {
            request = request.header(*name, *value);
        }

        // Act
        let response = request
            .body(status_body(
                "callout",
                &format!("s-untrusted-{i}"),
                json!({}),
            ))
            .send()
            .await
            .expect("request is sent");

        // Assert
        assert_eq!(
            response.status().as_u16(),
            200,
            "case {case}: observe stores"
        );
        let (_, _, _, raw_verdict) = last_raw(&app.pool).await;
        assert_eq!(raw_verdict, verdict, "case {case}");
    }
}

/// In observe mode (the default) nothing is refused for its signature; the verdict is recorded.
#[sqlx::test]
async fn observe_stores_everything_and_records_the_verdict(pool: PgPool) {
    // Arrange
    let app = spawn_app_with(pool, |c| {
        with_test_app(c);
        c.public_base_url = BASE.into();
    })
    .await;
    let wrong = Signature {
        secret: "wrong-secret".into(),
        ..Signature::new(status_url())
    };
    let reused = Signature::new(status_url()).header();
    let reused_again = reused.clone();
    let cases = [
        ("wrong secret", Some(wrong.header()), "bad_digest"),
        ("no X-AKSK", None, "absent"),
        (
            "unparseable X-AKSK",
            Some("UsernameToken garbage".into()),
            "malformed",
        ),
        ("valid", Some(reused.clone()), "valid"),
        (
            "replayed nonce, other body",
            Some(reused.clone()),
            "replayed",
        ),
    ];

    for (i, (case, aksk, verdict)) in cases.into_iter().enumerate() {
        let body = status_body("callout", &format!("s-observe-{i}"), json!({}));

        // Act
        let response = post_with_aksk(&app, "/voicecall/status", body, aksk.as_deref()).await;

        // Assert
        assert_accepted(&app, case, response, verdict).await;
        assert_eq!(
            app.count("call_events").await,
            i64::try_from(i).unwrap() + 1,
            "case {case}: event stored"
        );
    }

    // A replay of one push (same nonce, same body) is accepted too, and is that push again: its
    // event is a duplicate, not a second event.
    let valid_again = post_with_aksk(
        &app,
        "/voicecall/status",
        status_body("callout", "s-observe-3", json!({})),
        Some(&reused_again),
    )
    .await;
    assert_accepted_as(&app, "replayed push", valid_again, "replayed", "duplicate").await;
    assert_eq!(
        app.count("call_events").await,
        5,
        "replayed push: no new event"
    );
}

/// With checking off the headers are not looked at: any of them is accepted as `not_checked`.
#[sqlx::test]
async fn off_accepts_anything_as_not_checked(pool: PgPool) {
    // Arrange
    let app = spawn_app_with(pool, |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Off;
        c.public_base_url = BASE.into();
    })
    .await;
    let wrong = Signature {
        secret: "wrong-secret".into(),
        ..Signature::new(status_url())
    };
    let cases = [
        ("garbage X-AKSK", Some("garbage, not=\"a token".to_owned())),
        ("wrong secret", Some(wrong.header())),
        ("no X-AKSK", None),
    ];

    for (i, (case, aksk)) in cases.into_iter().enumerate() {
        let body = status_body("callout", &format!("s-off-{i}"), json!({}));

        // Act
        let response = post_with_aksk(&app, "/voicecall/status", body, aksk.as_deref()).await;

        // Assert
        assert_accepted(&app, case, response, "not_checked").await;
    }
}

/// The stored X-AKSK header has its PasswordDigest replaced, whether the signature was good or not.
#[sqlx::test]
async fn the_stored_x_aksk_header_never_holds_the_digest(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let valid = Signature::new(status_url());
    let wrong = Signature {
        secret: "wrong-secret".into(),
        ..Signature::new(status_url())
    };
    let cases = [("valid", valid, 200), ("wrong secret", wrong, 401)];

    for (i, (case, signature, status)) in cases.into_iter().enumerate() {
        let digest = callback_digest(
            &signature.secret,
            &signature.signed_url,
            &signature.nonce,
            &signature.created,
            signature.variant,
        );
        let body = status_body("callout", &format!("s-redact-{i}"), json!({}));

        // Act
        let response = app.post_signed("/voicecall/status", body, &signature).await;

        // Assert
        assert_eq!(response.status().as_u16(), status, "case {case}: status");
        let headers: Value =
            sqlx::query_scalar("select headers from raw_callbacks order by id desc limit 1")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        let aksk = headers["x-aksk"].as_str().expect("x-aksk is kept");
        assert!(
            aksk.contains(r#"PasswordDigest="[redacted]""#),
            "case {case}: redacted in {aksk}"
        );
        assert!(
            aksk.contains(&format!(r#"Nonce="{}""#, signature.nonce)),
            "case {case}: the rest is kept in {aksk}"
        );
        assert!(
            !headers.to_string().contains(&digest),
            "case {case}: the digest is not stored anywhere in {headers}"
        );
    }
}

/// Every spelling of X-AKSK that the verifier accepts has its digest redacted before storing.
#[sqlx::test]
async fn the_digest_is_redacted_in_every_header_spelling_the_verifier_accepts(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let spellings: [(&str, fn(&Signature, &str) -> String); 3] = [
        ("compact", |s, digest| {
            format!(
                r#"UsernameToken Username="{}",PasswordDigest="{digest}",Nonce="{}",Created="{}""#,
                s.app_key, s.nonce, s.created
            )
        }),
        ("spaces around =", |s, digest| {
            format!(
                r#"UsernameToken Username="{}", PasswordDigest = "{digest}", Nonce="{}", Created="{}""#,
                s.app_key, s.nonce, s.created
            )
        }),
        (
            "PasswordDigest repeated, the last one counts",
            |s, digest| {
                format!(
                    r#"UsernameToken Username="{}",PasswordDigest="ZGVjb3k=",Nonce="{}",Created="{}",PasswordDigest="{digest}""#,
                    s.app_key, s.nonce, s.created
                )
            },
        ),
    ];

    for (i, (case, spell)) in spellings.into_iter().enumerate() {
        let signature = Signature::new(status_url());
        let digest = callback_digest(
            &signature.secret,
            &signature.signed_url,
            &signature.nonce,
            &signature.created,
            signature.variant,
        );
        let body = status_body("callout", &format!("s-spelling-{i}"), json!({}));

        // Act
        let response = post_with_aksk(
            &app,
            "/voicecall/status",
            body,
            Some(&spell(&signature, &digest)),
        )
        .await;

        // Assert: the verifier took the header as a valid signature...
        assert_accepted(&app, case, response, "valid").await;
        // ...so its digest must not be kept.
        let headers: Value =
            sqlx::query_scalar("select headers from raw_callbacks order by id desc limit 1")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert!(
            !headers.to_string().contains(&digest),
            "case {case}: the digest is stored in {headers}"
        );
    }
}

/// The same signed request fired concurrently is accepted exactly once: the nonce decides.
#[sqlx::test]
async fn concurrent_replays_are_accepted_exactly_once(pool: PgPool) {
    // Arrange
    let app = enforcing(pool).await;
    let header = Signature::new(status_url()).header();
    let body = status_body("callout", "s-concurrent", json!({}));
    let barrier = Arc::new(Barrier::new(10));
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/voicecall/status"))
                .header("content-type", "application/json;charset=UTF-8")
                .header("authorization", AUTHORIZATION)
                .header("x-aksk", header.clone())
                .body(body.clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let response = request.send().await.expect("request is sent");
                let status = response.status().as_u16();
                let answer: Value = response.json().await.expect("a JSON body");
                (status, answer)
            })
        })
        .collect();

    // Act
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    app.projected().await;

    // Assert
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    let replayed = answers
        .iter()
        .filter(|(status, answer)| {
            *status == 401 && answer["error"]["code"] == "signature_replayed"
        })
        .count();
    assert_eq!((accepted, replayed), (1, 9), "answers: {answers:?}");
    assert_eq!(app.count("call_events").await, 1);
    let verdicts: Vec<(String, String, i64)> = sqlx::query_as(
        "select outcome, signature_verdict, count(*) from raw_callbacks group by 1, 2 order by 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        verdicts,
        [
            ("stored".into(), "valid".into(), 1),
            ("unauthorized".into(), "replayed".into(), 9)
        ]
    );
}

/// The platform's Authorization (a realm string, nothing secret) is kept as sent; a credential
/// of any other scheme sent to a callback URL is not stored, only its scheme.
#[sqlx::test]
async fn a_foreign_authorization_credential_is_never_stored(pool: PgPool) {
    let app = spawn_app(pool).await;
    let cases = [
        ("Basic dXNlcjpodW50ZXIy", "Basic [redacted]"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.secret", "Bearer [redacted]"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[redacted]"),
        (AUTHORIZATION, AUTHORIZATION),
    ];
    for (i, (sent, stored)) in cases.into_iter().enumerate() {
        let response = app
            .client
            .post(app.url("/voicecall/status"))
            .header("authorization", sent)
            .body(status_body("callout", &format!("s-auth-{i}"), json!({})))
            .send()
            .await
            .unwrap();
        app.projected().await;
        assert_eq!(response.status(), 200, "{sent}");
        let headers: Value =
            sqlx::query_scalar("select headers from raw_callbacks order by id desc limit 1")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(headers["authorization"], stored, "{sent}");
    }
}
