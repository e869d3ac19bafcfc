//! Group commit under pressure: a full queue refuses at once, a bad request never fails its
//! group, a kill -9 under load loses nothing that was acknowledged, and SIGTERM stops cleanly.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use callhook::{
    ingest::projector,
    platform::signature::Verdict,
    store::raw::{self, Receipt, ReceiptOutcome},
};
use serde_json::json;
use sqlx::{Connection, PgPool};
use time::OffsetDateTime;

use crate::helpers::{
    spawn_app_with, spawn_binary, status_body, temp_spool_dir, wait_for_projection,
    wait_until_healthy,
};

fn receipt(body: String) -> Receipt {
    Receipt {
        id: uuid::Uuid::now_v7(),
        received_at: OffsetDateTime::now_utc(),
        endpoint: "status",
        method: "POST".into(),
        path: "/voicecall/status".into(),
        peer_addr: None,
        headers: json!({}),
        body: Bytes::from(body),
        body_truncated: false,
        event_type: None,
        app_key: None,
        nonce: None,
        signature_verdict: Verdict::NotChecked,
        request_id: None,
        outcome: ReceiptOutcome::Received,
        http_status: 200,
        error: None,
    }
}

const BATCH: projector::Batch = projector::Batch {
    receipts: 512,
    bytes: 1 << 20,
};

/// Keeps receipts as the receiver does, then projects them as the projector does.
async fn keep_and_project(pool: &PgPool, receipts: &[Receipt]) -> Vec<(String, Option<String>)> {
    let mut connection = pool.acquire().await.unwrap();
    let refs: Vec<&Receipt> = receipts.iter().collect();
    raw::insert(&mut connection, &refs).await.unwrap();
    let claimed = projector::project_next(pool, BATCH).await.unwrap();
    assert_eq!(claimed, receipts.len());
    sqlx::query_as("select outcome, error->>'code' from raw_callbacks order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A receipt today's parser refuses (here a NUL, which PostgreSQL could not store) costs only
/// that receipt: it is kept as rejected with the field named, the others are projected.
#[sqlx::test]
async fn one_refused_receipt_never_fails_the_others_in_its_batch(pool: PgPool) {
    let receipts = [
        receipt(status_body("answer", "good-1", json!({}))),
        receipt(status_body("answer", "bad", json!({"caller": "+86\u{0}1"}))),
        receipt(status_body("answer", "good-2", json!({}))),
    ];

    let outcomes = keep_and_project(&pool, &receipts).await;

    assert_eq!(
        outcomes,
        [
            ("stored".to_owned(), None),
            ("rejected".to_owned(), Some("invalid_field".to_owned())),
            ("stored".to_owned(), None),
        ]
    );
    let sessions: Vec<String> =
        sqlx::query_scalar("select session_id from call_events order by session_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sessions, ["good-1", "good-2"]);
}

/// Receipts projected in one batch each get their own outcome; of two carrying one event, the
/// first stored it.
#[sqlx::test]
async fn a_batch_projects_each_receipt_with_its_own_outcome(pool: PgPool) {
    let repeated = status_body("answer", "twice", json!({}));
    let receipts = [
        receipt(repeated.clone()),
        receipt(status_body("callout", "other", json!({}))),
        receipt(repeated),
    ];

    let outcomes = keep_and_project(&pool, &receipts).await;

    let outcomes: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["stored", "stored", "duplicate"]);
    assert_eq!(
        projector::project_next(&pool, BATCH).await.unwrap(),
        0,
        "nothing left to project"
    );
}

/// With the writer stuck and the queue full, a new callback is answered 503 + Retry-After at
/// once, and nothing of it is written; the queued ones complete once the writer is free.
#[sqlx::test]
async fn a_full_queue_answers_503_at_once(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.ingest.writers = 1;
        c.ingest.queue_capacity = 1;
        c.ingest.max_queued_refusals = 1;
        c.http.retry_after_secs = 3;
        // The writer must wait for the lock below, not give up and spool.
        c.ingest.commit_timeout_ms = 60_000;
    })
    .await;
    // Lock raw_callbacks so the writer waits inside its INSERT.
    let mut blocker = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("lock table raw_callbacks in exclusive mode")
        .execute(&mut *held)
        .await
        .unwrap();
    let send = |session: &'static str| {
        let (client, url) = (app.client.clone(), app.url("/voicecall/status"));
        tokio::spawn(async move {
            client
                .post(url)
                .body(status_body("answer", session, json!({})))
                .send()
                .await
                .unwrap()
        })
    };

    let stuck = send("stuck");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = send("queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = send("refused").await.unwrap();
    let refused_status = refused.status();
    let retry_after = refused.headers().get("retry-after").cloned();
    let body: serde_json::Value = refused.json().await.unwrap();
    held.rollback().await.unwrap();
    let (stuck, queued) = (stuck.await.unwrap(), queued.await.unwrap());
    app.projected().await;

    assert_eq!(refused_status, 503);
    assert_eq!(retry_after.unwrap(), "3");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(
        (stuck.status().as_u16(), queued.status().as_u16()),
        (200, 200)
    );
    let sessions: Vec<String> =
        sqlx::query_scalar("select session_id from call_events order by session_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sessions, ["queued", "stuck"]);
    let raw: i64 = sqlx::query_scalar("select count(*) from raw_callbacks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw, 2, "the refused request left nothing behind");
}

/// The real binary, killed with SIGKILL under load (so receipts are committed and not yet
/// projected, and projections are mid-transaction): after a restart on the same spool, every
/// callback it answered 200 is in call_events exactly once, with its calls row, and none it
/// answered 503 was written at all.
#[sqlx::test]
async fn a_kill_under_load_loses_no_acknowledged_callback(pool: PgPool) {
    let spool = temp_spool_dir();
    let spool_env = spool.clone();
    let (mut server, base) = spawn_binary(&pool, move |command| {
        command
            .env("CALLHOOK_INGEST__QUEUE_CAPACITY", "16")
            .env("CALLHOOK_INGEST__MAX_QUEUED_REFUSALS", "4")
            .env("CALLHOOK_SPOOL__DIR", &spool_env);
    });
    wait_until_healthy(&base).await;
    let client = reqwest::Client::new();

    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let overloaded = Arc::new(Mutex::new(HashSet::new()));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..32 {
        let (client, url) = (client.clone(), format!("{base}/voicecall/status"));
        let (acknowledged, overloaded) = (acknowledged.clone(), overloaded.clone());
        senders.spawn(async move {
            for n in 0.. {
                let session = format!("kill-{sender}-{n}");
                let Ok(response) = client
                    .post(&url)
                    .body(status_body("answer", &session, json!({})))
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                match response.status().as_u16() {
                    200 => acknowledged.lock().unwrap().insert(session),
                    503 => overloaded.lock().unwrap().insert(session),
                    other => panic!("unexpected {other}"),
                };
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_kill().expect("SIGKILL");
    server.wait().await.unwrap();
    senders.join_all().await;

    let spool_env = spool.clone();
    let (_restarted, base) = spawn_binary(&pool, move |command| {
        command.env("CALLHOOK_SPOOL__DIR", &spool_env);
    });
    wait_until_healthy(&base).await;
    wait_for_projection(&pool, Some(&spool)).await;

    let acknowledged = acknowledged.lock().unwrap().clone();
    let overloaded = overloaded.lock().unwrap().clone();
    let stored_list: Vec<String> = sqlx::query_scalar(
        "select e.session_id from call_events e join raw_callbacks r on r.id = e.raw_callback_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: HashSet<String> = stored_list.iter().cloned().collect();
    assert_eq!(
        stored.len(),
        stored_list.len(),
        "every event stored exactly once"
    );
    let calls: HashSet<String> = sqlx::query_scalar("select session_id from calls")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        acknowledged.len() > 100,
        "the load ran: {} acknowledged",
        acknowledged.len()
    );
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(
        acknowledged.is_subset(&calls),
        "every acknowledged call has its calls row"
    );
    let half_written: Vec<_> = overloaded.intersection(&stored).collect();
    assert!(
        half_written.is_empty(),
        "answered 503 but written: {half_written:?}"
    );
    let _ = std::fs::remove_dir_all(spool);
}

/// SIGTERM (what container runtimes send) stops the real binary cleanly: it exits with
/// success, and what it acknowledged before is stored.
#[sqlx::test]
async fn sigterm_stops_the_binary_cleanly(pool: PgPool) {
    let (mut server, base) = spawn_binary(&pool, |_| {});
    wait_until_healthy(&base).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/voicecall/status"))
        .body(status_body("answer", "before-sigterm", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let pid = server.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops within http.shutdown_timeout_ms")
        .unwrap();

    assert!(sent.success());
    assert!(exit.success(), "{exit:?}");
    let (_restarted, base) = spawn_binary(&pool, |_| {});
    wait_until_healthy(&base).await;
    wait_for_projection(&pool, None).await;
    let stored: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id = 'before-sigterm'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}

/// A batch stops once its bodies reach `projector.batch_bytes` (but takes at least one), so a
/// backlog of large fee lists is projected in transactions of bounded size.
#[sqlx::test]
async fn a_batch_is_bounded_by_the_bytes_of_its_bodies(pool: PgPool) {
    let big = |session: &str| {
        receipt(status_body(
            "callout",
            session,
            json!({"padding": "x".repeat(600 << 10)}),
        ))
    };
    let receipts = [big("big-1"), big("big-2"), big("big-3")];
    let mut connection = pool.acquire().await.unwrap();
    let refs: Vec<&Receipt> = receipts.iter().collect();
    raw::insert(&mut connection, &refs).await.unwrap();

    let claimed: Vec<usize> = [
        projector::project_next(&pool, BATCH).await.unwrap(),
        projector::project_next(&pool, BATCH).await.unwrap(),
        projector::project_next(&pool, BATCH).await.unwrap(),
    ]
    .into();

    // 0 + 600 KiB < 1 MiB: two in the first batch; the third starts the next one.
    assert_eq!(claimed, [2, 1, 0]);
}
