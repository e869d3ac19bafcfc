//! The call log (`calls`): one row per call, the same whatever order its facts arrive in.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const A: &str = "+8613800000001";
const B: &str = "+8613800000002";
const DISPLAY: &str = "+867550000001";

fn event(session: &str, event_type: &str, at: &str, called: &str, extra: Value) -> String {
    let mut info = json!({"sessionId": session, "timestamp": at, "caller": DISPLAY, "called": called, "userData": "order-7"});
    info.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"eventType": event_type, "statusInfo": info}).to_string()
}

/// The facts of one answered click-to-call: A answers, then B, they talk 60 s, A hangs up, and
/// the CDR says the same.
fn click_to_call(session: &str) -> Vec<(&'static str, String)> {
    let cdr = json!({"eventType": "fee", "feeLst": [{
        "direction": 1, "spId": "sp", "appKey": "app", "icid": format!("icid-{session}"), "bindNum": DISPLAY,
        "sessionId": session, "callerNum": DISPLAY, "calleeNum": A, "fwdDisplayNum": DISPLAY, "fwdDstNum": B,
        "callOutStartTime": "2026-11-24 06:00:00", "callOutAlertingTime": "2026-11-24 06:00:02",
        "callOutAnswerTime": "2026-11-24 06:00:05", "fwdStartTime": "2026-11-24 06:00:06",
        "fwdAlertingTime": "2026-11-24 06:00:08", "fwdAnswerTime": "2026-11-24 06:00:10",
        "callEndTime": "2026-11-24 06:01:10", "fwdUnaswRsn": 0, "callOutUnaswRsn": 0, "ulFailReason": 0,
        "sipStatusCode": 0, "recordFlag": 0, "serviceType": "002", "userData": "order-7"
    }]});
    vec![
        (
            "/voicecall/status",
            event(session, "callout", "2026-11-24 06:00:00", A, json!({})),
        ),
        (
            "/voicecall/status",
            event(session, "answer", "2026-11-24 06:00:05", A, json!({})),
        ),
        (
            "/voicecall/status",
            event(session, "callout", "2026-11-24 06:00:06", B, json!({})),
        ),
        (
            "/voicecall/status",
            event(session, "answer", "2026-11-24 06:00:10", B, json!({})),
        ),
        (
            "/voicecall/status",
            event(
                session,
                "disconnect",
                "2026-11-24 06:01:10",
                A,
                json!({"stateCode": 0, "partyType": "1"}),
            ),
        ),
        ("/voicecall/fee", cdr.to_string()),
    ]
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

async fn deliver(app: &TestApp, facts: Vec<(&'static str, String)>, order: &[usize]) {
    for &i in order {
        let (path, body) = &facts[i];
        let response = app.post(path, body.clone()).await;
        assert_eq!(response.status(), 200, "fact {i} of order {order:?}");
    }
}

/// The row a call's facts make, without what depends on arrival (session id, times of receipt,
/// the transaction that wrote it last).
async fn call_rows(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar(
        "select to_jsonb(c) - 'session_id' - 'updated_at' - 'last_callback_at' - 'placed_call_id'
             - 'change_xid'
         from calls c order by session_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every one of the 720 orders of a click-to-call's five events and CDR gives the same row.
#[sqlx::test]
async fn every_order_of_a_calls_events_and_cdr_gives_the_same_row(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let orders = permutations(6);
    assert_eq!(orders.len(), 720);

    let mut deliveries = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for (n, order) in orders.into_iter().enumerate() {
        let app = app.clone();
        deliveries.spawn(async move {
            deliver(&app, click_to_call(&format!("perm-{n:03}")), &order).await
        });
        if deliveries.len() >= 8 {
            deliveries.join_next().await.unwrap().unwrap();
        }
    }
    deliveries.join_all().await;

    let rows = call_rows(&pool).await;
    assert_eq!(rows.len(), 720);
    let first = &rows[0];
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row, first, "order #{n} differs");
    }
    let expected = json!({
        "scenario": "click2call", "outcome": "answered", "caller": A, "callee": B, "display_number": DISPLAY,
        "app_key": "app", "user_data": "order-7", "ring_seconds": 2, "talk_seconds": 60, "state_code": 0,
        "state_meaning": "released normally after being connected", "party_type": "1", "q850_cause": 0,
        "ul_fail_reason": 0, "has_cdr": true, "events": 5,
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&first[key], value, "calls.{key}");
    }
    assert!(
        first["b_answer_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-24T06:00:10"),
        "{first}"
    );
    assert!(
        first["ended_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-24T06:01:10"),
        "{first}"
    );
}

/// A call that has begun but not ended is in progress, and its CDR arriving first still ends it.
#[sqlx::test]
async fn a_call_is_in_progress_until_it_ends(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let facts = click_to_call("progress");

    deliver(&app, facts.clone(), &[0, 1]).await;
    let during: String = sqlx::query_scalar("select outcome from calls")
        .fetch_one(&pool)
        .await
        .unwrap();
    deliver(&app, facts, &[5]).await;
    let after: (String, bool) = sqlx::query_as("select outcome, has_cdr from calls")
        .fetch_one(&pool)
        .await
        .unwrap();

    assert_eq!(during, "in_progress");
    assert_eq!(after, ("answered".into(), true));
}

/// Failures are decoded: a busy callee gets its outcome and the meanings of its codes.
#[sqlx::test]
async fn a_busy_callee_is_decoded(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let session = "busy-1";
    let cdr = json!({"eventType": "fee", "feeLst": [{
        "sessionId": session, "icid": "i-busy", "serviceType": "002", "fwdDstNum": B, "calleeNum": A,
        "callOutStartTime": "2026-11-24 06:00:00", "callOutAnswerTime": "2026-11-24 06:00:05",
        "fwdAlertingTime": "2026-11-24 06:00:08", "callEndTime": "2026-11-24 06:00:30",
        "fwdUnaswRsn": 17, "ulFailReason": 518, "sipStatusCode": 486
    }]});

    app.post(
        "/voicecall/status",
        event(
            session,
            "disconnect",
            "2026-11-24 06:00:30",
            B,
            json!({"stateCode": 8102}),
        ),
    )
    .await;
    app.post("/voicecall/fee", cdr.to_string()).await;

    let row: (String, i32, String, i32, String, i32, String, i32) = sqlx::query_as(
        "select outcome, state_code, state_meaning, q850_cause, q850_meaning, ul_fail_reason, ul_fail_meaning, talk_seconds
         from calls",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "busy".into(),
            8102,
            "called party busy".into(),
            17,
            "user busy".into(),
            518,
            "remote user call failed (see the Q.850 cause)".into(),
            0
        )
    );
}

/// The code tables are in Postgres too, copied from the code on start.
#[sqlx::test]
async fn the_code_tables_are_queryable(pool: PgPool) {
    let _app = spawn_app(pool.clone()).await;

    let decoded: (String, String, String, String) = sqlx::query_as(
        "select (select meaning from state_codes where code = 8101),
                (select label_zh from q850_causes where code = 17),
                (select meaning from ul_fail_reasons where 514 between code_from and code_to order by code_to - code_from limit 1),
                (select text from result_codes where code = '1010010')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(decoded.0, "called party did not answer");
    assert_eq!(decoded.1, "用户忙");
    assert_eq!(decoded.2, "ringing timeout");
    assert!(decoded.3.starts_with("The flow control"), "{}", decoded.3);
}

/// Facts of one call committed by different writers at the same moment all count: each writer
/// waits for the call's lock and recomputes the row from what the other committed, so no fact
/// is lost to a concurrent recomputation.
#[sqlx::test]
async fn facts_of_one_call_committed_concurrently_all_count(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |config| {
        // Every request its own transaction, several at once.
        config.ingest.writers = 6;
        config.ingest.max_batch = 1;
    })
    .await;
    let app = std::sync::Arc::new(app);
    let mut deliveries = tokio::task::JoinSet::new();
    for n in 0..30 {
        for (path, body) in click_to_call(&format!("race-{n:02}")) {
            let app = app.clone();
            deliveries.spawn(async move {
                let response = app.post(path, body).await;
                assert_eq!(response.status(), 200);
            });
        }
    }
    deliveries.join_all().await;

    let rows = call_rows(&pool).await;
    assert_eq!(rows.len(), 30);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row["events"], 5, "call {n}: {row}");
        assert_eq!(row["has_cdr"], true, "call {n}: {row}");
        assert_eq!(row["outcome"], "answered", "call {n}: {row}");
        assert_eq!(row["talk_seconds"], 60, "call {n}: {row}");
        assert_eq!(row, &rows[0], "call {n} differs");
    }
}
