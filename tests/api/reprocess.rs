//! Refused callbacks: listing them, and reprocessing them after a parser fix, over the API and
//! from the command line.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use callhook::config::SignatureMode;

use crate::{
    api_helpers::{
        FULL_TOKEN, MASKED_TOKEN, get_json, get_json_as, post_as, spawn_api, spawn_api_with,
    },
    helpers::{callback_id, database_url, status_body},
};

/// Keeps a request as an older parser would have: refused (`outcome`), with its error.
async fn keep_refused(pool: &PgPool, body: &str, outcome: &str, minutes_ago: i32) -> Uuid {
    keep_refused_with_verdict(pool, body, outcome, "not_checked", minutes_ago).await
}

/// The same, with the signature verdict it was given when it arrived.
async fn keep_refused_with_verdict(
    pool: &PgPool,
    body: &str,
    outcome: &str,
    verdict: &str,
    minutes_ago: i32,
) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into raw_callbacks (id, received_at, endpoint, method, path, headers, body, event_type,
             signature_verdict, outcome, http_status, error)
         values ($1, now() - make_interval(mins => $2), 'status', 'POST', '/voicecall/status', '{}', $3,
                 'callout', $6, $4, 400, $5)",
    )
    .bind(id)
    .bind(minutes_ago)
    .bind(body.as_bytes())
    .bind(outcome)
    .bind(json!({"code": "invalid_field", "field": "statusInfo.caller", "message": "an older parser refused +8613800000001"}))
    .bind(verdict)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A callback an older parser refused, which today's parser reads, is stored on reprocessing
/// (its event and its call appear, under the original request); reprocessing it again finds it
/// stored already: idempotent.
#[sqlx::test]
async fn a_callback_refused_by_an_older_parser_is_stored_once_on_reprocessing(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let body = status_body("callout", "fixed-1", json!({}));
    let id = keep_refused(&pool, &body, "rejected", 60).await;
    let path = format!("/v1/refused/{id}/reprocess");

    let first = post_as(&app, &path, FULL_TOKEN).await;
    let first_status = first.status();
    let first: Value = first.json().await.unwrap();
    let events: Vec<(Uuid, String)> =
        sqlx::query_as("select raw_callback_id, session_id from call_events")
            .fetch_all(&pool)
            .await
            .unwrap();
    let call = get_json(&app, "/v1/calls/fixed-1").await;
    let second: Value = post_as(&app, &path, FULL_TOKEN).await.json().await.unwrap();
    let listed = get_json(&app, "/v1/refused").await;

    assert_eq!(first_status, 200);
    assert_eq!(first, json!({"id": id, "outcome": "stored", "error": null}));
    assert_eq!(events, [(id, "fixed-1".to_owned())]);
    assert_eq!(call["call"]["events"], 1);
    assert_eq!(call["raw_callbacks"][0]["id"], json!(id));
    assert_eq!(second["outcome"], "duplicate");
    let count: i64 = sqlx::query_scalar("select count(*) from call_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let kept = &listed["callbacks"][0];
    assert_eq!(kept["id"], json!(id));
    assert_eq!(kept["outcome"], "rejected", "the original verdict stays");
    assert_eq!(kept["reprocess_outcome"], "duplicate");
    assert!(kept["reprocessed_at"].is_string());
    assert_eq!(kept["error"]["code"], "invalid_field");
}

/// Reprocessing everything handles each refused callback, oldest first, and reports what each
/// came to: one still unreadable stays rejected with today's error, one of an eventType still
/// unknown stays unrecognized. In observe mode (the default) a signature verdict refuses nothing,
/// so a callback once refused for its signature (under enforce) is reprocessed too.
#[sqlx::test]
async fn reprocessing_everything_reports_each_callback(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let good = keep_refused(
        &pool,
        &status_body("callout", "fixed-2", json!({})),
        "rejected",
        30,
    )
    .await;
    let bad = keep_refused(&pool, "{not json", "rejected", 20).await;
    let unauthorized = keep_refused(
        &pool,
        &status_body("callout", "unsigned", json!({})),
        "unauthorized",
        10,
    )
    .await;
    let unrecognized = keep_refused(
        &pool,
        &status_body("callin", "still-unknown", json!({})),
        "unrecognized",
        5,
    )
    .await;

    let response = post_as(&app, "/v1/refused/reprocess", FULL_TOKEN).await;
    let status = response.status();
    let report: Value = response.json().await.unwrap();

    assert_eq!(status, 200, "{report}");
    let ids: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(
        ids,
        [
            &json!(good),
            &json!(bad),
            &json!(unauthorized),
            &json!(unrecognized)
        ]
    );
    assert_eq!(report["results"][0]["outcome"], "stored");
    assert_eq!(report["results"][1]["outcome"], "rejected");
    assert_eq!(report["results"][1]["error"]["code"], "invalid_json");
    assert_eq!(report["results"][2]["outcome"], "stored");
    assert_eq!(report["results"][3]["outcome"], "unrecognized");
    assert_eq!(report["results"][3]["error"]["code"], "unknown_event_type");
    assert_eq!(
        (report["stored"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let sessions: Vec<String> =
        sqlx::query_scalar("select session_id from call_events order by session_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sessions, ["fixed-2", "unsigned"]);
}

/// In enforce mode only what was validly signed is reprocessed: reprocessing must not store what
/// the mode in force would have refused. Reprocessing everything leaves the others out;
/// reprocessing one of them alone is refused 409 `signature_refused`.
#[sqlx::test]
async fn in_enforce_mode_only_validly_signed_callbacks_are_reprocessed(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |c| {
        c.signature.mode = SignatureMode::Enforce;
        c.apps =
            serde_json::from_value(json!([{"key": "ka4kTestAppKey01", "secrets": ["s"]}])).unwrap();
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let signed = keep_refused_with_verdict(
        &pool,
        &status_body("callout", "signed", json!({})),
        "rejected",
        "valid",
        30,
    )
    .await;
    let bad_digest = keep_refused_with_verdict(
        &pool,
        &status_body("callout", "bad-digest", json!({})),
        "unauthorized",
        "bad_digest",
        20,
    )
    .await;
    let unsigned = keep_refused(
        &pool,
        &status_body("callout", "unsigned", json!({})),
        "rejected",
        10,
    )
    .await;

    let report: Value = post_as(&app, "/v1/refused/reprocess", FULL_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let mut alone = Vec::new();
    for id in [bad_digest, unsigned] {
        let response = post_as(&app, &format!("/v1/refused/{id}/reprocess"), FULL_TOKEN).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        alone.push((status, body["error"]["code"].clone()));
    }

    assert_eq!(
        report["results"],
        json!([{"id": signed, "outcome": "stored", "error": null}])
    );
    let refused = (409, json!("signature_refused"));
    assert_eq!(alone, [refused.clone(), refused]);
    let sessions: Vec<String> = sqlx::query_scalar("select session_id from call_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, ["signed"], "nothing unauthenticated is stored");
}

/// What cannot be read again, or was never refused, is not reprocessed: 409 with the reason.
#[sqlx::test]
async fn what_cannot_be_reprocessed_is_refused_409_with_its_reason(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let truncated = keep_refused(&pool, r#"{"eventType":"callout","stat"#, "rejected", 30).await;
    let wrong_method = keep_refused(&pool, "", "rejected", 20).await;
    sqlx::query("update raw_callbacks set body_truncated = true where id = $1")
        .bind(truncated)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update raw_callbacks set method = 'GET' where id = $1")
        .bind(wrong_method)
        .execute(&pool)
        .await
        .unwrap();
    let accepted = app
        .post(
            "/voicecall/status",
            status_body("callout", "accepted", json!({})),
        )
        .await;
    let accepted = callback_id(&accepted);

    let mut answers = Vec::new();
    for id in [truncated, wrong_method, accepted] {
        let response = post_as(&app, &format!("/v1/refused/{id}/reprocess"), FULL_TOKEN).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        answers.push((status, body["error"]["code"].clone()));
    }
    let all: Value = post_as(&app, "/v1/refused/reprocess", FULL_TOKEN)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        answers,
        [
            (409, json!("body_truncated")),
            (409, json!("wrong_method")),
            (409, json!("not_refused")),
        ]
    );
    assert_eq!(
        all["results"],
        json!([]),
        "reprocessing everything skips them too"
    );
    let untouched: i64 =
        sqlx::query_scalar("select count(*) from raw_callbacks where reprocessed_at is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(untouched, 0);
    assert_eq!(app.count("call_events").await, 1, "only the accepted event");
}

/// `GET /v1/refused` lists refused callbacks newest first, unauthorized ones included, with
/// pages and an outcome filter; bodies and errors are masked for a masked token.
#[sqlx::test]
async fn refused_callbacks_are_listed_newest_first_and_masked_by_scope(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let older = keep_refused(
        &pool,
        &status_body("callout", "r-1", json!({})),
        "rejected",
        30,
    )
    .await;
    let newer = keep_refused(
        &pool,
        &status_body("callout", "r-2", json!({})),
        "unauthorized",
        10,
    )
    .await;
    let garbage = keep_refused(&pool, "caller +8613800000001 \u{1}", "rejected", 20).await;
    sqlx::query("update raw_callbacks set body = '\\xff00'::bytea where id = $1")
        .bind(garbage)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.post("/voicecall/status", "{}").await.status(), 400);

    let all = get_json(&app, "/v1/refused?limit=3").await;
    let cursor = all["next_cursor"].as_str().unwrap().to_owned();
    let rest = get_json(&app, &format!("/v1/refused?limit=3&cursor={cursor}")).await;
    let unauthorized = get_json(&app, "/v1/refused?outcome=unauthorized").await;
    let masked = get_json_as(&app, "/v1/refused", MASKED_TOKEN).await;

    let ids = |page: &Value| -> Vec<Value> {
        page["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect()
    };
    assert_eq!(ids(&all)[1..], [json!(newer), json!(garbage)]);
    assert_eq!(ids(&rest), [json!(older)]);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(ids(&unauthorized), [json!(newer)]);
    let garbage_full = &all["callbacks"][2];
    assert_eq!(garbage_full["body_encoding"], "base64");
    assert_eq!(garbage_full["body"], "/wA=");
    assert!(!masked.to_string().contains("8613800000001"), "{masked}");
    let masked_body = masked["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == json!(older))
        .unwrap();
    assert_eq!(masked_body["body_encoding"], "masked_json");
    let masked_garbage = masked["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == json!(garbage))
        .unwrap();
    assert_eq!(masked_garbage["body_encoding"], "omitted");
    assert_eq!(masked_garbage["body"], Value::Null);
}

/// Reprocessing changes what is stored, so it needs a full token; a bad or unknown id is a 400
/// or a 404.
#[sqlx::test]
async fn reprocessing_needs_a_full_token_and_a_known_id(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let id = keep_refused(
        &pool,
        &status_body("callout", "x", json!({})),
        "rejected",
        5,
    )
    .await;

    let masked = post_as(&app, &format!("/v1/refused/{id}/reprocess"), MASKED_TOKEN).await;
    let masked_all = post_as(&app, "/v1/refused/reprocess", MASKED_TOKEN).await;
    let not_a_uuid = post_as(&app, "/v1/refused/42/reprocess", FULL_TOKEN).await;
    let unknown = post_as(
        &app,
        &format!("/v1/refused/{}/reprocess", Uuid::now_v7()),
        FULL_TOKEN,
    )
    .await;

    assert_eq!(masked.status(), 403);
    assert_eq!(masked_all.status(), 403);
    assert_eq!(not_a_uuid.status(), 400);
    assert_eq!(unknown.status(), 404);
    let untouched: Option<String> =
        sqlx::query_scalar("select reprocess_outcome from raw_callbacks where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(untouched, None);
}

/// `callhook reprocess --id` and `--all` do the same from the command line and print a line per
/// callback.
#[sqlx::test]
async fn the_reprocess_command_prints_what_became_of_each_callback(pool: PgPool) {
    let id = keep_refused(
        &pool,
        &status_body("callout", "cli-1", json!({})),
        "rejected",
        5,
    )
    .await;
    let url = database_url(&pool);
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
                .args(args)
                .env("DATABASE_URL", url)
                .env("CALLHOOK_LOG__FILTER", "warn")
                .env_remove("RUST_LOG")
                .output()
                .await
                .expect("callhook runs")
        }
    };

    let one = run(vec!["reprocess".into(), "--id".into(), id.to_string()]).await;
    let all = run(vec!["reprocess".into(), "--all".into()]).await;
    let unknown = run(vec![
        "reprocess".into(),
        "--id".into(),
        Uuid::now_v7().to_string(),
    ])
    .await;
    let neither = run(vec!["reprocess".into()]).await;

    assert!(one.status.success(), "{one:?}");
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        format!("{id} stored\n")
    );
    assert!(all.status.success(), "{all:?}");
    assert_eq!(
        String::from_utf8_lossy(&all.stdout),
        format!(
            "{id} duplicate\nreprocessed 1: 0 stored, 1 duplicate, 0 partial, 0 still rejected, 0 still unrecognized\n"
        )
    );
    assert!(!unknown.status.success());
    assert!(!neither.status.success(), "--id or --all is required");
}

/// The refused-callback paths were `/v1/rejected…`: each old path answers 308 with the new one
/// (parameters and query as sent), and a client that follows redirects (reqwest, as curl -L)
/// gets the same answer there, a POST still a POST, the bearer token kept on the same host.
#[sqlx::test]
async fn the_old_rejected_paths_redirect_permanently_with_the_token(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let body = status_body("callout", "moved-1", json!({}));
    let id = keep_refused(&pool, &body, "rejected", 5).await;
    let not_following = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |response: &reqwest::Response| {
        (
            response.status().as_u16(),
            response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
        )
    };
    let old_list = not_following
        .get(app.url("/v1/rejected?outcome=rejected&limit=2"))
        .send()
        .await
        .unwrap();
    let old_one = not_following
        .post(app.url(&format!("/v1/rejected/{id}/reprocess")))
        .bearer_auth(FULL_TOKEN)
        .send()
        .await
        .unwrap();
    let old_all = not_following
        .post(app.url("/v1/rejected/reprocess"))
        .send()
        .await
        .unwrap();

    let listed = get_json(&app, "/v1/rejected?outcome=rejected").await;
    let reprocessed = post_as(&app, &format!("/v1/rejected/{id}/reprocess"), FULL_TOKEN).await;
    let reprocessed_status = reprocessed.status();
    let reprocessed: Value = reprocessed.json().await.unwrap();
    let again = post_as(&app, "/v1/rejected/reprocess", FULL_TOKEN).await;
    let again_status = again.status();
    let again: Value = again.json().await.unwrap();
    let without_token = app
        .client
        .get(app.url("/v1/rejected"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        location(&old_list),
        (308, Some("/v1/refused?outcome=rejected&limit=2".to_owned()))
    );
    assert_eq!(
        location(&old_one),
        (308, Some(format!("/v1/refused/{id}/reprocess")))
    );
    assert_eq!(
        location(&old_all),
        (308, Some("/v1/refused/reprocess".to_owned()))
    );
    assert_eq!(listed["callbacks"][0]["id"], json!(id));
    assert_eq!(reprocessed_status, 200, "{reprocessed}");
    assert_eq!(
        reprocessed,
        json!({"id": id, "outcome": "stored", "error": null})
    );
    assert_eq!(again_status, 200, "{again}");
    assert_eq!(again["duplicate"], 1, "{again}");
    assert_eq!(
        without_token.status(),
        401,
        "the new path still wants the token"
    );
    assert_eq!(app.count("call_events").await, 1);
}
