//! The callback endpoints of the real app, fed mutated sample bodies (`mutate`) over HTTP.

use callhook::http::callbacks::Endpoint;
use futures_util::StreamExt;
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::TestRunner,
};
use sqlx::PgPool;

use crate::{
    fuzz::config,
    helpers::{CALLOUT_SAMPLE, spawn_app},
    mutate::{mutated, seeds},
};

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 24;

/// `Authorization` values of every kind: the platform's (kept as sent), other schemes with a
/// credential (kept as `<scheme> [redacted]`), a bare credential (`[redacted]`), none.
fn authorization(i: usize) -> Option<String> {
    match i % 8 {
        0 => Some(r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#.into()),
        1 => Some(format!("Basic c2VjcmV0LXtp{i}")),
        2 => Some(format!("Bearer secret-{i}")),
        3 => Some(format!("secret{i}")),
        4 => Some(format!("wsse  realm=\"SDP\" {i}")),
        _ => None,
    }
}

/// ≥ 10,000 mutated bodies to the three endpoints, 24 at a time: none is answered 5xx, every
/// one is kept (one `raw_callbacks` row per request, whatever was answered), no credential of
/// a foreign `Authorization` is kept, and the server still answers afterwards.
#[sqlx::test]
async fn mutated_bodies_get_no_5xx_and_every_request_is_kept(pool: PgPool) {
    // Durability is not what this test is about, and waiting for a flush per refused request
    // would be most of its time: the app's connections (all opened after this) skip the wait.
    sqlx::query("select set_config('synchronous_commit', 'off', false)")
        .execute(&pool)
        .await
        .unwrap();
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "alter database \"{database}\" set synchronous_commit = off"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let app = spawn_app(pool.clone()).await;
    let seeds = seeds();
    let mut runner = TestRunner::new(config(1));
    // Huge bodies are the parser properties' business (`fuzz`); here they would only cost time.
    let strategy = mutated(16 * 1024);
    let requests: Vec<(usize, Vec<u8>)> = (0..REQUESTS)
        .map(|i| {
            let tree = strategy.new_tree(&mut runner).expect("a mutated body");
            (i, tree.current().body(&seeds))
        })
        .collect();

    let answers: Vec<(usize, u16)> = futures_util::stream::iter(requests)
        .map(|(i, body)| {
            let endpoint = Endpoint::ALL[i % Endpoint::ALL.len()];
            let mut request = app
                .client
                .post(app.url(endpoint.path()))
                .header("content-type", "application/json")
                .header("x-request-id", format!("fuzz-{i}"))
                .body(body);
            if let Some(value) = authorization(i) {
                request = request.header("authorization", value);
            }
            async move {
                let response = request.send().await.expect("the server answers");
                (i, response.status().as_u16())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let server_errors: Vec<&(usize, u16)> = answers.iter().filter(|(_, s)| *s >= 500).collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    let answered = |status: u16| answers.iter().filter(|(_, s)| *s == status).count();
    assert!(
        answered(200) > REQUESTS / 20,
        "too few accepted to test much"
    );
    assert!(answered(400) > REQUESTS / 2);
    let kept: i64 =
        sqlx::query_scalar("select count(*) from raw_callbacks where request_id like 'fuzz-%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, REQUESTS as i64, "one raw_callbacks row per request");

    let stored: Vec<(String, Option<String>)> = sqlx::query_as(
        "select request_id, headers->>'authorization' from raw_callbacks where request_id like 'fuzz-%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (request_id, kept) in stored {
        let i: usize = request_id["fuzz-".len()..].parse().unwrap();
        let expected = authorization(i).map(|sent| match i % 8 {
            0 | 4 => sent,
            1 => "Basic [redacted]".into(),
            2 => "Bearer [redacted]".into(),
            _ => "[redacted]".into(),
        });
        assert_eq!(kept, expected, "{request_id}");
    }

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        app.post("/voicecall/events", CALLOUT_SAMPLE).await.status(),
        200
    );
}
