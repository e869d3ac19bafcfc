//! Group commit under pressure: a full queue refuses at once, a bad request never fails its
//! group, a kill -9 under load loses nothing that was acknowledged, and SIGTERM stops cleanly.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use callhook::{
    ingest::{self, Failure, Ingested, Job},
    platform::{
        callback::{Callback, parse_callback},
        signature::Verdict,
    },
    store::raw::{Outcome, RawCallback},
};
use serde_json::json;
use sqlx::{Connection, PgPool};
use time::OffsetDateTime;

use crate::helpers::{spawn_app_with, spawn_binary, status_body, wait_until_healthy};

fn job(body: String) -> Job {
    let body = Bytes::from(body);
    let callback = parse_callback(&body).result.expect("a valid callback");
    Job {
        raw: RawCallback {
            id: uuid::Uuid::now_v7(),
            received_at: OffsetDateTime::now_utc(),
            endpoint: "status",
            method: "POST".into(),
            path: "/voicecall/status".into(),
            peer_addr: None,
            headers: json!({}),
            body,
            body_truncated: false,
            event_type: None,
            app_key: None,
            signature_verdict: Verdict::NotChecked,
            request_id: None,
        },
        callback,
        nonce: None,
        refuse_replays: false,
    }
}

/// A value Postgres refuses in one request of a group costs only that request.
#[sqlx::test]
async fn one_bad_request_never_fails_the_others_in_its_group(pool: PgPool) {
    // The parser refuses a NUL (PostgreSQL cannot store one), so the bad value is put into
    // the typed event after parsing: the group must survive whatever reaches it.
    let mut bad = job(status_body("answer", "bad", json!({})));
    if let Callback::Status(event) = &mut bad.callback {
        event.info.caller = Some("+86\u{0}1".into());
    }
    let jobs = vec![
        job(status_body("answer", "good-1", json!({}))),
        bad,
        job(status_body("answer", "good-2", json!({}))),
    ];
    let mut connection = pool.acquire().await.unwrap();

    let results = ingest::commit(&mut connection, jobs).await;

    let outcomes: Vec<_> = results.iter().map(|(_, result)| result.clone()).collect();
    let stored = Ok(Ingested::Committed {
        outcome: Outcome::Stored,
        records: None,
    });
    assert_eq!(outcomes, [stored.clone(), Err(Failure::Refused), stored]);
    let sessions: Vec<String> =
        sqlx::query_scalar("select session_id from call_events order by session_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sessions, ["good-1", "good-2"]);
}

/// Requests that share a group are stored together, each with its own outcome.
#[sqlx::test]
async fn a_group_stores_each_request_with_its_own_outcome(pool: PgPool) {
    let repeated = status_body("answer", "twice", json!({}));
    let jobs = vec![
        job(repeated.clone()),
        job(status_body("callout", "other", json!({}))),
        job(repeated),
    ];
    let mut connection = pool.acquire().await.unwrap();

    let results = ingest::commit(&mut connection, jobs).await;

    let outcomes: Vec<Outcome> = results
        .iter()
        .map(|(_, result)| match result {
            Ok(Ingested::Committed { outcome, .. }) => *outcome,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [Outcome::Stored, Outcome::Stored, Outcome::Duplicate]
    );
    let raw: i64 = sqlx::query_scalar("select count(*) from raw_callbacks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw, 3);
}

/// With the writer stuck and the queue full, a new callback is answered 503 + Retry-After at
/// once, and nothing of it is written; the queued ones complete once the writer is free.
#[sqlx::test]
async fn a_full_queue_answers_503_at_once(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.ingest.writers = 1;
        c.ingest.queue_capacity = 1;
        c.http.retry_after_secs = 3;
    })
    .await;
    // Hold the call row of "stuck" so the writer waits inside its transaction.
    let mut blocker = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("insert into calls (session_id, scenario, outcome, has_cdr, events, last_callback_at, updated_at)
                 values ('stuck', 'unknown', 'in_progress', false, 0, now(), now())")
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

/// The real binary, killed with SIGKILL under load: every callback it answered 200 is in the
/// database with its raw row, and none it answered 503 was written at all.
#[sqlx::test]
async fn a_kill_under_load_loses_no_acknowledged_callback(pool: PgPool) {
    let (mut server, base) = spawn_binary(&pool, |command| {
        command.env("CALLHOOK_INGEST__QUEUE_CAPACITY", "16");
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

    let acknowledged = acknowledged.lock().unwrap().clone();
    let overloaded = overloaded.lock().unwrap().clone();
    let stored: HashSet<String> = sqlx::query_scalar(
        "select e.session_id from call_events e join raw_callbacks r on r.id = e.raw_callback_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
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
    let stored: i64 =
        sqlx::query_scalar("select count(*) from call_events where session_id = 'before-sigterm'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}
