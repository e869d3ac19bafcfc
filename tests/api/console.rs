//! The console over HTTP: logging in and out, the session cookie (what it holds, its
//! attributes, that `/v1` takes it), the CSRF check on cookie-authenticated changes, and that a
//! masked token sees no number on any page. The browser test is `console_browser`.

use callhook::http::console::session;
use reqwest::{Response, redirect::Policy};
use serde_json::Value;
use sqlx::PgPool;

use crate::{
    api_helpers::{A, B, Call, DISPLAY, FULL_TOKEN, MASKED_TOKEN, hour, spawn_api, spawn_api_with},
    helpers::TestApp,
};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn origin(app: &TestApp) -> String {
    format!("http://{}", app.addr)
}

async fn login_as(app: &TestApp, token: &str) -> Response {
    client()
        .post(app.url("/console/login"))
        .header("origin", origin(app))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
}

/// The `name=value` of the session cookie a login answered with.
fn session_cookie(response: &Response) -> String {
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn login(app: &TestApp, token: &str) -> String {
    let response = login_as(app, token).await;
    assert_eq!(response.status(), 303);
    session_cookie(&response)
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let response = client()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A good token becomes an HttpOnly, SameSite=Strict cookie that holds no token, opens the
/// pages and `/v1`; a wrong one is refused with the form again and no cookie; logging out
/// makes the browser forget the cookie.
#[sqlx::test]
async fn a_token_logs_in_with_a_cookie_that_holds_no_token(pool: PgPool) {
    let app = spawn_api(pool).await;

    let form = client()
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert!(
        form.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        form.text()
            .await
            .unwrap()
            .contains(r#"type="password" name="token""#)
    );

    let answer = login_as(&app, FULL_TOKEN).await;
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/console");
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            attributes.contains(&attribute),
            "{attribute} in {set_cookie}"
        );
    }
    assert!(!attributes.contains(&"Secure"), "plain http: {set_cookie}");
    let cookie = session_cookie(&answer);
    assert!(cookie.starts_with("callhook_session="), "{cookie}");
    assert!(
        !cookie.contains(FULL_TOKEN) && !cookie.contains("full-token"),
        "{cookie}"
    );

    let (status, live) = page(&app, "/console", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        live.contains("<h1>Live calls</h1>") && live.contains(">ops<"),
        "{live}"
    );
    let calls = client()
        .get(app.url("/v1/calls"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(calls.status(), 200, "/v1 takes the cookie");

    for wrong in [
        "",
        "wrong-token-0123456789abcdef",
        &format!("{FULL_TOKEN}x"),
    ] {
        let refused = login_as(&app, wrong).await;
        assert_eq!(refused.status(), 401, "{wrong:?}");
        assert!(refused.headers().get("set-cookie").is_none());
        let body = refused.text().await.unwrap();
        assert!(
            body.contains("not one of the configured api.tokens"),
            "{body}"
        );
    }

    let logout = client()
        .post(app.url("/console/logout"))
        .header("origin", origin(&app))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    assert_eq!(logout.headers()["location"], "/console/login");
    let cleared = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("callhook_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

/// Secure is set when the login came over https (the browser's Origin, or a trusted proxy's
/// X-Forwarded-Proto), or always when configured; a login or logout from another origin is
/// refused.
#[sqlx::test]
async fn the_cookie_is_secure_over_https_and_logins_come_from_this_origin(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |c| c.http.trust_forwarded_headers = true).await;
    let host = app.addr.to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = client()
            .post(app.url("/console/login"))
            .body(format!("token={FULL_TOKEN}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let https = post(vec![("origin", format!("https://{host}"))])
        .await
        .unwrap();
    assert_eq!(https.status(), 303);
    assert!(
        https.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
    let proxied = post(vec![
        ("origin", "https://calls.example".into()),
        ("x-forwarded-host", "calls.example".into()),
        ("x-forwarded-proto", "https".into()),
    ])
    .await
    .unwrap();
    assert_eq!(proxied.status(), 303);
    assert!(
        proxied.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
    for headers in [
        vec![],
        vec![("origin", "http://evil.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![
            ("sec-fetch-site", "cross-site".to_owned()),
            ("origin", format!("http://{host}")),
        ],
    ] {
        let refused = post(headers.clone()).await.unwrap();
        assert_eq!(refused.status(), 403, "{headers:?}");
        assert!(refused.headers().get("set-cookie").is_none());
    }
    let logout = client()
        .post(app.url("/console/logout"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 403);
    assert!(logout.headers().get("set-cookie").is_none());

    let always = spawn_api_with(pool, |c| {
        c.console.secure_cookie = callhook::config::SecureCookie::Always;
    })
    .await;
    let answer = login_as(&always, FULL_TOKEN).await;
    assert!(
        answer.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
}

/// Without a valid session the pages send the browser to the login page and `/v1` answers
/// 401: no cookie, a forged or altered one, an expired one, or one of a token no longer
/// configured.
#[sqlx::test]
async fn pages_need_a_valid_unexpired_session(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let good = login(&app, MASKED_TOKEN).await;
    let value = good.trim_start_matches("callhook_session=");
    let parts: Vec<&str> = value.split('.').collect();
    let ops: Vec<callhook::config::ApiToken> = serde_json::from_value(serde_json::json!([
        {"token": FULL_TOKEN, "name": "ops", "scope": "full"},
    ]))
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cases = [
        ("none", String::new()),
        (
            "altered expiry",
            format!(
                "callhook_session={}.{}.{}",
                parts[0],
                now + 999_999,
                parts[2]
            ),
        ),
        (
            "other name",
            format!("callhook_session=b3Bz.{}.{}", parts[1], parts[2]),
        ),
        (
            "expired",
            format!("callhook_session={}", session::issue(&ops[0], now - 1)),
        ),
        ("junk", "callhook_session=junk".to_owned()),
        ("the token itself", format!("callhook_session={FULL_TOKEN}")),
    ];
    for (case, cookie) in &cases {
        for path in [
            "/console",
            "/console/operations",
            "/console/refused",
            "/console/calls/x",
            "/console/live/rows",
            "/console/kpis",
        ] {
            let response = client()
                .get(app.url(path))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 303, "{case} {path}");
            assert_eq!(
                response.headers()["location"],
                "/console/login",
                "{case} {path}"
            );
        }
        if cookie.is_empty() {
            continue;
        }
        let api = client()
            .get(app.url("/v1/calls"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 401, "{case}");
        let body: Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "session_invalid", "{case}");
    }
    // A session of a token the configuration no longer has: the same database, other tokens.
    let rotated = spawn_api_with(pool, |c| {
        c.api.tokens = serde_json::from_value(serde_json::json!([
            {"token": "rotated-token-0123456789abcdef", "name": "dashboard", "scope": "masked"},
        ]))
        .unwrap();
    })
    .await;
    let (status, _) = page(&rotated, "/console", &good).await;
    assert_eq!(status, 303, "a rotated token's sessions end");
    let (status, _) = page(&app, "/console", &good).await;
    assert_eq!(
        status, 200,
        "the good cookie still works where its token is"
    );
}

/// A change made with the cookie needs the console's header and this origin; the same request
/// with a bearer token needs neither; a masked session may not change anything.
#[sqlx::test]
async fn cookie_authenticated_changes_pass_the_csrf_check(pool: PgPool) {
    let app = spawn_api(pool).await;
    let refused = app.post("/voicecall/status", "not json").await;
    assert_eq!(refused.status(), 400);
    let id: uuid::Uuid = sqlx::query_scalar("select id from raw_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let path = format!("/v1/refused/{id}/reprocess");
    let full = login(&app, FULL_TOKEN).await;
    let masked = login(&app, MASKED_TOKEN).await;
    let host = origin(&app);
    let post = |cookie: &str, headers: &[(&'static str, &str)]| {
        let mut request = client().post(app.url(&path)).header("cookie", cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for (case, headers) in [
        ("nothing", vec![]),
        ("no console header", vec![("origin", host.as_str())]),
        ("no origin", vec![("x-callhook-console", "1")]),
        (
            "another origin",
            vec![
                ("x-callhook-console", "1"),
                ("origin", "http://evil.example"),
            ],
        ),
        (
            "cross-site",
            vec![
                ("x-callhook-console", "1"),
                ("origin", host.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        let answer = post(&full, &headers).await.unwrap();
        assert_eq!(answer.status(), 403, "{case}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf_check_failed", "{case}");
    }
    let console = [("x-callhook-console", "1"), ("origin", host.as_str())];
    let answer = post(&masked, &console).await.unwrap();
    assert_eq!(answer.status(), 403);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "scope_insufficient");
    let answer = post(&full, &console).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["outcome"], "rejected", "still unreadable: {body}");
    let bearer = client()
        .post(app.url(&path))
        .bearer_auth(FULL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        200,
        "a bearer token is no cookie: no CSRF check"
    );
    // A bearer header wins over a cookie: a bad token is not rescued by a good cookie.
    let both = client()
        .get(app.url("/v1/calls"))
        .bearer_auth("wrong-token-0123456789abcdef")
        .header("cookie", &full)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 401);
}

/// Every page a masked session can open shows no phone number (A, B, the display number),
/// refuses the number filter, and offers no reprocessing; a full session sees the numbers.
#[sqlx::test]
async fn a_masked_session_sees_no_number_on_any_page(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call::new("masked-1", hour(0)).deliver(&app).await;
    Call {
        answered: false,
        ..Call::new("masked-2", hour(1))
    }
    .deliver(&app)
    .await;
    assert_eq!(
        app.post(
            "/voicecall/status",
            format!(r#"{{"eventType":"answer","statusInfo":{{"caller":"{A}"}}}}"#)
        )
        .await
        .status(),
        400
    );
    let masked = login(&app, MASKED_TOKEN).await;
    let full = login(&app, FULL_TOKEN).await;
    let paths = [
        "/console",
        "/console/live/rows",
        "/console/calls/masked-1",
        "/console/calls/masked-2",
        "/console/refused",
        "/console/operations",
        "/console/kpis?from=2026-11-20T00:00&to=2026-11-21T00:00",
    ];
    for path in paths {
        let (status, body) = page(&app, path, &masked).await;
        assert_eq!(status, 200, "{path}: {body}");
        for number in [A, B, DISPLAY] {
            let digits = number.trim_start_matches('+');
            assert!(!body.contains(digits), "{number} on {path}");
        }
    }
    let (_, call) = page(&app, "/console/calls/masked-1", &masked).await;
    assert!(call.contains("+86*********01"), "masked, not left out");
    let (_, refused) = page(&app, "/console/refused", &masked).await;
    assert!(!refused.contains("data-reprocess"));
    let (status, body) = page(&app, "/console?number=%2B8613800000001", &masked).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cannot filter on number"), "{body}");

    let (_, call) = page(&app, "/console/calls/masked-1", &full).await;
    for number in [A, B, DISPLAY] {
        assert!(call.contains(number), "{number} for full");
    }
    let (_, refused) = page(&app, "/console/refused", &full).await;
    assert!(refused.contains("data-reprocess"));
    let (status, filtered) = page(
        &app,
        "/console/live/rows?number=%2B8613800000001&outcome=busy",
        &full,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        filtered.contains("masked-2") && !filtered.contains("masked-1"),
        "{filtered}"
    );
    let (status, body) = page(&app, "/console?outcome=won", &full).await;
    assert_eq!(status, 400);
    assert!(body.contains("outcome"), "{body}");
    let (status, _) = page(&app, "/console/calls/nobody", &full).await;
    assert_eq!(status, 404);
}

/// The assets are compiled in and served without a session; nothing else is.
#[sqlx::test]
async fn the_assets_are_embedded(pool: PgPool) {
    let app = spawn_api(pool).await;
    for (file, kind) in [
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
    ] {
        let response = client()
            .get(app.url(&format!("/console/assets/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            !response.text().await.unwrap().contains("://"),
            "{file} loads nothing from elsewhere"
        );
    }
    let missing = client()
        .get(app.url("/console/assets/../../config.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The KPI page shows what `store::kpis` computes for the range, with the exact values beside
/// the rounded ones, and refuses a range `/v1/kpis` would refuse.
#[sqlx::test]
async fn the_kpi_page_shows_the_figures_of_its_range(pool: PgPool) {
    let app = spawn_api(pool).await;
    Call::new("kpi-1", hour(0)).deliver(&app).await;
    Call {
        answered: false,
        ..Call::new("kpi-2", hour(1))
    }
    .deliver(&app)
    .await;
    Call::new("kpi-outside", hour(30)).deliver(&app).await;
    let cookie = login(&app, MASKED_TOKEN).await;
    let (status, body) = page(
        &app,
        "/console/kpis?from=2026-11-20T10:00&to=2026-11-20T12:00",
        &cookie,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for tile in [
        r#"data-kpi="calls" data-value="2""#,
        r#"data-kpi="asr" data-value="0.5""#,
        r#"data-kpi="ner" data-value="1""#,
        r#"data-kpi="acd_seconds" data-value="60""#,
        // These calls have no alerting event: no post-dial delay to average.
        r#"data-kpi="pdd_seconds" data-value="""#,
    ] {
        assert!(body.contains(tile), "{tile} in {body}");
    }
    assert!(body.contains("50.0 %") && body.contains("8102"), "{body}");
    for (query, field) in [
        ("from=2026-11-20T12:00&to=2026-11-20T10:00", "to"),
        ("from=2026-01-01T00:00&to=2026-11-20T10:00", "to"),
        (
            "from=2026-11-20T10:00&to=2026-11-20T12:00&scenario=nope",
            "scenario",
        ),
        ("from=yesterday", "from"),
    ] {
        let (status, body) = page(&app, &format!("/console/kpis?{query}"), &cookie).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(field), "{query}: {body}");
    }
}
