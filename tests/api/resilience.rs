//! Failure paths: the database going away, and shutting down with requests in flight.

use std::time::Duration;

use callhook::{config::Config, store};
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{ChaosProxy, fee_body, json, spawn_app, spawn_app_with, status_body};

/// With the database unreachable nothing is acknowledged or half-written: 503 + Retry-After;
/// once it is back, the platform's re-push is stored.
#[sqlx::test]
async fn a_database_outage_answers_503_and_recovers(pool: PgPool) {
    let options = (*pool.connect_options()).clone();
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = ChaosProxy::start(
        tokio::net::lookup_host(upstream)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await;
    let mut database = Config::defaults().database;
    database.acquire_timeout_ms = 1000;
    let proxied = store::pool_options(&database)
        .connect_with(options.host("127.0.0.1").port(proxy.addr.port()))
        .await
        .unwrap();
    let app = spawn_app_with(proxied, |config| config.http.retry_after_secs = 7).await;
    let batch = fee_body("outage", 5);
    assert_eq!(
        app.post(
            "/voicecall/status",
            status_body("answer", "before", json!({}))
        )
        .await
        .status(),
        200
    );

    proxy.set_down(true);
    let during = app.post("/voicecall/fee", batch.clone()).await;
    let during_status = during.status();
    let retry_after = during.headers().get("retry-after").cloned();
    let during_body = json(during).await;
    proxy.set_down(false);
    let after = app.post("/voicecall/fee", batch).await;

    assert_eq!(during_status, 503);
    assert_eq!(retry_after.unwrap(), "7");
    assert_eq!(during_body["error"]["code"], "database_unavailable");
    assert_eq!(after.status(), 200);
    assert_eq!(after.headers()["x-callhook-outcome"], "stored");
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
    assert_eq!(
        count("raw_callbacks").await,
        2,
        "the refused delivery left no row behind"
    );
}

/// A request whose body is still arriving when shutdown starts is finished, committed and
/// acknowledged before the server exits.
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
    let stored: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id = 'in-flight'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}
