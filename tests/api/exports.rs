//! CSV exports: streamed, complete, RFC 4180, filtered and masked like the lists.

use sqlx::PgPool;

use crate::api_helpers::{
    A, Call, FULL_TOKEN, MASKED_TOKEN, encode, get, hour, spawn_api, spawn_api_with,
};

/// Reads a CSV answer: its header and records, and how many chunks the body came in.
async fn read_csv(response: reqwest::Response) -> (Vec<String>, Vec<Vec<String>>, usize) {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let mut response = response;
    let mut chunks = 0;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the body arrives whole") {
        body.extend_from_slice(&chunk);
        chunks += 1;
    }
    let mut reader = csv::Reader::from_reader(body.as_slice());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let records = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, records, chunks)
}

/// 20,000 calls (inserted in one statement) come out complete and in order, streamed in many
/// chunks as they are read rather than assembled first (no Content-Length).
#[sqlx::test]
async fn a_large_export_streams_every_call_in_order(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    sqlx::query(
        "insert into calls (session_id, scenario, caller, callee, display_number, user_data, started_at,
                            outcome, has_cdr, events, last_callback_at, updated_at)
         select 'bulk-' || lpad(g::text, 6, '0'), 'click2call', '+86138' || lpad(g::text, 8, '0'),
                '+86139' || lpad(g::text, 8, '0'), '+867550000001', 'order-' || g,
                timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', 'answered', true, 5, now(), now()
         from generate_series(1, 20000) as g",
    )
    .execute(&pool)
    .await
    .unwrap();

    let response = get(&app, "/v1/calls.csv", FULL_TOKEN).await;
    assert!(
        response.headers().get("content-length").is_none(),
        "an export is streamed, not sized up front"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("calls.csv")
    );
    let (header, records, chunks) = read_csv(response).await;

    assert_eq!(header[0], "session_id");
    assert_eq!(records.len(), 20_000);
    assert_eq!(records[0][0], "bulk-020000");
    assert_eq!(records[19_999][0], "bulk-000001");
    assert!(chunks > 10, "came in {chunks} chunks");
    let caller = header.iter().position(|c| c == "caller").unwrap();
    assert_eq!(records[0][caller], "+8613800020000");
}

/// The CSV header lists exactly the fields of the JSON list, in order, and the cells hold the
/// same values; a masked token gets masked numbers in CSV too.
#[sqlx::test]
async fn the_csv_has_the_fields_of_the_json_and_masks_by_scope(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call::new("csv-1", hour(0)).deliver(&app).await;
    let json: serde_json::Value = get(&app, "/v1/calls", FULL_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let json_call = json["calls"][0].as_object().unwrap();

    let (header, records, _) = read_csv(get(&app, "/v1/calls.csv", FULL_TOKEN).await).await;
    let (_, masked, _) = read_csv(get(&app, "/v1/calls.csv", MASKED_TOKEN).await).await;
    let (cdr_header, cdrs, _) = read_csv(get(&app, "/v1/cdrs.csv", FULL_TOKEN).await).await;
    let (_, masked_cdrs, _) = read_csv(get(&app, "/v1/cdrs.csv", MASKED_TOKEN).await).await;

    let mut json_keys: Vec<&String> = json_call.keys().collect();
    let mut csv_keys: Vec<&String> = header.iter().collect();
    json_keys.sort();
    csv_keys.sort();
    assert_eq!(csv_keys, json_keys);
    for (i, column) in header.iter().enumerate() {
        let expected = match &json_call[column] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(records[0][i], expected, "column {column}");
    }
    let caller = header.iter().position(|c| c == "caller").unwrap();
    assert_eq!(records[0][caller], A);
    assert_eq!(masked[0][caller], "+86*********01");
    assert_eq!(cdr_header.len(), 41);
    assert_eq!(cdrs.len(), 1);
    let callee_num = cdr_header.iter().position(|c| c == "callee_num").unwrap();
    assert_eq!(cdrs[0][callee_num], A);
    assert_eq!(masked_cdrs[0][callee_num], "+86*********01");
    assert!(!format!("{masked_cdrs:?}").contains(&A[1..]));
}

/// Commas, quotes and line breaks in a value survive the round trip (RFC 4180 quoting), and an
/// empty export is a header alone.
#[sqlx::test]
async fn csv_quoting_keeps_awkward_values_whole(pool: PgPool) {
    let app = spawn_api(pool).await;
    let (header, empty, _) = read_csv(get(&app, "/v1/calls.csv", FULL_TOKEN).await).await;
    let awkward = "a \"quoted\", value\r\non two lines";
    Call {
        user_data: awkward.into(),
        ..Call::new("quoted", hour(0))
    }
    .deliver(&app)
    .await;

    let (_, records, _) = read_csv(get(&app, "/v1/calls.csv", FULL_TOKEN).await).await;

    assert!(empty.is_empty());
    assert_eq!(header.len(), 38);
    let user_data = header.iter().position(|c| c == "user_data").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][user_data], awkward);
}

/// Exports take the filters of their list, and refuse paging parameters (there is no paging).
#[sqlx::test]
async fn exports_filter_like_their_lists_and_refuse_paging(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..3 {
        Call::new(&format!("f{i}"), hour(i)).deliver(&app).await;
    }

    let (_, calls, _) = read_csv(
        get(
            &app,
            &format!("/v1/calls.csv?from={}", encode("2026-11-20T11:00:00Z")),
            FULL_TOKEN,
        )
        .await,
    )
    .await;
    let (_, cdrs, _) = read_csv(get(&app, "/v1/cdrs.csv?session_id=f0", FULL_TOKEN).await).await;
    let paged = get(&app, "/v1/calls.csv?limit=5", FULL_TOKEN).await;

    let ids: Vec<&str> = calls.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["f2", "f1"]);
    assert_eq!(cdrs.len(), 1);
    assert_eq!(paged.status(), 400);
    let body: serde_json::Value = paged.json().await.unwrap();
    assert_eq!(body["error"]["field"], "limit");
}

/// An export is not cut by http.request_timeout_ms (it is bounded by its own statement
/// timeout instead), while the other routes still are.
#[sqlx::test]
async fn exports_are_not_cut_by_the_request_timeout(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |config| {
        config.http.request_timeout_ms = 200;
    })
    .await;
    sqlx::query(
        "insert into calls (session_id, scenario, outcome, has_cdr, events, last_callback_at, updated_at)
         values ('slow', 'unknown', 'in_progress', false, 0, now(), now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Reads of calls wait (600 ms) behind a lock another session holds, longer than the timeout.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("lock table calls in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        blocker.rollback().await.unwrap();
    });

    let list = get(&app, "/v1/calls", FULL_TOKEN).await;
    let export = get(&app, "/v1/calls.csv", FULL_TOKEN).await;
    release.await.unwrap();

    assert_eq!(
        list.status(),
        408,
        "the list is bounded by the request timeout"
    );
    let (_, records, _) = read_csv(export).await;
    assert_eq!(records.len(), 1);
}

/// More exports than api.max_concurrent_exports at once: the extra one is told to retry, and
/// the slot is free again once the first has finished.
#[sqlx::test]
async fn exports_beyond_the_limit_are_answered_503(pool: PgPool) {
    let app = std::sync::Arc::new(
        spawn_api_with(pool.clone(), |config| {
            config.api.max_concurrent_exports = 1;
        })
        .await,
    );
    Call::new("one", hour(0)).deliver(&app).await;
    // The first export waits behind a lock, so it is still running when the second comes.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("lock table calls in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = {
        let app = app.clone();
        tokio::spawn(async move { read_csv(get(&app, "/v1/calls.csv", FULL_TOKEN).await).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let second = get(&app, "/v1/calls.csv", FULL_TOKEN).await;
    blocker.rollback().await.unwrap();
    let (_, records, _) = first.await.unwrap();
    let third = get(&app, "/v1/calls.csv", FULL_TOKEN).await;

    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "exports_busy");
    assert_eq!(records.len(), 1);
    assert_eq!(third.status(), 200);
}
