//! Operations endpoints (liveness, readiness, metrics) and request ids.

use callhook::config::SignatureMode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    APP_KEY, APP_SECRET, ChaosProxy, Signature, TestApp, database_url, fee_body, json, spawn_app,
    spawn_app_with, status_body, with_test_app,
};

/// Liveness answers 200 `{"status":"ok"}`.
#[sqlx::test]
async fn healthz_answers_ok(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;

    // Act
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request is sent");

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(json(response).await, json!({"status": "ok"}));
}

/// Readiness answers 200 when the replica keeps callbacks in the database, with the schema in
/// place, nothing waiting for projection and an empty spool.
#[sqlx::test]
async fn readyz_answers_ready_with_a_migrated_database(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;

    // Act
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request is sent");

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        json(response).await,
        json!({
            "status": "ready", "accepting": "database", "database": "up", "migrations": "applied",
            "projection": {"backlog": 0},
            "spool": {"records": 0, "bytes": 0, "oldest_age_seconds": null},
        })
    );
}

/// An app whose database is behind a proxy that is down before it starts, with a small spool.
async fn app_without_database(pool: &PgPool) -> (ChaosProxy, TestApp) {
    let (proxy, through) = ChaosProxy::in_front_of(pool, 300).await;
    proxy.set_down(true);
    let app = spawn_app_with(through, |c| {
        c.spool.segment_bytes = 4096;
        c.spool.max_bytes = 8192;
    })
    .await;
    (proxy, app)
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request is sent");
    (response.status().as_u16(), json(response).await)
}

/// Readiness is about keeping a callback durably: with the database unreachable from the start
/// (the schema not known to be in place) the replica is still ready, keeping receipts in its
/// spool, and says so.
#[sqlx::test]
async fn readyz_is_ready_from_the_spool_while_the_database_is_down(pool: PgPool) {
    // Arrange
    let (_proxy, app) = app_without_database(&pool).await;

    // Act
    let (status, body) = readyz(&app).await;
    let callback = app
        .client
        .post(app.url("/voicecall/status"))
        .body(status_body("answer", "spooled", json!({})))
        .send()
        .await
        .expect("request is sent");
    let (_, after) = readyz(&app).await;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["status"],
            &body["accepting"],
            &body["database"],
            &body["migrations"]
        ),
        (
            &json!("ready"),
            &json!("spool"),
            &json!("down"),
            &json!("pending")
        ),
        "{body}"
    );
    assert_eq!(callback.status(), 200);
    assert_eq!(callback.headers()["x-callhook-kept-in"], "spool");
    assert_eq!(after["spool"]["records"], 1, "{after}");
}

/// Once the spool is at its bound and callbacks are answered 503 (database down too), the
/// replica is not ready, so a load balancer sends them elsewhere.
#[sqlx::test]
async fn readyz_is_not_ready_once_the_spool_refuses_callbacks(pool: PgPool) {
    // Arrange
    let (_proxy, app) = app_without_database(&pool).await;
    let mut answered = Vec::new();
    for n in 0..200 {
        let response = app
            .client
            .post(app.url("/voicecall/status"))
            .body(status_body("answer", &format!("spooled-{n}"), json!({})))
            .send()
            .await
            .expect("request is sent");
        answered.push(response.status().as_u16());
        if response.status() == 503 {
            break;
        }
    }
    assert_eq!(
        answered.last(),
        Some(&503),
        "the spool fills up: {answered:?}"
    );

    // Act
    let (status, body) = readyz(&app).await;

    // Assert
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (&body["status"], &body["accepting"]),
        (&json!("not_ready"), &json!("none")),
        "{body}"
    );
}

/// After a stored and a refused callback, /metrics exposes every callhook metric family.
#[sqlx::test]
async fn metrics_expose_the_callback_counters_and_pool_gauges(pool: PgPool) {
    // Arrange: the recorder is process-global, so only presence is asserted, not counts.
    let app = spawn_app(pool).await;
    let stored = app
        .post(
            "/voicecall/status",
            status_body("callout", "s-metrics", json!({})),
        )
        .await;
    assert_eq!(stored.status().as_u16(), 200, "the status event is stored");
    let refused = app.post("/voicecall/status", "not json").await;
    assert_eq!(refused.status().as_u16(), 400, "the bad request is refused");

    // Act
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request is sent");

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("a text body");
    for name in [
        "callhook_callbacks_total",
        "callhook_rejections_total",
        "callhook_signature_verdicts_total",
        "callhook_callback_duration_seconds_bucket",
        "callhook_db_pool_connections",
    ] {
        assert!(text.contains(name), "metric {name} is exposed in:\n{text}");
    }
    assert!(
        text.contains(r#"reason="invalid_json""#),
        "the rejection is labelled by its code in:\n{text}"
    );
}

/// Every response carries an x-request-id, whatever the endpoint and the answer.
#[sqlx::test]
async fn every_response_carries_a_request_id(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let cases = [
        ("healthz", reqwest::Method::GET, "/healthz", ""),
        ("readyz", reqwest::Method::GET, "/readyz", ""),
        ("metrics", reqwest::Method::GET, "/metrics", ""),
        (
            "stored callback",
            reqwest::Method::POST,
            "/voicecall/status",
            r#"{"eventType":"callout","statusInfo":{"sessionId":"s-id"}}"#,
        ),
        (
            "refused callback",
            reqwest::Method::POST,
            "/voicecall/fee",
            "not json",
        ),
        (
            "wrong method",
            reqwest::Method::GET,
            "/voicecall/events",
            "",
        ),
        ("unknown path", reqwest::Method::GET, "/nowhere", ""),
    ];

    for (case, method, path, body) in cases {
        // Act
        let response = app
            .client
            .request(method, app.url(path))
            .body(body)
            .send()
            .await
            .expect("request is sent");

        // Assert
        let id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            id.is_some_and(|id| !id.is_empty()),
            "case {case}: x-request-id on a {}",
            response.status()
        );
    }
}

/// A request id given by the client is answered back and stored with the raw callback.
#[sqlx::test]
async fn a_client_request_id_is_echoed_and_stored(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let cases = [
        (
            "stored callback",
            status_body("callout", "s-request-id", json!({})),
            "req-stored-0001",
        ),
        (
            "refused callback",
            "not json".to_owned(),
            "req-refused-0002",
        ),
    ];

    for (case, body, request_id) in cases {
        // Act
        let response = app
            .client
            .post(app.url("/voicecall/status"))
            .header("content-type", "application/json;charset=UTF-8")
            .header("x-request-id", request_id)
            .body(body)
            .send()
            .await
            .expect("request is sent");
        app.projected().await;

        // Assert
        let echoed = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(echoed.as_deref(), Some(request_id), "case {case}: echoed");
        let stored: Option<String> =
            sqlx::query_scalar("select request_id from raw_callbacks order by id desc limit 1")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(request_id),
            "case {case}: stored in raw_callbacks.request_id"
        );
    }
}

/// Without a client request id, the generated one is both answered and stored.
#[sqlx::test]
async fn a_generated_request_id_is_answered_and_stored(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;

    // Act
    let response = app
        .post(
            "/voicecall/status",
            status_body("callout", "s-generated-id", json!({})),
        )
        .await;

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let answered = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(answered.is_some(), "an x-request-id is answered");
    let stored: Option<String> = sqlx::query_scalar("select request_id from raw_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, answered);
}

/// The value of one sample of the Prometheus text, 0 when it is not there yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A callback, its redelivery and a refusal each move their counter: the acknowledgement counts
/// as `accepted` when answered, what it came to (stored, duplicate) when projected. The recorder
/// is shared by every test of this process, so the counts are compared before and after, at
/// least.
#[sqlx::test]
async fn metrics_count_what_happened(pool: PgPool) {
    let app = spawn_app(pool).await;
    let metrics = || async { app.metrics_text().await };
    let series = [
        (
            r#"callhook_callbacks_total{kind="status",outcome="accepted"}"#,
            2.0,
        ),
        (
            r#"callhook_callbacks_total{kind="unknown",outcome="rejected"}"#,
            1.0,
        ),
        (r#"callhook_projected_total{outcome="stored"}"#, 1.0),
        (r#"callhook_projected_total{outcome="duplicate"}"#, 1.0),
        (r#"callhook_duplicates_total{kind="status"}"#, 1.0),
        (r#"callhook_rejections_total{reason="missing_field"}"#, 1.0),
        ("callhook_projection_lag_seconds_count", 2.0),
    ];
    let before = metrics().await;

    let body = status_body("answer", "s-counted", json!({}));
    for _ in 0..2 {
        assert_eq!(
            app.post("/voicecall/status", body.clone()).await.status(),
            200
        );
    }
    let missing =
        json!({"eventType": "answer", "statusInfo": {"timestamp": "2026-11-24 06:00:00"}});
    assert_eq!(
        app.post("/voicecall/status", missing.to_string())
            .await
            .status(),
        400
    );

    // Duplicates are counted when projected; under load a receipt may sit in the spool first.
    app.projected().await;
    let after = metrics().await;
    for (name, moved) in series {
        assert!(
            sample(&after, name) >= sample(&before, name) + moved,
            "{name} moved by less than {moved}:\n{after}"
        );
    }
}

/// A sender that stops sending its body is cut off after http.body_timeout_ms: it gets a 400
/// naming the problem, and what did arrive is kept with the refused request.
#[sqlx::test]
async fn a_body_that_stops_arriving_is_cut_off_and_kept(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(pool, |config| config.http.body_timeout_ms = 300).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /voicecall/status HTTP/1.1\r\nhost: callhook\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"eventType\":",
        )
        .await
        .unwrap();

    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;

    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("body_incomplete"), "{answer}");
    let (body, truncated, status): (Vec<u8>, bool, i16) =
        sqlx::query_as("select body, body_truncated, http_status from raw_callbacks")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (body.as_slice(), truncated, status),
        (&b"{\"eventType\":"[..], true, 400)
    );
}

/// The metric names of the documented metrics table (its rows start with a backticked name).
fn documented_metrics() -> Vec<String> {
    let operations =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .unwrap();
    let section = operations
        .split("\n### Metrics\n")
        .nth(1)
        .expect("docs/operations.md has a Metrics section");
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Whether the exposition has a sample of `name` (for a histogram, of its buckets).
fn has_sample(text: &str, name: &str) -> bool {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .any(|line| {
            let metric = line.split(['{', ' ']).next().unwrap_or("");
            metric == name || metric == format!("{name}_bucket")
        })
}

/// Every metric docs/operations.md documents is one `metrics::ALL` names, and each one appears on
/// /metrics once every path has run: stored, duplicate, partial, rejected and unauthorized
/// callbacks, fee lists, a call that ends, API requests, an export, and a placed call.
#[sqlx::test]
async fn every_documented_metric_appears_on_metrics(pool: PgPool) {
    // Arrange
    let mut documented = documented_metrics();
    documented.sort();
    let mut all: Vec<String> = callhook::metrics::ALL
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    all.sort();
    assert_eq!(
        documented, all,
        "docs/operations.md's table lists exactly metrics::ALL"
    );

    const BASE: &str = "https://hooks.example.com";
    const TOKEN: &str = "metrics-test-token-0123";
    let app = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        c.public_base_url = BASE.into();
        c.api.tokens =
            serde_json::from_value(json!([{"token": TOKEN, "name": "metrics", "scope": "full"}]))
                .unwrap();
    })
    .await;
    let signed = |path: &str| Signature::new(format!("{BASE}{path}"));
    let status = status_body("callout", "s-every-metric", json!({}));
    let mut answers = Vec::new();
    for (path, body) in [
        ("/voicecall/status", status.clone()),
        ("/voicecall/status", status.clone()),
        ("/voicecall/fee", fee_body("s-every-metric-fee", 2)),
        ("/voicecall/fee", fee_body("s-every-metric-fee", 2)),
        ("/voicecall/status", "not json".to_owned()),
    ] {
        let response = app.post_signed(path, body, &signed(path)).await;
        answers.push(response.status().as_u16());
    }
    let mut partial: serde_json::Value =
        serde_json::from_str(&fee_body("s-every-partial", 2)).unwrap();
    partial["feeLst"][1]["sessionId"] = json!(17);
    let response = app
        .post_signed(
            "/voicecall/fee",
            partial.to_string(),
            &signed("/voicecall/fee"),
        )
        .await;
    answers.push(response.status().as_u16());
    answers.push(
        app.post("/voicecall/status", status.clone())
            .await
            .status()
            .as_u16(),
    );
    // The call goes on ringing, is answered and ends: the call metrics.
    for (event, extra) in [
        ("alerting", json!({})),
        ("answer", json!({})),
        ("disconnect", json!({"stateCode": 0})),
    ] {
        let body = status_body(event, "s-every-metric", extra);
        let path = "/voicecall/status";
        let response = app.post_signed(path, body, &signed(path)).await;
        answers.push(response.status().as_u16());
    }
    assert_eq!(answers, [200, 200, 200, 200, 400, 200, 401, 200, 200, 200]);
    for path in ["/v1/calls", "/v1/cdrs", "/v1/calls.csv", "/v1/refused"] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
    }
    // Placed by another process, as `callhook call` does: nothing listens at the platform's
    // address, so it is recorded as not sent.
    let call = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
        .args([
            "call",
            "--caller",
            "+8613800000001",
            "--callee",
            "+8613800000002",
        ])
        .args(["--display", "+867550000001"])
        .env("DATABASE_URL", database_url(&pool))
        .env(
            "CALLHOOK_APPS",
            format!(r#"[{{key="{APP_KEY}", secrets=["{APP_SECRET}"]}}]"#),
        )
        .env("CALLHOOK_PLATFORM__BASE_URL", "http://127.0.0.1:9")
        .env("CALLHOOK_PLATFORM__MAX_ATTEMPTS", "1")
        .env("CALLHOOK_LOG__FILTER", "off")
        .env_remove("RUST_LOG")
        .env_remove("CALLHOOK_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(!call.status.success(), "no platform there: {call:?}");

    // Act
    let text = app.metrics_text().await;

    // Assert
    for name in callhook::metrics::ALL {
        assert!(has_sample(&text, name), "{name} appears in:\n{text}");
    }
    assert!(
        text.contains(r#"callhook_placed_calls_total{operation="click2call",outcome="not_sent"}"#),
        "the placed call is counted from placed_calls in:\n{text}"
    );
}
