//! Bearer tokens of `/v1`: refused without one or with a wrong one, and never written anywhere.

use std::process::Stdio;

use serde_json::Value;
use sqlx::PgPool;

use crate::{
    api_helpers::{Call, FULL_TOKEN, MASKED_TOKEN, get, hour, spawn_api},
    helpers::{spawn_app, spawn_binary, wait_until_healthy},
};

/// Every /v1 route answers 401 with a JSON error and `WWW-Authenticate: Bearer` when the token
/// is missing, not a bearer token, or not a configured one.
#[sqlx::test]
async fn requests_without_a_valid_token_are_refused_with_401(pool: PgPool) {
    let app = spawn_api(pool).await;
    let routes = [
        ("GET", "/v1/calls"),
        ("GET", "/v1/calls/some-session"),
        ("GET", "/v1/calls.csv"),
        ("GET", "/v1/cdrs"),
        ("GET", "/v1/cdrs.csv"),
        ("GET", "/v1/gaps"),
        ("GET", "/v1/refused"),
        ("POST", "/v1/refused/reprocess"),
        (
            "POST",
            "/v1/refused/0193a4b2-0000-7000-8000-000000000000/reprocess",
        ),
    ];
    let credentials: [(Option<&str>, &str); 5] = [
        (None, "token_missing"),
        (Some("Basic b3BzOnNlY3JldA=="), "token_missing"),
        (Some("Bearer"), "token_missing"),
        (
            Some("Bearer not-a-configured-token-at-all"),
            "token_invalid",
        ),
        (Some(&format!("Bearer {FULL_TOKEN}x")), "token_invalid"),
    ];
    for (method, path) in routes {
        for (authorization, code) in &credentials {
            let mut request = app.client.request(method.parse().unwrap(), app.url(path));
            if let Some(value) = authorization {
                request = request.header("authorization", *value);
            }
            let response = request.send().await.unwrap();
            let case = format!("{method} {path} with {authorization:?}");
            assert_eq!(response.status(), 401, "{case}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], *code, "{case}");
        }
    }
}

/// With no tokens configured, the read API is closed to everyone; `/openapi.json` stays open.
#[sqlx::test]
async fn without_configured_tokens_the_api_is_closed(pool: PgPool) {
    let app = spawn_app(pool).await;

    let calls = get(&app, "/v1/calls", FULL_TOKEN).await;
    let openapi = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(calls.status(), 401);
    assert_eq!(openapi.status(), 200);
}

/// Neither a valid nor a wrong token appears in any log line, at every level, or in any error
/// body; the log names the token's holder instead. The real binary logs at `trace` to stderr,
/// which the test reads (a subscriber inside the test process would share tracing's global
/// interest cache with the tests running beside it, and miss events).
#[sqlx::test]
async fn tokens_never_appear_in_logs_or_error_bodies(pool: PgPool) {
    let tokens = format!(
        r#"[{{token="{FULL_TOKEN}", name="ops", scope="full"}}, {{token="{MASKED_TOKEN}", name="dashboard", scope="masked"}}]"#
    );
    let (mut server, base) = spawn_binary(&pool, |command| {
        command
            .env("CALLHOOK_API__TOKENS", tokens)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped());
    });
    // Read the log as it comes: a full pipe would stall the server.
    let mut stderr = server.stderr.take().unwrap();
    let log_reader = tokio::spawn(async move {
        let mut logs = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut logs)
            .await
            .unwrap();
        logs
    });
    wait_until_healthy(&base).await;
    let client = reqwest::Client::new();
    let call = Call::new("logged", hour(0));
    for (path, body) in call.callbacks() {
        let response = client
            .post(format!("{base}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let wrong = "wrong-token-that-must-not-leak-0123";

    let mut bodies = String::new();
    for token in [FULL_TOKEN, MASKED_TOKEN, wrong] {
        for path in [
            "/v1/calls",
            "/v1/calls/logged",
            "/v1/calls.csv",
            "/v1/nothing",
        ] {
            let response = client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            bodies.push_str(&format!("{:?}", response.headers()));
            bodies.push_str(&response.text().await.unwrap());
        }
        let response = client
            .post(format!("{base}/v1/refused/reprocess"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        bodies.push_str(&response.text().await.unwrap());
    }
    // The console's login posts the token in a form and answers a session cookie, another
    // credential: neither is logged, even at trace.
    let mut cookies = Vec::new();
    for token in [FULL_TOKEN, MASKED_TOKEN, wrong] {
        let login = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{base}/console/login"))
            .header("origin", &base)
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        if let Some(cookie) = login.headers().get("set-cookie") {
            let cookie = cookie
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let page = client
                .get(format!("{base}/console"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200);
            bodies.push_str(&page.text().await.unwrap());
            cookies.push(cookie);
        }
        bodies.push_str(&login.text().await.unwrap());
    }
    assert_eq!(cookies.len(), 2);
    // Every line is on stderr as soon as it is logged (stderr is unbuffered), so a kill loses
    // none of them.
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let logs = log_reader.await.unwrap();
    let logs = String::from_utf8_lossy(&logs);
    // The server's database sessions end just after it does; let them go before the test
    // database is dropped.
    for _ in 0..50 {
        let others: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(logs.contains("api_client=\"ops\""), "{logs}");
    assert!(logs.contains("api_client=\"dashboard\""));
    assert!(logs.contains("unknown bearer token refused"));
    for token in [FULL_TOKEN, MASKED_TOKEN, wrong] {
        assert!(!logs.contains(token), "a token was logged");
        assert!(!bodies.contains(token), "a token was answered");
    }
    assert!(
        !logs.to_lowercase().contains("authorization"),
        "an Authorization header was logged"
    );
    assert!(logs.contains("console login"), "{logs}");
    for cookie in &cookies {
        let (_, value) = cookie.split_once('=').unwrap();
        assert!(!logs.contains(value), "a session cookie was logged");
    }
}
