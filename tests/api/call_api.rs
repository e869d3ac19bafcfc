//! `GET /v1/calls`, `GET /v1/calls/{session_id}` and `GET /v1/gaps`: filters, pagination,
//! detail, masking by scope, and CDR gaps.

use callhook::store::placed_calls::{self, PlacedCall, PlacedOutcome};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::api_helpers::{
    A, B, Call, DISPLAY, FULL_TOKEN, MASKED_TOKEN, encode, get, get_json, get_json_as, hour,
    sessions, spawn_api, walk_pages,
};

/// With nothing stored, the list is an empty last page.
#[sqlx::test]
async fn an_empty_call_log_is_one_empty_page(pool: PgPool) {
    let app = spawn_api(pool).await;

    let page = get_json(&app, "/v1/calls").await;

    assert_eq!(page, json!({"calls": [], "next_cursor": null}));
}

/// Calls come newest first, in pages that continue exactly where the last one ended.
#[sqlx::test]
async fn pages_follow_each_other_newest_first_without_gaps_or_repeats(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..5 {
        Call::new(&format!("s{i}"), hour(i)).deliver(&app).await;
    }

    let first = get_json(&app, "/v1/calls?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = get_json(&app, &format!("/v1/calls?limit=2&cursor={cursor}")).await;
    let cursor = second["next_cursor"]
        .as_str()
        .expect("a third page")
        .to_owned();
    let third = get_json(&app, &format!("/v1/calls?limit=2&cursor={cursor}")).await;

    assert_eq!(sessions(&first, "calls"), ["s4", "s3"]);
    assert_eq!(sessions(&second, "calls"), ["s2", "s1"]);
    assert_eq!(sessions(&third, "calls"), ["s0"]);
    assert_eq!(third["next_cursor"], Value::Null);
}

/// A last page that is exactly full says so (no cursor to an empty page), and the default page
/// size applies without `limit`.
#[sqlx::test]
async fn a_page_that_ends_exactly_at_the_last_call_has_no_next_cursor(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..4 {
        Call::new(&format!("s{i}"), hour(i)).deliver(&app).await;
    }

    let first = get_json(&app, "/v1/calls?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let last = get_json(&app, &format!("/v1/calls?limit=2&cursor={cursor}")).await;
    let all = get_json(&app, "/v1/calls").await;
    let exact = get_json(&app, "/v1/calls?limit=4").await;

    assert_eq!(sessions(&last, "calls"), ["s1", "s0"]);
    assert_eq!(last["next_cursor"], Value::Null);
    assert_eq!(sessions(&all, "calls").len(), 4);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(exact["next_cursor"], Value::Null);
}

/// A cursor beyond the last call (its rows deleted meanwhile) gives an empty last page.
#[sqlx::test]
async fn a_cursor_past_the_end_gives_an_empty_last_page(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..3 {
        Call::new(&format!("s{i}"), hour(i)).deliver(&app).await;
    }
    let first = get_json(&app, "/v1/calls?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    sqlx::query("delete from calls where session_id = 's0'")
        .execute(&app.pool)
        .await
        .unwrap();

    let next = get_json(&app, &format!("/v1/calls?limit=2&cursor={cursor}")).await;

    assert_eq!(next, json!({"calls": [], "next_cursor": null}));
}

/// Bad paging is refused with a 400 naming the parameter: a cursor that is not one, a cursor of
/// another list, and a limit outside 1..=api.max_limit (refused, not cut, so a short page
/// always means the end).
#[sqlx::test]
async fn bad_cursors_and_limits_are_refused_with_400(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..3 {
        Call::new(&format!("s{i}"), hour(i)).deliver(&app).await;
    }
    let cdr_page = get_json(&app, "/v1/cdrs?limit=1").await;
    let cdr_cursor = cdr_page["next_cursor"].as_str().unwrap().to_owned();

    let cases = [
        ("/v1/calls?cursor=garbage", "invalid_cursor", "cursor"),
        ("/v1/calls?cursor=e30", "invalid_cursor", "cursor"),
        (
            &format!("/v1/calls?cursor={cdr_cursor}"),
            "invalid_cursor",
            "cursor",
        ),
        ("/v1/calls?limit=501", "invalid_parameter", "limit"),
        ("/v1/calls?limit=0", "invalid_parameter", "limit"),
        ("/v1/calls?limit=-1", "invalid_parameter", "limit"),
        ("/v1/calls?limit=ten", "invalid_parameter", "limit"),
        ("/v1/calls?from=2026-11-20", "invalid_parameter", "from"),
        ("/v1/calls?outcome=won", "invalid_parameter", "outcome"),
        ("/v1/calls?numbr=%2B86", "invalid_parameter", "numbr"),
    ];
    for (path, code, field) in cases {
        let response = get(&app, path, FULL_TOKEN).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    let max = get_json(&app, "/v1/calls?limit=500").await;
    assert_eq!(sessions(&max, "calls").len(), 3);
}

/// `from` (inclusive) and `to` (exclusive) bound the start time; RFC 3339 with any offset.
#[sqlx::test]
async fn from_and_to_bound_the_start_time(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..4 {
        Call::new(&format!("s{i}"), hour(i)).deliver(&app).await;
    }
    let rfc3339 = |at: OffsetDateTime| {
        encode(
            &at.to_offset(time::macros::offset!(+8))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        )
    };

    let from = get_json(&app, &format!("/v1/calls?from={}", rfc3339(hour(1)))).await;
    let to = get_json(&app, &format!("/v1/calls?to={}", rfc3339(hour(1)))).await;
    let both = get_json(
        &app,
        &format!(
            "/v1/calls?from={}&to={}",
            rfc3339(hour(1)),
            rfc3339(hour(3))
        ),
    )
    .await;

    assert_eq!(sessions(&from, "calls"), ["s3", "s2", "s1"]);
    assert_eq!(sessions(&to, "calls"), ["s0"]);
    assert_eq!(sessions(&both, "calls"), ["s2", "s1"]);
}

/// `number` finds a call by its caller, its callee or its display number; `outcome`,
/// `app_key` and `user_data` match exactly; filters combine.
#[sqlx::test]
async fn number_outcome_app_key_and_user_data_filter_the_log(pool: PgPool) {
    let app = spawn_api(pool).await;
    let answered = Call::new("answered", hour(0));
    let busy = Call {
        answered: false,
        a: "+8613900000003".into(),
        b: "+8613900000004".into(),
        display: "+867550000009".into(),
        app_key: "app-2".into(),
        ..Call::new("busy", hour(1))
    };
    answered.deliver(&app).await;
    busy.deliver(&app).await;
    let find = |query: String| {
        let app = &app;
        async move { sessions(&get_json(app, &format!("/v1/calls?{query}")).await, "calls") }
    };

    assert_eq!(find(format!("number={}", encode(A))).await, ["answered"]);
    assert_eq!(find(format!("number={}", encode(B))).await, ["answered"]);
    assert_eq!(
        find(format!("number={}", encode(DISPLAY))).await,
        ["answered"]
    );
    assert_eq!(
        find(format!("number={}", encode("+8613900000004"))).await,
        ["busy"]
    );
    assert!(
        find(format!("number={}", encode("+8613800000009")))
            .await
            .is_empty()
    );
    assert_eq!(find("outcome=busy".into()).await, ["busy"]);
    assert_eq!(find("outcome=answered".into()).await, ["answered"]);
    assert!(find("outcome=no_answer".into()).await.is_empty());
    assert_eq!(find("app_key=app-2".into()).await, ["busy"]);
    assert_eq!(find("user_data=order-answered".into()).await, ["answered"]);
    assert!(find("outcome=busy&app_key=app-1".into()).await.is_empty());
    assert_eq!(find(String::new()).await, ["busy", "answered"]);
}

/// A call whose start is not known sorts (and filters) as of when callhook last heard of it,
/// rather than vanishing from every time-bounded query.
#[sqlx::test]
async fn a_call_without_a_start_time_sorts_by_when_it_was_last_heard_of(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call::new("old", hour(0)).deliver(&app).await;
    let unreadable = json!({"eventType": "callout", "statusInfo": {
        "sessionId": "no-start", "timestamp": "yesterday", "caller": DISPLAY, "called": A}});
    assert_eq!(
        app.post("/voicecall/status", unreadable.to_string())
            .await
            .status(),
        200
    );

    let all = get_json(&app, "/v1/calls").await;
    let recent = get_json(
        &app,
        &format!("/v1/calls?from={}", encode("2026-11-21T00:00:00Z")),
    )
    .await;

    assert_eq!(all["calls"][0]["started_at"], Value::Null);
    assert_eq!(sessions(&all, "calls"), ["no-start", "old"]);
    assert_eq!(sessions(&recent, "calls"), ["no-start"]);
}

/// The detail of a call holds the call, its events in platform order, its CDR, the requests
/// that brought them (bodies exactly as received) and the request that placed it.
#[sqlx::test]
async fn a_calls_detail_holds_everything_stored_about_it(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let call = Call::new("detail-1@callenabler245.huaweicaas.com", hour(0));
    placed_calls::record(&pool, &placed(&call.session))
        .await
        .unwrap();
    call.deliver(&app).await;
    Call::new("other", hour(1)).deliver(&app).await;

    let detail = get_json(&app, &format!("/v1/calls/{}", encode(&call.session))).await;

    assert_eq!(detail["call"]["session_id"], call.session.as_str());
    assert_eq!(detail["call"]["outcome"], "answered");
    assert_eq!(detail["call"]["caller"], A);
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["callout", "answer", "callout", "answer", "disconnect"]
    );
    assert_eq!(detail["cdrs"].as_array().unwrap().len(), 1);
    assert_eq!(detail["cdrs"][0]["fwd_dst_num"], B);
    let bodies: Vec<&str> = detail["raw_callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["body_encoding"], "utf8");
            r["body"].as_str().unwrap()
        })
        .collect();
    let sent: Vec<String> = call.callbacks().into_iter().map(|(_, body)| body).collect();
    assert_eq!(bodies, sent);
    assert_eq!(detail["placed_call"]["operation"], "click2call");
    assert_eq!(detail["placed_call"]["request"]["calleeNbr"], B);
    assert_eq!(
        detail["call"]["placed_call_id"],
        detail["placed_call"]["id"]
    );
}

/// An unknown sessionId is a JSON 404.
#[sqlx::test]
async fn an_unknown_call_is_a_404(pool: PgPool) {
    let app = spawn_api(pool).await;

    let response = get(&app, "/v1/calls/nobody", FULL_TOKEN).await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "call_not_found");
}

/// A masked token sees no phone number anywhere in a call's detail, raw bodies included (as
/// JSON with the numbers masked); a full token sees them all as stored.
#[sqlx::test]
async fn numbers_are_masked_unless_the_token_is_full(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let call = Call::new("masked-1", hour(0));
    placed_calls::record(&pool, &placed(&call.session))
        .await
        .unwrap();
    call.deliver(&app).await;
    let path = format!("/v1/calls/{}", call.session);

    let masked = get_json_as(&app, &path, MASKED_TOKEN).await;
    let full = get_json_as(&app, &path, FULL_TOKEN).await;
    let masked_list = get_json_as(&app, "/v1/calls", MASKED_TOKEN).await;
    let masked_cdrs = get_json_as(&app, "/v1/cdrs", MASKED_TOKEN).await;

    for number in [A, B, DISPLAY] {
        let digits = &number[1..];
        for (what, answer) in [
            ("detail", &masked),
            ("list", &masked_list),
            ("cdrs", &masked_cdrs),
        ] {
            assert!(
                !answer.to_string().contains(digits),
                "{number} in masked {what}: {answer}"
            );
        }
        assert!(
            full.to_string().contains(digits),
            "{number} missing in full"
        );
    }
    assert_eq!(masked["call"]["caller"], "+86*********01");
    assert_eq!(masked["call"]["callee"], "+86*********02");
    assert_eq!(masked["call"]["display_number"], "+86********01");
    assert_eq!(masked["events"][0]["called"], "+86*********01");
    assert_eq!(masked["cdrs"][0]["bind_num"], "+86********01");
    assert_eq!(masked["raw_callbacks"][0]["body_encoding"], "masked_json");
    let body: Value =
        serde_json::from_str(masked["raw_callbacks"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["statusInfo"]["called"], "+86*********01");
    assert_eq!(body["statusInfo"]["sessionId"], "masked-1");
    assert_eq!(
        masked["placed_call"]["request"]["callerNbr"],
        "+86*********01"
    );
    assert_eq!(full["call"]["caller"], A);
    assert_eq!(full["raw_callbacks"][0]["body_encoding"], "utf8");
}

/// Gaps are calls without a CDR whose end (or, unknown, last news) is older than `older_than`
/// (default api.cdr_gap_after_secs, 6 h 10 min), including calls we placed that never got any
/// callback (events = 0); calls with their CDR, and recent ones, are not gaps.
#[sqlx::test]
async fn gaps_are_calls_whose_cdr_is_overdue(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let long_ago = time::macros::datetime!(2020-01-01 00:00 UTC);
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    Call {
        with_cdr: false,
        ..Call::new("old-no-cdr", long_ago)
    }
    .deliver(&app)
    .await;
    Call::new("old-with-cdr", long_ago).deliver(&app).await;
    Call {
        with_cdr: false,
        ..Call::new("recent-no-cdr", now - time::Duration::minutes(5))
    }
    .deliver(&app)
    .await;
    placed_calls::record(&pool, &placed("placed-silent"))
        .await
        .unwrap();
    placed_calls::record(&pool, &placed("placed-recent"))
        .await
        .unwrap();
    // Time passes for the silent placed call: callhook last heard of it 7 hours ago.
    sqlx::query(
        "update calls set last_callback_at = now() - interval '7 hours' where session_id = 'placed-silent'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let default = get_json(&app, "/v1/gaps").await;
    let everything = get_json(&app, "/v1/gaps?older_than=0").await;
    let masked = get_json_as(&app, "/v1/gaps", MASKED_TOKEN).await;

    let mut gaps = sessions(&default, "calls");
    gaps.sort();
    assert_eq!(gaps, ["old-no-cdr", "placed-silent"]);
    assert_eq!(default["older_than"], 22200);
    let silent = default["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["session_id"] == "placed-silent")
        .unwrap();
    assert_eq!(silent["events"], 0);
    let mut all = sessions(&everything, "calls");
    all.sort();
    assert_eq!(
        all,
        [
            "old-no-cdr",
            "placed-recent",
            "placed-silent",
            "recent-no-cdr"
        ]
    );
    assert!(!masked.to_string().contains(&A[1..]));
    let paged = get_json(&app, "/v1/gaps?older_than=0&limit=3").await;
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = get_json(
        &app,
        &format!("/v1/gaps?older_than=0&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(sessions(&rest, "calls").len(), 1);
    let wrong_list = get(&app, &format!("/v1/calls?cursor={cursor}"), FULL_TOKEN).await;
    assert_eq!(wrong_list.status(), 400);
}

/// An accepted click-to-call from A to B as the client records it.
fn placed(session: &str) -> PlacedCall {
    let now = OffsetDateTime::now_utc();
    PlacedCall {
        id: uuid::Uuid::now_v7(),
        operation: "click2call",
        app_key: "app-1".into(),
        request: json!({"displayNbr": DISPLAY, "callerNbr": A, "displayCalleeNbr": DISPLAY, "calleeNbr": B}),
        response: Some(json!({"resultcode": "0", "resultdesc": "Success", "sessionId": session})),
        http_status: Some(200),
        result_code: Some("0".into()),
        result_desc: Some("Success".into()),
        session_id: Some(session.into()),
        user_data: Some(format!("order-{session}")),
        outcome: PlacedOutcome::Accepted,
        error: None,
        attempts: 1,
        requested_at: now,
        answered_at: Some(now),
    }
}

/// A value PostgreSQL cannot take (a NUL character) is the request's fault: 400, not 500.
#[sqlx::test]
async fn a_nul_character_in_a_filter_is_a_400(pool: PgPool) {
    let app = spawn_api(pool).await;

    let list = get(&app, "/v1/calls?number=%2B86%00", FULL_TOKEN).await;
    let detail = get(&app, "/v1/calls/a%00b", FULL_TOKEN).await;

    assert_eq!(list.status(), 400);
    assert_eq!(detail.status(), 400);
}

/// Calls that started in the same second: walking the pages, each comes exactly once.
#[sqlx::test]
async fn pages_through_calls_with_one_start_time_miss_and_repeat_none(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..7 {
        Call::new(&format!("same-{i}"), hour(5)).deliver(&app).await;
    }

    let seen = walk_pages(&app, "/v1/calls?limit=3", "calls").await;

    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (7, 7), "{seen:?}");
}

/// A masked token cannot learn whether a number exists by filtering on it: every list and
/// export with a `number` filter answers 403 naming the parameter, for a number that is stored
/// as for one that is not, and so does a `user_data` filter holding a phone number. A full token
/// filters as before, and a masked one may still filter on a `user_data` without a number.
#[sqlx::test]
async fn a_masked_token_cannot_probe_numbers_with_filters(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call {
        user_data: "13800009999".into(),
        ..Call::new("probe-1", hour(0))
    }
    .deliver(&app)
    .await;
    Call::new("probe-2", hour(1)).deliver(&app).await;

    for path in ["/v1/calls", "/v1/calls.csv", "/v1/cdrs", "/v1/cdrs.csv"] {
        for number in [A, "+8613899999999"] {
            let query = format!("{path}?number={}", encode(number));
            let masked = get(&app, &query, MASKED_TOKEN).await;
            assert_eq!(masked.status(), 403, "{query}");
            let body: Value = masked.json().await.unwrap();
            assert_eq!(body["error"]["code"], "filter_not_allowed", "{query}");
            assert_eq!(body["error"]["field"], "number", "{query}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains("full"),
                "{body}"
            );
            assert_eq!(get(&app, &query, FULL_TOKEN).await.status(), 200, "{query}");
        }
    }
    for path in ["/v1/calls", "/v1/calls.csv"] {
        let query = format!("{path}?user_data=13800009999");
        let masked = get(&app, &query, MASKED_TOKEN).await;
        assert_eq!(masked.status(), 403, "{query}");
        let body: Value = masked.json().await.unwrap();
        assert_eq!(body["error"]["field"], "user_data");
    }
    let by_order = get_json_as(&app, "/v1/calls?user_data=order-probe-2", MASKED_TOKEN).await;
    assert_eq!(sessions(&by_order, "calls"), ["probe-2"]);
    let full = get_json(&app, &format!("/v1/calls?number={}", encode(A))).await;
    assert_eq!(sessions(&full, "calls"), ["probe-2", "probe-1"]);
}

/// Numbers in fields no key names, in userData, in unknown fields at any depth, are masked for
/// a masked token, in the raw bodies as in the rows; the session id stays readable.
#[sqlx::test]
async fn masked_answers_hide_numbers_in_every_field(pool: PgPool) {
    let app = spawn_api(pool).await;
    let body = json!({"eventType": "callout", "statusInfo": {
        "sessionId": "hidden-1", "timestamp": "2026-11-20 10:00:00", "caller": DISPLAY, "called": A,
        "userData": "callback 13800007777", "newField": {"nested": ["or +8613800006666"]},
        "digitInfo": "13800005555"}});
    assert_eq!(
        app.post("/voicecall/status", body.to_string())
            .await
            .status(),
        200
    );

    let masked = get_json_as(&app, "/v1/calls/hidden-1", MASKED_TOKEN).await;
    let list = get_json_as(&app, "/v1/calls", MASKED_TOKEN).await;
    let full = get_json(&app, "/v1/calls/hidden-1").await;

    for number in ["13800007777", "8613800006666", "13800005555"] {
        assert!(!masked.to_string().contains(number), "{number}: {masked}");
        assert!(!list.to_string().contains(number), "{number}: {list}");
        assert!(full.to_string().contains(number), "{number} in full");
    }
    let raw: Value =
        serde_json::from_str(masked["raw_callbacks"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(raw["statusInfo"]["userData"], "callback 13*******77");
    assert_eq!(raw["statusInfo"]["sessionId"], "hidden-1");
    assert_eq!(masked["call"]["user_data"], "callback 13*******77");
    assert_eq!(masked["events"][0]["digit_info"], "13*******55");
}
