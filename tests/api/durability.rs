//! Durable receipt first, projection after: what a 200 promises when the database blinks, when
//! the process is killed, when the spool is damaged or full, and with two replicas.

use std::{collections::HashSet, path::Path, sync::Arc, time::Duration};

use callhook::store;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::helpers::{
    ChaosProxy, Signature, TestApp, database_url, fee_body, json, spawn_app_with, spawn_binary,
    status_body, temp_spool_dir, wait_for_projection, wait_until_healthy, with_test_app,
};

async fn proxied(pool: &PgPool) -> (ChaosProxy, PgPool) {
    ChaosProxy::in_front_of(pool, 500).await
}

fn proxied_url(pool: &PgPool, proxy: &ChaosProxy) -> String {
    let mut url = reqwest::Url::parse(&database_url(pool)).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.to_string()
}

async fn post_status(app: &TestApp, session: &str) -> reqwest::Response {
    app.client
        .post(app.url("/voicecall/status"))
        .body(status_body("answer", session, json!({})))
        .send()
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The database is unreachable for seconds while status and fee callbacks keep coming: none is
/// answered 5xx, and every one answered 200 is in call_events / cdrs exactly once after the
/// database is back, in a calls row.
#[sqlx::test]
async fn an_outage_under_load_loses_and_doubles_nothing(pool: PgPool) {
    let (proxy, through) = proxied(&pool).await;
    let app = Arc::new(
        spawn_app_with(through, |c| {
            c.ingest.commit_timeout_ms = 300;
        })
        .await,
    );
    let acknowledged = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let (app, acknowledged, stop) = (app.clone(), acknowledged.clone(), stop.clone());
        senders.spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let session = format!("outage-{sender}-{n}");
                let fee = n % 5 == 0;
                let response = if fee {
                    app.client
                        .post(app.url("/voicecall/fee"))
                        .body(fee_body(&session, 3))
                        .send()
                        .await
                        .unwrap()
                } else {
                    post_status(&app, &session).await
                };
                assert!(
                    !response.status().is_server_error(),
                    "{session}: {}",
                    response.status()
                );
                let mut done = acknowledged.lock().await;
                if fee {
                    done.1.push(session);
                } else {
                    done.0.push(session);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.set_down(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    senders.join_all().await;
    wait_for_projection(&pool, Some(&app.spool_dir)).await;

    let (statuses, fees) = acknowledged.lock().await.clone();
    assert!(statuses.len() > 50, "the load ran: {}", statuses.len());
    let events: Vec<String> = sqlx::query_scalar("select session_id from call_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let event_set: HashSet<&String> = events.iter().collect();
    assert_eq!(event_set.len(), events.len(), "no status event twice");
    assert_eq!(
        event_set,
        statuses.iter().collect(),
        "every acknowledged status event"
    );
    let cdrs = count(&pool, "select count(*) from cdrs").await;
    assert_eq!(
        cdrs,
        fees.len() as i64 * 3,
        "every CDR of every acknowledged fee list, once"
    );
    let calls = count(&pool, "select count(*) from calls").await;
    assert_eq!(calls, (statuses.len() + fees.len() * 3) as i64);
    let spooled = count(&pool, "select count(*) from raw_callbacks").await;
    assert_eq!(
        spooled,
        (statuses.len() + fees.len()) as i64,
        "one receipt per request"
    );
}

/// `callhook serve` starts and accepts callbacks while the database is down; /readyz says it
/// accepts into the spool; once the database is back everything is migrated and projected.
#[sqlx::test(migrations = false)]
async fn the_binary_starts_and_accepts_while_the_database_is_down(pool: PgPool) {
    let (proxy, _) = proxied(&pool).await;
    proxy.set_down(true);
    let url = proxied_url(&pool, &proxy);
    let spool = temp_spool_dir();
    let spool_env = spool.clone();
    let (_server, base) = spawn_binary(&pool, move |command| {
        command
            .env("DATABASE_URL", &url)
            .env("CALLHOOK_SPOOL__DIR", &spool_env);
    });
    wait_until_healthy(&base).await;
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready = json(ready).await;
    assert_eq!(ready["accepting"], "spool");
    for n in 0..20 {
        let response = client
            .post(format!("{base}/voicecall/status"))
            .body(status_body("callout", &format!("down-{n}"), json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-callhook-kept-in"], "spool");
    }

    proxy.set_down(false);
    wait_for_migrations(&pool).await;
    wait_for_projection(&pool, Some(&spool)).await;

    assert_eq!(count(&pool, "select count(*) from call_events").await, 20);
    assert_eq!(count(&pool, "select count(*) from calls").await, 20);
    let ready = json(client.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(ready["accepting"], "database");
    let _ = std::fs::remove_dir_all(spool);
}

async fn wait_for_migrations(pool: &PgPool) {
    for _ in 0..300 {
        if store::is_migrated(pool).await.unwrap_or(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not migrated within 15 s");
}

/// kill -9 with receipts in the spool, then again in the middle of draining them: after the
/// last restart each callback answered 200 is in call_events exactly once.
#[sqlx::test]
async fn kill_9_with_a_full_spool_and_while_draining_doubles_and_loses_nothing(pool: PgPool) {
    let (proxy, _) = proxied(&pool).await;
    let url = proxied_url(&pool, &proxy);
    let spool = temp_spool_dir();
    let start = |url: String, spool: std::path::PathBuf| {
        spawn_binary(&pool, move |command| {
            command
                .env("DATABASE_URL", &url)
                .env("CALLHOOK_SPOOL__DIR", &spool);
        })
    };
    proxy.set_down(true);
    let (mut server, base) = start(url.clone(), spool.clone());
    wait_until_healthy(&base).await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut sends = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let (client, base) = (client.clone(), base.clone());
        sends.spawn(async move {
            let mut done = Vec::new();
            for n in 0..250 {
                let session = format!("spooled-{sender}-{n}");
                let response = client
                    .post(format!("{base}/voicecall/status"))
                    .body(status_body("answer", &session, json!({})))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                done.push(session);
            }
            done
        });
    }
    for done in sends.join_all().await {
        acknowledged.extend(done);
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // (b) restart with a non-empty spool and the database back, (c) kill it while it drains.
    proxy.set_down(false);
    let (mut server, _) = start(url.clone(), spool.clone());
    for _ in 0..2000 {
        let kept = count(&pool, "select count(*) from raw_callbacks").await;
        if kept > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let (_server, base) = start(url, spool.clone());
    wait_until_healthy(&base).await;
    wait_for_projection(&pool, Some(&spool)).await;

    let events: Vec<String> = sqlx::query_scalar("select session_id from call_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let unique: HashSet<&String> = events.iter().collect();
    assert_eq!(unique.len(), events.len(), "no event twice");
    assert_eq!(
        unique,
        acknowledged.iter().collect(),
        "every acknowledged event"
    );
    assert_eq!(
        count(&pool, "select count(*) from raw_callbacks").await,
        acknowledged.len() as i64,
        "one receipt each"
    );
    let _ = std::fs::remove_dir_all(spool);
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

/// A torn and corrupted spool tail is found at start: the damaged bytes go aside (reported in
/// the log and in metrics), the intact receipts are drained, and the service starts.
#[sqlx::test]
async fn a_torn_spool_tail_is_moved_aside_and_the_rest_drained(pool: PgPool) {
    let (proxy, through) = proxied(&pool).await;
    let spool = temp_spool_dir();
    let spool_dir = spool.clone();
    proxy.set_down(true);
    // A directory the test chose outlives its app, so the next app can open it.
    let app = spawn_app_with(through.clone(), move |c| c.spool.dir = spool_dir).await;
    for n in 0..10 {
        assert_eq!(post_status(&app, &format!("torn-{n}")).await.status(), 200);
    }
    let kept_dir = app.spool_dir.clone();
    app.shutdown().await;
    let files = segments(&kept_dir);
    assert!(!files.is_empty(), "the receipts are in the spool");
    let last = files.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    // A record cut short (a crash mid-write), and after it garbage.
    let whole = bytes.len();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    std::fs::write(last, &bytes).unwrap();
    // Flip a bit inside the last whole record too: its checksum no longer matches.
    let mut corrupted = std::fs::read(last).unwrap();
    corrupted[whole - 3] ^= 0x40;
    std::fs::write(last, &corrupted).unwrap();

    proxy.set_down(false);
    let spool_dir = kept_dir.clone();
    let app = spawn_app_with(through, move |c| c.spool.dir = spool_dir).await;
    app.projected().await;

    let stored = count(&pool, "select count(*) from call_events").await;
    assert_eq!(
        stored, 9,
        "the intact receipts are drained; the corrupted last one is not"
    );
    let damaged: Vec<_> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".damaged"))
        .collect();
    assert_eq!(
        damaged.len(),
        1,
        "the damaged tail is kept aside for inspection"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("callhook_spool_damaged_bytes_total"),
        "reported in metrics"
    );
    assert_eq!(
        post_status(&app, "after").await.status(),
        200,
        "the service runs"
    );
    let _ = std::fs::remove_dir_all(spool);
}

/// With the database down and the spool at its bound, callbacks are answered 503 +
/// Retry-After, and nothing of those is written anywhere; those answered 200 all arrive.
#[sqlx::test]
async fn a_full_spool_answers_503_and_writes_nothing(pool: PgPool) {
    let (proxy, through) = proxied(&pool).await;
    proxy.set_down(true);
    let app = spawn_app_with(through, |c| {
        c.spool.segment_bytes = 4096;
        c.spool.max_bytes = 8192;
        c.http.retry_after_secs = 4;
    })
    .await;
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for n in 0..200 {
        let session = format!("full-{n}");
        let response = post_status(&app, &session).await;
        match response.status().as_u16() {
            200 => accepted.push(session),
            503 => {
                assert_eq!(response.headers()["retry-after"], "4");
                assert_eq!(json(response).await["error"]["code"], "spool_full");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused > 0 && !accepted.is_empty(),
        "{} accepted",
        accepted.len()
    );
    proxy.set_down(false);
    app.projected().await;
    let events: HashSet<String> = sqlx::query_scalar("select session_id from call_events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(events, accepted.into_iter().collect());
    assert_eq!(
        count(&pool, "select count(*) from raw_callbacks").await,
        events.len() as i64,
        "no receipt of a refused request"
    );
}

/// Two instances on one database project concurrently: every receipt is projected exactly
/// once, and each call's row counts its events right.
#[sqlx::test]
async fn two_instances_project_concurrently_exactly_once(pool: PgPool) {
    let first = Arc::new(spawn_app_with(pool.clone(), |_| {}).await);
    let second = Arc::new(spawn_app_with(pool.clone(), |_| {}).await);
    let mut sends = tokio::task::JoinSet::new();
    for sender in 0..16 {
        let app = if sender % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        sends.spawn(async move {
            for call in 0..10 {
                let session = format!("shared-{}", call % 5);
                for stage in ["callout", "alerting", "answer"] {
                    let body = status_body(
                        stage,
                        &session,
                        json!({"timestamp": format!("2026-11-24 06:{:02}:{:02}", sender, call)}),
                    );
                    let response = app
                        .client
                        .post(app.url("/voicecall/status"))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            }
        });
    }
    sends.join_all().await;
    wait_for_projection(&pool, None).await;

    // 16 senders × 10 calls × 3 stages, each distinct by its timestamp.
    assert_eq!(count(&pool, "select count(*) from call_events").await, 480);
    assert_eq!(
        count(
            &pool,
            "select count(*) from raw_callbacks where outcome = 'stored'"
        )
        .await,
        480
    );
    let events: Vec<(String, i32)> =
        sqlx::query_as("select session_id, events from calls order by session_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(String, i32)> = (0..5).map(|c| (format!("shared-{c}"), 96)).collect();
    assert_eq!(events, expected);
}

/// `callhook reproject --all` derives every row again from the receipts: the calls rows come
/// out identical, and nothing is doubled.
#[sqlx::test]
async fn reprojecting_everything_gives_identical_rows(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |_| {}).await;
    for call in 0..6 {
        let session = format!("again-{call}");
        for (stage, second) in [
            ("callout", 0),
            ("alerting", 3),
            ("answer", 8),
            ("disconnect", 40),
        ] {
            let extra = json!({
                "timestamp": format!("2026-11-24 06:00:{second:02}"),
                "stateCode": if stage == "disconnect" { json!(0) } else { json!(null) },
            });
            app.post("/voicecall/status", status_body(stage, &session, extra))
                .await;
        }
    }
    app.post("/voicecall/fee", fee_body("again", 6)).await;
    app.post("/voicecall/fee", fee_body("again", 6)).await;
    let snapshot = || async {
        let calls: Vec<String> = sqlx::query_scalar(
            // When and by which transaction a row was last written change with every write.
            "select (to_jsonb(c) - 'updated_at' - 'change_xid')::text from calls c order by session_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let events: Vec<String> = sqlx::query_scalar(
            "select (to_jsonb(e) - 'id')::text from call_events e order by fingerprint",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let cdrs: Vec<String> = sqlx::query_scalar(
            "select (to_jsonb(d) - 'id')::text from cdrs d order by session_id, dedup_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let outcomes: Vec<(String, Option<i32>)> =
            sqlx::query_as("select outcome, records_stored from raw_callbacks order by id")
                .fetch_all(&pool)
                .await
                .unwrap();
        (calls, events, cdrs, outcomes)
    };
    let before = snapshot().await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
        .args(["reproject", "--all"])
        .env("DATABASE_URL", database_url(&pool))
        .env("CALLHOOK_LOG__FILTER", "error")
        .output()
        .await
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("reprojected 26 receipts"), "{printed}");
    assert_eq!(snapshot().await, before);
    assert_eq!(before.0.len(), 6);
}

/// The projector computes a call's row from the facts it has just stored without reading them
/// back; recomputing every row from the stored facts alone gives the same rows. The calls have
/// events spread over several batches, an unreadable time, an event pushed twice in one batch,
/// two CDRs of one call (the latest end wins) and a re-pushed fee list.
#[sqlx::test]
async fn rows_from_the_held_facts_equal_rows_from_the_stored_ones(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |_| {}).await;
    let client = &app.client;
    for call in 0..4 {
        let session = format!("held-{call}");
        let mut sends = tokio::task::JoinSet::new();
        for (stage, at) in [
            ("callout", "2026-11-24 06:00:00"),
            ("alerting", "2026-11-24 06:00:03"),
            ("answer", "not a time"),
            ("disconnect", "2026-11-24 06:00:40"),
        ] {
            let body = status_body(stage, &session, json!({"timestamp": at, "stateCode": 0}));
            for _ in 0..2 {
                let (client, url, body) =
                    (client.clone(), app.url("/voicecall/status"), body.clone());
                sends.spawn(
                    async move { client.post(url).body(body).send().await.unwrap().status() },
                );
            }
        }
        for status in sends.join_all().await {
            assert_eq!(status, 200);
        }
    }
    let cdr = |icid: &str, end: &str| {
        json!({
            "direction": 0, "appKey": "app", "icid": icid, "sessionId": "held-0",
            "callerNum": "+8613800000001", "calleeNum": "+8613800000002",
            "callOutStartTime": "2026-11-24 06:00:00", "callOutAnswerTime": "2026-11-24 06:00:08",
            "callEndTime": end, "fwdUnaswRsn": 0, "ulFailReason": 0, "serviceType": "002"
        })
    };
    let two = json!({"eventType": "fee", "feeLst": [
        cdr("CAE-early", "2026-11-24 06:00:30"), cdr("CAE-late", "2026-11-24 06:00:41")
    ]})
    .to_string();
    app.post("/voicecall/fee", two).await;
    app.post("/voicecall/fee", fee_body("other", 4)).await;
    app.post("/voicecall/fee", fee_body("other", 4)).await;
    app.projected().await;

    let calls = || async {
        sqlx::query_scalar::<_, String>(
            "select (to_jsonb(c) - 'updated_at' - 'change_xid')::text from calls c order by session_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let projected = calls().await;
    let sessions: Vec<String> = sqlx::query_scalar("select session_id from calls")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    store::calls::refresh(&mut tx, &sessions, store::calls::Held::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(projected.len(), 8);
    assert_eq!(calls().await, projected);
    assert!(projected[0].contains("\"events\": 4"), "{}", projected[0]);
    assert!(
        projected[0].contains("06:00:41"),
        "the later CDR's end: {}",
        projected[0]
    );
}

/// Item 5 of the receipt issue: two legs whose disconnect bodies are byte-identical are two
/// events (their pushes carry different nonces); a replay of one push is a duplicate (observe)
/// or refused (enforce).
#[sqlx::test]
async fn identical_legs_are_two_events_and_a_replay_is_one(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), with_test_app).await;
    let body = status_body(
        "disconnect",
        "legs",
        json!({"partyType": "1", "stateCode": 0}),
    );
    let url = |path: &str| format!("http://{}{path}", app.addr);
    let first = Signature::new(url("/voicecall/status"));
    let second = Signature::new(url("/voicecall/status"));

    for signature in [&first, &second, &first] {
        let response = app
            .post_signed("/voicecall/status", body.clone(), signature)
            .await;
        assert_eq!(response.status(), 200);
    }

    assert_eq!(count(&pool, "select count(*) from call_events").await, 2);
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("select outcome, signature_verdict from raw_callbacks order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        outcomes,
        [
            ("stored".into(), "valid".into()),
            ("stored".into(), "valid".into()),
            ("duplicate".into(), "replayed".into()),
        ]
    );
    assert_eq!(
        count(
            &pool,
            "select events::bigint from calls where session_id = 'legs'"
        )
        .await,
        2
    );

    let enforcing = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = callhook::config::SignatureMode::Enforce;
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let signed = Signature::new(format!("http://{}/voicecall/status", enforcing.addr));
    let once = enforcing
        .post_signed("/voicecall/status", body.clone(), &signed)
        .await;
    let replay = enforcing
        .post_signed("/voicecall/status", body, &signed)
        .await;
    assert_eq!(
        (once.status().as_u16(), replay.status().as_u16()),
        (200, 401)
    );
    assert_eq!(json(replay).await["error"]["code"], "signature_replayed");
}
