//! Status events: every type stored once, with every field, and redeliveries recognised.

use serde_json::{Value, json};
use sqlx::PgPool;
use time::macros::datetime;

use crate::helpers::{CALLOUT_SAMPLE, answered_outcome, json, spawn_app, status_body};

/// The platform's own callout sample is stored with its fields; it is acknowledged once its
/// receipt is committed, and its rows are derived from that receipt.
#[sqlx::test]
async fn the_platform_callout_sample_is_stored(pool: PgPool) {
    let app = spawn_app(pool).await;

    let response = app.post("/voicecall/status", CALLOUT_SAMPLE).await;

    assert_eq!(response.status(), 200);
    assert_eq!(answered_outcome(&response).as_deref(), Some("accepted"));
    assert_eq!(response.headers()["x-callhook-kept-in"], "database");
    assert_eq!(app.kept_outcome(&response).await, "stored");
    assert_eq!(
        json(response).await,
        json!({"resultcode": "0", "resultdesc": "Success"})
    );
    let row: (
        String,
        String,
        Option<time::OffsetDateTime>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "select event_type, session_id, event_at, caller, called, user_data from call_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "callout".into(),
            "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com".into(),
            Some(datetime!(2019-01-24 03:04:24 UTC)),
            Some("+86138*******2".into()),
            Some("+86138*******1".into()),
            Some("customerId123".into()),
        )
    );
    let raw: (String, Vec<u8>, String) =
        sqlx::query_as("select outcome, body, endpoint from raw_callbacks")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        raw,
        (
            "stored".into(),
            CALLOUT_SAMPLE.as_bytes().to_vec(),
            "status".into()
        )
    );
}

/// Each event type keeps the fields that belong to it.
#[sqlx::test]
async fn every_status_event_type_is_stored_with_its_fields(pool: PgPool) {
    let app = spawn_app(pool).await;
    let cases = [
        ("callout", json!({})),
        ("alerting", json!({"timestamp": "2026-11-24 06:00:02"})),
        (
            "answer",
            json!({"timestamp": "2026-11-24 06:00:05", "userData": "order-42"}),
        ),
        (
            "collectInfo",
            json!({"timestamp": "2026-11-24 06:00:09", "digitInfo": "1"}),
        ),
        (
            "disconnect",
            json!({"timestamp": "2026-11-24 06:01:00", "stateCode": 0, "stateDesc": "The user releases the call.", "partyType": 1}),
        ),
    ];

    for (event_type, fields) in &cases {
        let response = app
            .post(
                "/voicecall/status",
                status_body(event_type, "s-1", fields.clone()),
            )
            .await;
        assert_eq!(response.status(), 200, "case {event_type}");
    }

    let rows: Vec<(String, Option<String>, Option<String>, Option<i32>, Option<String>, Option<String>)> = sqlx::query_as(
        "select event_type, user_data, digit_info, state_code, state_desc, party_type from call_events order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        types,
        ["callout", "alerting", "answer", "collectInfo", "disconnect"]
    );
    assert_eq!(rows[2].1.as_deref(), Some("order-42"));
    assert_eq!(rows[3].2.as_deref(), Some("1"));
    assert_eq!(
        (rows[4].3, rows[4].4.as_deref(), rows[4].5.as_deref()),
        (Some(0), Some("The user releases the call."), Some("1"))
    );
}

/// The shared URL accepts status events too, and a status body on the fee URL is not lost.
#[sqlx::test]
async fn every_endpoint_dispatches_on_event_type(pool: PgPool) {
    let app = spawn_app(pool).await;

    for (path, session) in [
        ("/voicecall/events", "via-events"),
        ("/voicecall/fee", "via-fee"),
    ] {
        let response = app
            .post(path, status_body("answer", session, json!({})))
            .await;
        assert_eq!(response.status(), 200, "case {path}");
    }

    let endpoints: Vec<(String, String)> = sqlx::query_as(
        "select r.endpoint, e.session_id from call_events e join raw_callbacks r on r.id = e.raw_callback_id order by e.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        endpoints,
        [
            ("events".into(), "via-events".into()),
            ("fee".into(), "via-fee".into())
        ]
    );
}

/// A replayed event answers 200 but adds no second row; the replay is recorded as a duplicate.
#[sqlx::test]
async fn a_redelivered_status_event_is_stored_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = status_body("answer", "s-dup", json!({}));
    // Same content, other key order and spacing: still the same event.
    let reordered: Value = serde_json::from_str(&body).unwrap();
    let reordered = serde_json::to_string_pretty(&reordered).unwrap();

    let first = app.post("/voicecall/status", body.clone()).await;
    let second = app.post("/voicecall/status", body).await;
    let third = app.post("/voicecall/status", reordered).await;

    assert_eq!(app.kept_outcome(&first).await, "stored");
    for response in [first, second, third] {
        assert_eq!(response.status(), 200);
        assert_eq!(answered_outcome(&response).as_deref(), Some("accepted"));
    }
    assert_eq!(app.count("call_events").await, 1);
    let outcomes: Vec<String> = sqlx::query_scalar("select outcome from raw_callbacks order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(outcomes, ["stored", "duplicate", "duplicate"]);
}

/// Twenty concurrent deliveries of one event: all answered 200, exactly one row.
#[sqlx::test]
async fn concurrent_duplicate_deliveries_store_one_row(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = status_body("disconnect", "s-race", json!({"stateCode": 8001}));

    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/voicecall/status"),
            body.clone(),
        );
        deliveries.spawn(async move { client.post(url).body(body).send().await.unwrap().status() });
    }
    let statuses = deliveries.join_all().await;
    app.projected().await;

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.count("call_events").await, 1);
    let (stored, duplicate): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where outcome = 'stored'), count(*) filter (where outcome = 'duplicate')
         from raw_callbacks",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (stored, duplicate, app.count("raw_callbacks").await),
        (1, 19, 20)
    );
}

/// The two legs of a click-to-call share a sessionId and the same second, yet are two events.
#[sqlx::test]
async fn both_legs_of_a_click_to_call_are_kept(pool: PgPool) {
    let app = spawn_app(pool).await;
    let leg_a = status_body(
        "callout",
        "c2c-1",
        json!({"caller": "+8675500000000", "called": "+8613800000001"}),
    );
    let leg_b = status_body(
        "callout",
        "c2c-1",
        json!({"caller": "+8675500000000", "called": "+8613800000002"}),
    );

    for body in [leg_a.clone(), leg_b.clone(), leg_a, leg_b] {
        assert_eq!(app.post("/voicecall/status", body).await.status(), 200);
    }

    let called: Vec<String> =
        // By number, not by id: under load a receipt may be spooled and projected after a later one.
        sqlx::query_scalar("select called from call_events where session_id = 'c2c-1' order by called")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(called, ["+8613800000001", "+8613800000002"]);
}

/// Every statusInfo field of the spec lands in its own column, the uncertain `displayCallerNum`
/// included; a field the spec does not list is kept in `extra`.
#[sqlx::test]
async fn every_status_info_field_lands_in_its_column(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"eventType": "disconnect", "statusInfo": {
        "sessionId": "s-every-field", "timestamp": "2026-11-24 06:01:10", "caller": "+867550000001",
        "called": "+8613800000002", "userData": "order-9", "partyType": "1", "stateCode": 8017,
        "stateDesc": "Release indicated by the SP.", "digitInfo": "12", "displayCallerNum": "+867550000003",
        "newVendorField": "kept"
    }});

    let response = app.post("/voicecall/status", body.to_string()).await;

    assert_eq!(response.status(), 200);
    let row: serde_json::Value = sqlx::query_scalar(
        "select to_jsonb(e) - 'id' - 'raw_callback_id' - 'received_at' - 'fingerprint' from call_events e",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        json!({
            "event_type": "disconnect", "session_id": "s-every-field",
            "event_at": "2026-11-24T06:01:10+00:00", "caller": "+867550000001", "called": "+8613800000002",
            "user_data": "order-9", "party_type": "1", "state_code": 8017,
            "state_desc": "Release indicated by the SP.", "digit_info": "12",
            "display_caller_num": "+867550000003", "unparsed_times": null,
            "extra": {"newVendorField": "kept"}
        })
    );
}
