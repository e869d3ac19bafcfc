//! `GET /v1/cdrs`: filters and pagination.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::api_helpers::{
    A, B, Call, DISPLAY, encode, get_json, hour, sessions, spawn_api, walk_pages,
};

/// CDRs come newest call end first, in pages; each filter narrows the list.
#[sqlx::test]
async fn cdrs_are_listed_newest_first_and_filtered(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..3 {
        Call::new(&format!("c{i}"), hour(i)).deliver(&app).await;
    }
    let other = Call {
        a: "+8613900000003".into(),
        b: "+8613900000004".into(),
        app_key: "app-2".into(),
        ..Call::new("c3", hour(3))
    };
    app.post("/voicecall/fee", other.fee_body()).await;

    let all = get_json(&app, "/v1/cdrs").await;
    let first = get_json(&app, "/v1/cdrs?limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = get_json(&app, &format!("/v1/cdrs?limit=3&cursor={cursor}")).await;
    let find = |query: String| {
        let app = &app;
        async move { sessions(&get_json(app, &format!("/v1/cdrs?{query}")).await, "cdrs") }
    };

    assert_eq!(sessions(&all, "cdrs"), ["c3", "c2", "c1", "c0"]);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(sessions(&first, "cdrs"), ["c3", "c2", "c1"]);
    assert_eq!(sessions(&second, "cdrs"), ["c0"]);
    assert_eq!(second["next_cursor"], Value::Null);
    // callerNum is the display number, calleeNum A, fwdDstNum B (click-to-call).
    assert_eq!(
        find(format!("number={}", encode(A))).await,
        ["c2", "c1", "c0"]
    );
    assert_eq!(
        find(format!("number={}", encode(B))).await,
        ["c2", "c1", "c0"]
    );
    assert_eq!(
        find(format!("number={}", encode(DISPLAY))).await,
        ["c3", "c2", "c1", "c0"]
    );
    assert_eq!(
        find(format!("number={}", encode("+8613900000004"))).await,
        ["c3"]
    );
    assert_eq!(find("app_key=app-2".into()).await, ["c3"]);
    assert_eq!(find("session_id=c1".into()).await, ["c1"]);
    // Call ends: answered calls end 70 s after their start.
    assert_eq!(
        find(format!("from={}", encode("2026-11-20T11:01:10Z"))).await,
        ["c3", "c2", "c1"]
    );
    assert_eq!(
        find(format!("to={}", encode("2026-11-20T11:01:10Z"))).await,
        ["c0"]
    );
    assert!(find("session_id=nobody".into()).await.is_empty());
}

/// A CDR with an unreadable callEndTime still lists, as of when it arrived.
#[sqlx::test]
async fn a_cdr_without_an_end_time_lists_as_of_its_arrival(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call::new("ended", hour(0)).deliver(&app).await;
    let odd = json!({"eventType": "fee", "feeLst": [{"sessionId": "odd", "icid": "i-odd", "callEndTime": "soon"}]});
    assert_eq!(
        app.post("/voicecall/fee", odd.to_string()).await.status(),
        200
    );

    let all = get_json(&app, "/v1/cdrs").await;

    assert_eq!(sessions(&all, "cdrs"), ["odd", "ended"]);
    assert_eq!(all["cdrs"][0]["call_end_time"], Value::Null);
    assert_eq!(
        all["cdrs"][0]["unparsed_times"],
        json!({"callEndTime": "soon"})
    );
}

/// CDRs of one push share their callEndTime (the platform batches by it), so pages often cut
/// through a run of equal sort keys: walking the pages, each CDR comes exactly once.
#[sqlx::test]
async fn pages_through_cdrs_with_one_call_end_time_miss_and_repeat_none(pool: PgPool) {
    let app = spawn_api(pool).await;
    for i in 0..7 {
        Call::new(&format!("same-{i}"), hour(5)).deliver(&app).await;
    }

    let seen = walk_pages(&app, "/v1/cdrs?limit=2", "cdrs").await;

    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (7, 7), "{seen:?}");
}
