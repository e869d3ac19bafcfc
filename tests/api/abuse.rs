//! Forged input and floods: what an attacker can and cannot make of the receipts.

use std::{sync::Arc, time::Duration};

use callhook::config::SignatureMode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    api_helpers::{FULL_TOKEN, post_as, spawn_api_with},
    helpers::{Signature, fee_body, status_body, with_test_app},
};

fn enforcing(config: &mut callhook::config::Config) {
    with_test_app(config);
    config.signature.mode = SignatureMode::Enforce;
    // The signed URL is rebuilt from the request (Host), as behind a trusted proxy.
    config.http.trust_forwarded_headers = true;
}

/// Enforce mode: a forged CDR sent with the wrong method, unsigned, or cut short is kept and
/// listed, but reprocessing never turns it into billing data; each refusal says why.
#[sqlx::test]
async fn forged_callbacks_never_become_rows_by_reprocessing(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), enforcing).await;
    let forged = fee_body("forged", 1);
    let put = app
        .client
        .put(app.url("/voicecall/fee"))
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    let unsigned = app.post("/voicecall/fee", forged.clone()).await;
    let huge = app.post("/voicecall/fee", "x".repeat(2 << 20)).await;
    assert_eq!(
        (
            put.status().as_u16(),
            unsigned.status().as_u16(),
            huge.status().as_u16()
        ),
        (405, 401, 413)
    );
    let ids: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("select id, method from raw_callbacks order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 3, "each request is kept");

    let mut codes = Vec::new();
    for (id, _) in &ids {
        let answer = post_as(&app, &format!("/v1/refused/{id}/reprocess"), FULL_TOKEN).await;
        assert_eq!(answer.status(), 409);
        let body: Value = answer.json().await.unwrap();
        codes.push(body["error"]["code"].as_str().unwrap().to_owned());
    }
    let all: Value = post_as(&app, "/v1/refused/reprocess", FULL_TOKEN)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        codes,
        ["wrong_method", "signature_refused", "body_truncated"]
    );
    assert_eq!(
        all["results"],
        json!([]),
        "reprocess-all takes none of them"
    );
    let cdrs: i64 = sqlx::query_scalar("select count(*) from cdrs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cdrs, 0, "no forged CDR became billing data");
    let listed: Value = app
        .client
        .get(app.url("/v1/refused"))
        .bearer_auth(FULL_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["callbacks"].as_array().unwrap().len(),
        3,
        "still listed"
    );
}

/// A flood of unsigned junk in enforce mode, from many connections at once, while signed
/// callbacks keep coming: every signed one is kept and answered 200, every junk request is
/// answered 401 or (beyond the refusals' share of the queue) 503, never anything else.
#[sqlx::test]
async fn a_flood_of_junk_cannot_crowd_out_signed_callbacks(pool: PgPool) {
    let app = Arc::new(
        crate::helpers::spawn_app_with(pool.clone(), |c| {
            enforcing(c);
            c.ingest.max_queued_refusals = 8;
        })
        .await,
    );
    let mut flood = tokio::task::JoinSet::new();
    for sender in 0..32 {
        let app = app.clone();
        flood.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..60 {
                let response = app
                    .client
                    .post(app.url("/voicecall/status"))
                    .body(status_body(
                        "callout",
                        &format!("junk-{sender}-{n}"),
                        json!({}),
                    ))
                    .send()
                    .await
                    .unwrap();
                answers.push(response.status().as_u16());
            }
            answers
        });
    }
    let mut signed = Vec::new();
    for n in 0..50 {
        let signature = Signature::new(app.url("/voicecall/status"));
        let session = format!("real-{n}");
        let response = app
            .client
            .post(app.url("/voicecall/status"))
            .header(
                "authorization",
                r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#,
            )
            .header("x-aksk", signature.header())
            .body(status_body("callout", &session, json!({})))
            .send()
            .await
            .unwrap();
        signed.push(response.status().as_u16());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let junk: Vec<u16> = flood.join_all().await.into_iter().flatten().collect();
    app.projected().await;

    assert!(signed.iter().all(|s| *s == 200), "{signed:?}");
    assert!(junk.iter().all(|s| *s == 401 || *s == 503), "{junk:?}");
    let stored: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id like 'real-%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 50);
    let junk_rows: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id like 'junk-%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(junk_rows, 0);
    let kept_refusals: i64 =
        sqlx::query_scalar("select count(*) from raw_callbacks where outcome = 'unauthorized'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        kept_refusals,
        junk.iter().filter(|s| **s == 401).count() as i64,
        "every refusal answered 401 was kept; those answered 503 were not"
    );
}

/// Retention forgets refused, unauthorized and duplicate receipts past `retention.refused_days`,
/// in batches, and keeps every receipt that typed rows come from, however old.
#[sqlx::test]
async fn retention_forgets_old_refusals_and_keeps_what_rows_come_from(pool: PgPool) {
    let app = crate::helpers::spawn_app_with(pool.clone(), |_| {}).await;
    let body = status_body("callout", "kept-forever", json!({}));
    app.post("/voicecall/status", body.clone()).await; // stored
    app.post("/voicecall/status", body).await; // duplicate
    app.post("/voicecall/status", "not json").await; // rejected
    app.post(
        "/voicecall/status",
        status_body("callout", "recent", json!({})),
    )
    .await;
    // Everything but the last is 40 days old.
    sqlx::query(
        "update raw_callbacks set received_at = received_at - interval '40 days'
         where id <> (select id from raw_callbacks order by id desc limit 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let config = callhook::config::RetentionConfig {
        refused_days: 30,
        batch: 1,
    };

    let deleted = callhook::ingest::retention::purge(&pool, &config)
        .await
        .unwrap();

    assert_eq!(deleted, 2, "the old duplicate and the old rejected request");
    let left: Vec<String> = sqlx::query_scalar("select outcome from raw_callbacks order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["stored", "stored"]);
}

/// Hundreds of connections that never finish their headers neither block real callbacks nor
/// stay open: each is closed after `http.header_read_timeout_ms`.
#[sqlx::test]
async fn slow_connections_that_never_finish_their_headers_are_dropped(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(pool.clone(), |c| {
        c.http.header_read_timeout_ms = 500;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"POST /voicecall/status HTTP/1.1\r\nHost: callhook\r\nContent-Le")
            .await
            .unwrap();
        slow.push(stream);
    }

    let answer = app
        .post(
            "/voicecall/status",
            status_body("callout", "amid-slow", json!({})),
        )
        .await;
    assert_eq!(answer.status(), 200);

    for mut stream in slow {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("the server closes the connection within the header timeout");
        // Closed (0), reset, or a 408 before closing: anything but a connection left open.
        if let Ok(n) = read
            && n > 0
        {
            assert!(
                String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408"),
                "{}",
                String::from_utf8_lossy(&buffer[..n])
            );
        }
    }
}
