//! Failure paths: the database going away, and shutting down with requests in flight.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    ChaosProxy, callback_id, fee_body, json, spawn_app, spawn_app_with, status_body,
    wait_for_projection,
};

/// With the database unreachable a callback is still acknowledged, from the local spool (200,
/// kept in `spool`); once the database is back it is drained and stored, and the platform's
/// re-push of it is a duplicate: stored exactly once, nothing half-written.
#[sqlx::test]
async fn a_database_outage_is_acknowledged_from_the_spool_and_stored_once_after(pool: PgPool) {
    let (proxy, proxied) = ChaosProxy::in_front_of(&pool, 1000).await;
    let app = spawn_app_with(proxied, |_| {}).await;
    let batch = fee_body("outage", 5);
    let before = app
        .post(
            "/voicecall/status",
            status_body("answer", "before", json!({})),
        )
        .await;
    assert_eq!(before.status(), 200);
    assert_eq!(before.headers()["x-callhook-kept-in"], "database");

    proxy.set_down(true);
    // Sent with the bare client: `app.post` would wait for projection through the proxy, which
    // is down.
    let during = app
        .client
        .post(app.url("/voicecall/fee"))
        .header("content-type", "application/json;charset=UTF-8")
        .body(batch.clone())
        .send()
        .await
        .expect("request is sent");
    let during_status = during.status();
    let during_kept_in = during.headers().get("x-callhook-kept-in").cloned();
    let during_id = callback_id(&during);
    let during_body = json(during).await;
    proxy.set_down(false);
    // Waits on the test's own pool (not through the proxy) for the spool to drain and the
    // receipts to be projected.
    wait_for_projection(&pool, Some(&app.spool_dir)).await;
    let after = app.post("/voicecall/fee", batch).await;

    assert_eq!(during_status, 200, "{during_body}");
    assert_eq!(
        during_body,
        json!({"resultcode": "0", "resultdesc": "Success"})
    );
    assert_eq!(during_kept_in.unwrap(), "spool");
    assert_eq!(after.status(), 200);
    let outcome = |id: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("select outcome from raw_callbacks where id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("the receipt is in the database")
        }
    };
    assert_eq!(outcome(during_id).await, "stored", "the spooled delivery");
    assert_eq!(
        outcome(callback_id(&after)).await,
        "duplicate",
        "the re-push"
    );
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let sql = format!("select count(*) from {table}");
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("cdrs").await, 5);
    assert_eq!(count("call_events").await, 1);
    assert_eq!(
        count("raw_callbacks").await,
        3,
        "one receipt per delivery, the spooled one drained once"
    );
}

/// A request whose body is still arriving when shutdown starts is finished, its receipt
/// committed, and acknowledged before the server exits; its rows are derived from that receipt,
/// by the next start if this one stopped before projecting it.
#[sqlx::test]
async fn shutdown_finishes_requests_in_flight(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let body = status_body("disconnect", "in-flight", json!({"stateCode": 0}));
    let (head, tail) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request_head = format!(
        "POST /voicecall/status HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    stream.write_all(request_head.as_bytes()).await.unwrap();
    stream.write_all(head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let shutdown = tokio::spawn(app.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(tail).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    shutdown.await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let kept: Vec<(Vec<u8>, String)> = sqlx::query_as("select body, outcome from raw_callbacks")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the receipt is committed before the exit");
    assert_eq!(kept[0].0, body.as_bytes());
    assert!(
        ["received", "stored"].contains(&kept[0].1.as_str()),
        "accepted, projected or not yet: {}",
        kept[0].1
    );
    let restarted = spawn_app(pool.clone()).await;
    restarted.projected().await;
    let stored: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id = 'in-flight'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}
