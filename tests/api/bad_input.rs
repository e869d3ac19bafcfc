//! Bad input: every refusal is answered with a stable JSON error, and the request is still kept
//! in `raw_callbacks`, byte for byte, with no typed row written.

use serde_json::{Value, json};
use sqlx::PgPool;
use time::{OffsetDateTime, macros::datetime};

use crate::helpers::{TestApp, fee_body, json, spawn_app, spawn_app_with, status_body};

/// The columns of one `raw_callbacks` row these tests look at.
#[derive(Debug, sqlx::FromRow)]
struct RawRow {
    method: String,
    outcome: String,
    http_status: i16,
    error: Option<Value>,
    body: Vec<u8>,
    body_truncated: bool,
    event_type: Option<String>,
    records_total: Option<i32>,
    records_stored: Option<i32>,
    records_rejected: Option<i32>,
}

/// The newest `raw_callbacks` row.
async fn newest_raw(pool: &PgPool) -> RawRow {
    sqlx::query_as(
        "select method, outcome, http_status, error, body, body_truncated, event_type, records_total,
                records_stored, records_rejected
         from raw_callbacks order by received_at desc, id desc limit 1",
    )
    .fetch_one(pool)
    .await
    .expect("a raw_callbacks row")
}

/// Asserts the answer is `status` with `{"error": {code, message, field?}}` and that the request
/// was kept as refused, with that very error and the exact bytes sent. Returns the error object.
async fn assert_refused_and_kept(
    app: &TestApp,
    case: &str,
    sent: &[u8],
    response: reqwest::Response,
    status: u16,
    code: &str,
    field: Option<&str>,
) -> (Value, RawRow) {
    assert_eq!(response.status().as_u16(), status, "case {case}: status");
    let body = json(response).await;
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "case {case}: error code in {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "case {case}: a message in {body}"
    );
    assert_eq!(
        error.get("field").and_then(Value::as_str),
        field,
        "case {case}: error field in {body}"
    );

    let raw = newest_raw(&app.pool).await;
    assert_eq!(raw.outcome, "rejected", "case {case}: raw outcome");
    assert_eq!(
        i32::from(raw.http_status),
        i32::from(status),
        "case {case}: raw http_status"
    );
    assert_eq!(
        raw.error.as_ref(),
        Some(&error),
        "case {case}: raw error is the answered error"
    );
    assert_eq!(
        raw.body, sent,
        "case {case}: raw body is the exact bytes sent"
    );
    (error, raw)
}

async fn assert_no_typed_rows(app: &TestApp, case: &str) {
    assert_eq!(
        app.count("call_events").await,
        0,
        "case {case}: no call_events row"
    );
    assert_eq!(app.count("cdrs").await, 0, "case {case}: no cdrs row");
}

/// One malformed-body case: what is sent, and the refusal it must get.
struct Malformed {
    case: &'static str,
    body: String,
    code: &'static str,
    field: Option<&'static str>,
    /// `raw_callbacks.event_type`: eventType as written, when it could be read.
    event_type: Option<&'static str>,
}

fn malformed(
    case: &'static str,
    body: impl Into<String>,
    code: &'static str,
    field: Option<&'static str>,
    event_type: Option<&'static str>,
) -> Malformed {
    let body = body.into();
    Malformed {
        case,
        body,
        code,
        field,
        event_type,
    }
}

/// Each malformed body gets its own 400 code and field, and is kept with the event type it named.
#[sqlx::test]
async fn every_malformed_body_is_answered_400_with_its_code_and_kept(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let (fee, answer) = (Some("fee"), Some("answer"));
    let cases = [
        malformed("not JSON", "this is not json", "invalid_json", None, None),
        malformed(
            "truncated JSON",
            r#"{"eventType":"callout","#,
            "invalid_json",
            None,
            None,
        ),
        malformed(
            "a JSON array",
            r#"[{"eventType":"callout"}]"#,
            "not_an_object",
            None,
            None,
        ),
        malformed(
            "an empty object",
            "{}",
            "missing_field",
            Some("eventType"),
            None,
        ),
        malformed(
            "eventType not a string",
            r#"{"eventType":7}"#,
            "invalid_field",
            Some("eventType"),
            None,
        ),
        malformed(
            "status event without statusInfo",
            r#"{"eventType":"answer"}"#,
            "missing_field",
            Some("statusInfo"),
            answer,
        ),
        malformed(
            "statusInfo without sessionId",
            r#"{"eventType":"answer","statusInfo":{"caller":"+8613800000001"}}"#,
            "missing_field",
            Some("statusInfo.sessionId"),
            answer,
        ),
        malformed(
            "stateCode not a number",
            status_body("disconnect", "s-busy", json!({"stateCode": "busy"})),
            "invalid_field",
            Some("statusInfo.stateCode"),
            Some("disconnect"),
        ),
        malformed(
            "fee without feeLst",
            r#"{"eventType":"fee"}"#,
            "missing_field",
            Some("feeLst"),
            fee,
        ),
        malformed(
            "empty feeLst",
            r#"{"eventType":"fee","feeLst":[]}"#,
            "empty_batch",
            Some("feeLst"),
            fee,
        ),
        malformed(
            "51 CDRs",
            fee_body("big", 51),
            "batch_too_large",
            Some("feeLst"),
            fee,
        ),
        malformed(
            "every CDR bad",
            r#"{"eventType":"fee","feeLst":[{"direction":1},{"sessionId":"b","direction":"in"}]}"#,
            "invalid_records",
            Some("feeLst"),
            fee,
        ),
    ];

    for Malformed {
        case,
        body,
        code,
        field,
        event_type,
    } in cases
    {
        let before = app.count("raw_callbacks").await;

        // Act
        let response = app.post("/voicecall/status", body.clone()).await;

        // Assert
        let (_, raw) =
            assert_refused_and_kept(&app, case, body.as_bytes(), response, 400, code, field).await;
        assert_eq!(
            raw.event_type.as_deref(),
            event_type,
            "case {case}: raw event_type"
        );
        assert_eq!(
            app.count("raw_callbacks").await,
            before + 1,
            "case {case}: one raw row per request"
        );
        assert_no_typed_rows(&app, case).await;
    }
}

/// When no CDR of a fee list can be read, the answer lists why each one was refused.
#[sqlx::test]
async fn a_fee_list_with_only_bad_records_lists_every_record_error(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let body =
        r#"{"eventType":"fee","feeLst":[{"direction":1},{"sessionId":"b","direction":"in"}]}"#;

    // Act
    let response = app.post("/voicecall/fee", body).await;

    // Assert
    let (error, _) = assert_refused_and_kept(
        &app,
        "every CDR bad",
        body.as_bytes(),
        response,
        400,
        "invalid_records",
        Some("feeLst"),
    )
    .await;
    let records = error["records"]
        .as_array()
        .expect("error.records is an array");
    let expected = [
        (0, "missing_field", "feeLst[0].sessionId"),
        (1, "invalid_field", "feeLst[1].direction"),
    ];
    assert_eq!(
        records.len(),
        expected.len(),
        "one entry per refused CDR: {error}"
    );
    for (record, (index, code, field)) in records.iter().zip(expected) {
        assert_eq!(record["index"], index, "record {index}: index");
        assert_eq!(record["code"], code, "record {index}: code");
        assert_eq!(record["field"], field, "record {index}: field");
        assert!(
            record["message"].as_str().is_some_and(|m| !m.is_empty()),
            "record {index}: message"
        );
    }
    assert_no_typed_rows(&app, "every CDR bad").await;
}

/// One unreadable CDR does not cost its neighbours: they are stored and the list is acknowledged.
#[sqlx::test]
async fn one_malformed_record_in_a_fee_list_is_a_partial_success(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut body: Value = serde_json::from_str(&fee_body("partial", 3)).unwrap();
    body["feeLst"][1]["direction"] = json!("in");
    let body = body.to_string();

    // Act
    let response = app.post("/voicecall/fee", body.clone()).await;

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let outcome = response
        .headers()
        .get("x-callhook-outcome")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(outcome.as_deref(), Some("partial"));
    assert_eq!(
        json(response).await,
        json!({"resultcode": "0", "resultdesc": "Success"})
    );
    assert_eq!(app.count("cdrs").await, 2);
    let sessions: Vec<String> =
        sqlx::query_scalar("select session_id from cdrs order by session_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(sessions, ["partial-0", "partial-2"]);
    let raw = newest_raw(&app.pool).await;
    assert_eq!(raw.outcome, "partial");
    assert_eq!(raw.http_status, 200);
    assert_eq!(
        (raw.records_total, raw.records_stored, raw.records_rejected),
        (Some(3), Some(2), Some(1))
    );
    let error = raw
        .error
        .expect("the refused CDR is described in raw_callbacks.error");
    assert_eq!(error["records"][0]["index"], 1);
    assert_eq!(error["records"][0]["field"], "feeLst[1].direction");
    assert_eq!(raw.body, body.as_bytes());
}

/// A body over `http.body_limit_bytes` is answered 413 and its first bytes are kept.
#[sqlx::test]
async fn a_body_over_the_limit_is_answered_413_and_its_beginning_kept(pool: PgPool) {
    // Arrange
    let app = spawn_app_with(pool, |c| c.http.body_limit_bytes = 2048).await;
    let filler = "x".repeat(
        4096 - r#"{"eventType":"callout","statusInfo":{"sessionId":"s","userData":""}}"#.len(),
    );
    let body = format!(
        r#"{{"eventType":"callout","statusInfo":{{"sessionId":"s","userData":"{filler}"}}}}"#
    );
    assert_eq!(body.len(), 4096);

    // Act
    let response = app.post("/voicecall/status", body.clone()).await;

    // Assert
    assert_eq!(response.status().as_u16(), 413);
    let answer = json(response).await;
    assert_eq!(answer["error"]["code"], "body_too_large");
    let raw = newest_raw(&app.pool).await;
    assert_eq!(raw.outcome, "rejected");
    assert_eq!(raw.http_status, 413);
    assert_eq!(raw.error.as_ref(), Some(&answer["error"]));
    assert!(raw.body_truncated, "body_truncated is set");
    assert_eq!(raw.body.len(), 2048);
    assert_eq!(raw.body, body.as_bytes()[..2048]);
    assert_no_typed_rows(&app, "body too large").await;
}

/// Anything but POST on a callback endpoint is answered 405 with `Allow: POST`, and kept.
#[sqlx::test]
async fn a_wrong_method_is_answered_405_and_kept(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let cases = [
        (reqwest::Method::GET, ""),
        (reqwest::Method::PUT, r#"{"eventType":"callout"}"#),
    ];

    for (method, body) in cases {
        let case = method.as_str().to_owned();

        // Act
        let response = app
            .client
            .request(method.clone(), app.url("/voicecall/status"))
            .body(body)
            .send()
            .await
            .expect("request is sent");
        // A refused request is answered once its receipt is durable, which may be in the spool
        // (the database is not in charge yet right after start, or is away): wait until it is
        // in the database.
        app.projected().await;

        // Assert
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(allow.as_deref(), Some("POST"), "case {case}: Allow header");
        let (_, raw) = assert_refused_and_kept(
            &app,
            &case,
            body.as_bytes(),
            response,
            405,
            "method_not_allowed",
            None,
        )
        .await;
        assert_eq!(raw.method, case, "case {case}: method recorded");
    }
    assert_no_typed_rows(&app, "wrong method").await;
}

/// A NUL character cannot be stored in PostgreSQL text: the parser refuses it naming the field
/// (400, raw bytes kept), and in a fee list only the CDR holding it, so the others are stored.
#[sqlx::test]
async fn a_nul_character_in_a_value_is_refused_naming_its_field(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut cdr: Value = serde_json::from_str(&fee_body("nul", 1)).unwrap();
    cdr["feeLst"][0]["callerNum"] = json!("+86\u{0}");
    let mut two: Value = serde_json::from_str(&fee_body("nul-two", 2)).unwrap();
    two["feeLst"][1]["extraThing"] = json!({"note": "a\u{0}b"});
    let cases = [
        (
            "status event",
            status_body("callout", "s-nul", json!({"caller": "+86\u{0}"})),
            "invalid_field",
            "statusInfo.caller",
        ),
        ("CDR", cdr.to_string(), "invalid_records", "feeLst"),
    ];

    for (case, body, code, field) in cases {
        assert!(
            body.contains(r"\u0000"),
            "case {case}: the NUL is escaped in the JSON text"
        );

        // Act
        let response = app.post("/voicecall/status", body.clone()).await;

        // Assert
        assert_refused_and_kept(
            &app,
            case,
            body.as_bytes(),
            response,
            400,
            code,
            Some(field),
        )
        .await;
        assert_no_typed_rows(&app, case).await;
    }
    let response = app.post("/voicecall/fee", two.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-callhook-outcome"], "partial");
    let raw = newest_raw(&app.pool).await;
    assert_eq!(
        raw.error.unwrap()["records"][0]["field"],
        "feeLst[1].extraThing.note"
    );
    let stored: Vec<String> = sqlx::query_scalar("select session_id from cdrs")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ["nul-two-0"]);
}

/// Asserts the answer is the 200 acknowledgement marked `unrecognized`, and that the request was
/// kept with outcome `unrecognized`, its exact bytes, and the `unknown_event_type` error (what
/// `/v1/refused` lists and reprocessing starts from). Returns the raw row.
async fn assert_unrecognized_and_kept(
    app: &TestApp,
    case: &str,
    sent: &[u8],
    response: reqwest::Response,
) -> RawRow {
    assert_eq!(response.status().as_u16(), 200, "case {case}: status");
    let outcome = response
        .headers()
        .get("x-callhook-outcome")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        outcome.as_deref(),
        Some("unrecognized"),
        "case {case}: x-callhook-outcome"
    );
    assert_eq!(
        json(response).await,
        json!({"resultcode": "0", "resultdesc": "Success"}),
        "case {case}: the usual acknowledgement"
    );
    let raw = newest_raw(&app.pool).await;
    assert_eq!(raw.outcome, "unrecognized", "case {case}: raw outcome");
    assert_eq!(raw.http_status, 200, "case {case}: raw http_status");
    let error = raw
        .error
        .as_ref()
        .expect("the reason is kept in raw_callbacks.error");
    assert_eq!(
        error["code"], "unknown_event_type",
        "case {case}: kept error {error}"
    );
    assert_eq!(
        error["field"], "eventType",
        "case {case}: kept error {error}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "case {case}: a message in {error}"
    );
    assert_eq!(
        raw.body, sent,
        "case {case}: raw body is the exact bytes sent"
    );
    raw
}

/// Spec §1.5: a value not known yet is accepted and logged. An unknown eventType is answered 200
/// (so the platform does not retry it forever), kept as `unrecognized` with why, listed among the
/// refused callbacks, and derives no typed row.
#[sqlx::test]
async fn an_unknown_event_type_is_answered_200_and_kept_unrecognized(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let body = r#"{"eventType":"callin","statusInfo":{"sessionId":"s-1"}}"#;

    // Act
    let response = app.post("/voicecall/status", body).await;

    // Assert
    let raw =
        assert_unrecognized_and_kept(&app, "unknown eventType", body.as_bytes(), response).await;
    assert_eq!(raw.event_type.as_deref(), Some("callin"));
    assert_eq!(app.count("raw_callbacks").await, 1, "one raw row");
    assert_no_typed_rows(&app, "unknown eventType").await;
    let listed: i64 = sqlx::query_scalar(
        "select count(*) from raw_callbacks where outcome in ('rejected', 'unauthorized', 'partial', 'unrecognized')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        listed, 1,
        "kept among the refused callbacks, to be reprocessed"
    );
}

/// A NUL in a value that lands in a raw_callbacks text column is replaced there, so the row is
/// kept. An eventType this version does not know is not parsed any further (the NUL check is for
/// bodies it will derive rows from), so it is acknowledged as unrecognized like any other.
#[sqlx::test]
async fn a_nul_character_in_an_unknown_event_type_is_kept_sanitised(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let body = r#"{"eventType":"call\u0000in","statusInfo":{"sessionId":"s"}}"#;

    // Act
    let response = app.post("/voicecall/status", body).await;

    // Assert
    let raw =
        assert_unrecognized_and_kept(&app, "NUL in eventType", body.as_bytes(), response).await;
    assert_eq!(raw.event_type.as_deref(), Some("call\u{FFFD}in"));
    assert_no_typed_rows(&app, "NUL in eventType").await;
}

/// A time that cannot be read is kept raw in `unparsed_times`; it is not a reason to refuse.
#[sqlx::test]
async fn an_unreadable_time_is_stored_raw_not_refused(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let cases: [(&str, &str, Option<OffsetDateTime>, Option<Value>); 3] = [
        (
            "garbage",
            "garbage",
            None,
            Some(json!({"timestamp": "garbage"})),
        ),
        (
            "two spaces",
            "2019-01-24  03:04:24",
            Some(datetime!(2019-01-24 03:04:24 UTC)),
            None,
        ),
        (
            "documented form",
            "2019-01-24 03:04:24",
            Some(datetime!(2019-01-24 03:04:24 UTC)),
            None,
        ),
    ];

    for (case, timestamp, event_at, unparsed) in cases {
        let session = format!("s-time-{case}");
        let body = status_body("answer", &session, json!({"timestamp": timestamp}));

        // Act
        let response = app.post("/voicecall/status", body).await;

        // Assert
        assert_eq!(response.status().as_u16(), 200, "case {case}: status");
        let (stored_at, stored_unparsed): (Option<OffsetDateTime>, Option<Value>) = sqlx::query_as(
            "select event_at, unparsed_times from call_events where session_id = $1",
        )
        .bind(&session)
        .fetch_one(&app.pool)
        .await
        .expect("the event is stored");
        assert_eq!(stored_at, event_at, "case {case}: event_at");
        assert_eq!(stored_unparsed, unparsed, "case {case}: unparsed_times");
    }
}

/// Likewise for a CDR: an unreadable time is NULL in its column and kept in `unparsed_times`.
#[sqlx::test]
async fn an_unreadable_cdr_time_is_stored_raw_not_refused(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut body: Value = serde_json::from_str(&fee_body("time", 1)).unwrap();
    body["feeLst"][0]["callEndTime"] = json!("garbage");

    // Act
    let response = app.post("/voicecall/fee", body.to_string()).await;

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let (end, unparsed): (Option<OffsetDateTime>, Option<Value>) =
        sqlx::query_as("select call_end_time, unparsed_times from cdrs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(end, None);
    assert_eq!(unparsed, Some(json!({"callEndTime": "garbage"})));
}

/// Fields the spec does not list are stored in `extra`, as received.
#[sqlx::test]
async fn unknown_fields_are_kept_in_extra(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let status = status_body("callout", "s-extra", json!({"newField": {"x": 1}}));
    let mut fee: Value = serde_json::from_str(&fee_body("extra", 1)).unwrap();
    fee["feeLst"][0]["newCdrField"] = json!(["a", 2]);

    // Act
    let status_response = app.post("/voicecall/status", status).await;
    let fee_response = app.post("/voicecall/fee", fee.to_string()).await;

    // Assert
    assert_eq!(status_response.status().as_u16(), 200, "status event");
    assert_eq!(fee_response.status().as_u16(), 200, "fee list");
    let event_extra: Option<Value> = sqlx::query_scalar("select extra from call_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        event_extra,
        Some(json!({"newField": {"x": 1}})),
        "call_events.extra"
    );
    let cdr_extra: Option<Value> = sqlx::query_scalar("select extra from cdrs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        cdr_extra,
        Some(json!({"newCdrField": ["a", 2]})),
        "cdrs.extra"
    );
}
