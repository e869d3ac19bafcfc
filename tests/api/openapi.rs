//! `GET /openapi.json`: real answers validate against the schemas the document declares for
//! their path, method and status.

use callhook::store::placed_calls::{self, PlacedCall, PlacedOutcome};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use crate::{
    api_helpers::{Call, FULL_TOKEN, MASKED_TOKEN, hour, spawn_api, spawn_api_with},
    helpers::{CALLOUT_SAMPLE, FEE_SAMPLE, TestApp},
};

/// Replaces every `{"$ref": "#/components/schemas/X"}` with the schema it names, so one
/// response schema can be validated on its own. A reference inside the schema it names (the
/// recursive `StorableJson`) becomes `true`: the check is only weaker below that depth.
fn inline_refs(schema: &Value, components: &Map<String, Value>, depth: usize) -> Value {
    inline(schema, components, &mut Vec::new(), depth)
}

fn inline(
    schema: &Value,
    components: &Map<String, Value>,
    within: &mut Vec<String>,
    depth: usize,
) -> Value {
    assert!(depth < 64, "a schema too deep");
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("an unexpected $ref {reference}"));
                let target = components
                    .get(name)
                    .unwrap_or_else(|| panic!("no component {name}"));
                if within.iter().any(|n| n == name) {
                    return Value::Bool(true);
                }
                within.push(name.to_owned());
                let inlined = inline(target, components, within, depth + 1);
                within.pop();
                return inlined;
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(v, components, within, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, components, within, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON nulls appear nowhere in `value` (an OpenAPI document has none where a value belongs).
fn assert_no_nulls(value: &Value, at: &str) {
    match value {
        Value::Null => panic!("null at {at}"),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{at}/{i}"))),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| assert_no_nulls(v, &format!("{at}/{k}"))),
        _ => {}
    }
}

struct Document(Value);

impl Document {
    async fn fetch(app: &TestApp) -> Self {
        let response = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "no token needed");
        Self(response.json().await.unwrap())
    }

    /// The JSON schema declared for an answer, with its references inlined.
    fn response_schema(&self, method: &str, path: &str, status: u16) -> Value {
        let operation = &self.0["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let schema =
            &operation["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} declares no JSON body for {status}"
        );
        let components = self.0["components"]["schemas"].as_object().unwrap();
        inline_refs(schema, components, 0)
    }

    /// The headers a 200 of a callback endpoint carries have the values the document lists.
    fn check_headers(&self, method: &str, path: &str, response: &reqwest::Response) {
        let headers = &self.0["paths"][path][method]["responses"]["200"]["headers"];
        let components = self.0["components"]["schemas"].as_object().unwrap();
        for name in [
            "x-callhook-outcome",
            "x-callhook-kept-in",
            "x-callhook-callback-id",
        ] {
            let schema = inline_refs(&headers[name]["schema"], components, 0);
            let value = response.headers()[name].to_str().unwrap();
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap();
            assert!(
                validator.is_valid(&json!(value)),
                "{name}: {value} is not {schema}"
            );
        }
    }

    /// Asserts that a real answer is what the document says it is.
    async fn check(&self, method: &str, path: &str, response: reqwest::Response) -> Value {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        let schema = self.response_schema(method, path, status);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("the schema of {method} {path} {status} is invalid: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match its schema: {errors:#?}\n{body}"
        );
        body
    }
}

/// Every kind of answer of the read API, and the callback endpoints' answers, match the
/// document; the document covers every route and declares the bearer scheme.
#[sqlx::test]
async fn real_answers_match_the_openapi_document(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let call = Call::new("doc-1", hour(0));
    placed_calls::record(&pool, &placed("doc-1")).await.unwrap();
    call.deliver(&app).await;
    Call {
        with_cdr: false,
        answered: false,
        ..Call::new("doc-2", time::macros::datetime!(2020-01-01 00:00 UTC))
    }
    .deliver(&app)
    .await;
    assert_eq!(
        app.post(
            "/voicecall/fee",
            "{\"eventType\":\"fee\",\"feeLst\":[{\"callEndTime\":1}]}"
        )
        .await
        .status(),
        400
    );
    let doc = Document::fetch(&app).await;
    let get = |path: &str, token: &str| app.client.get(app.url(path)).bearer_auth(token).send();

    let doc_calls = doc
        .check(
            "get",
            "/v1/calls",
            get("/v1/calls?limit=1", FULL_TOKEN).await.unwrap(),
        )
        .await;
    doc.check(
        "get",
        "/v1/calls",
        get("/v1/calls", MASKED_TOKEN).await.unwrap(),
    )
    .await;
    doc.check(
        "get",
        "/v1/calls",
        get("/v1/calls?limit=0", FULL_TOKEN).await.unwrap(),
    )
    .await;
    let detail = doc
        .check(
            "get",
            "/v1/calls/{session_id}",
            get("/v1/calls/doc-1", FULL_TOKEN).await.unwrap(),
        )
        .await;
    assert!(detail["placed_call"].is_object());
    doc.check(
        "get",
        "/v1/calls/{session_id}",
        get("/v1/calls/doc-1", MASKED_TOKEN).await.unwrap(),
    )
    .await;
    doc.check(
        "get",
        "/v1/calls/{session_id}",
        get("/v1/calls/nobody", FULL_TOKEN).await.unwrap(),
    )
    .await;
    doc.check(
        "get",
        "/v1/cdrs",
        get("/v1/cdrs", FULL_TOKEN).await.unwrap(),
    )
    .await;
    let kpis = doc
        .check(
            "get",
            "/v1/kpis",
            get(
                "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T12:00:00Z",
                FULL_TOKEN,
            )
            .await
            .unwrap(),
        )
        .await;
    assert_eq!(kpis["calls"], 1, "{kpis}");
    doc.check(
        "get",
        "/v1/kpis",
        get(
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T10:00:00Z",
            FULL_TOKEN,
        )
        .await
        .unwrap(),
    )
    .await;
    let rejected = doc
        .check(
            "get",
            "/v1/refused",
            get("/v1/refused", FULL_TOKEN).await.unwrap(),
        )
        .await;
    assert_eq!(rejected["callbacks"].as_array().unwrap().len(), 1);
    let gaps = doc
        .check(
            "get",
            "/v1/gaps",
            get("/v1/gaps", FULL_TOKEN).await.unwrap(),
        )
        .await;
    assert_eq!(gaps["calls"].as_array().unwrap().len(), 1);
    doc.check(
        "get",
        "/v1/calls",
        get("/v1/calls", "wrong-token").await.unwrap(),
    )
    .await;
    let id = rejected["callbacks"][0]["id"].as_str().unwrap();
    let post =
        |path: String, token: &str| app.client.post(app.url(&path)).bearer_auth(token).send();
    doc.check(
        "post",
        "/v1/refused/{id}/reprocess",
        post(format!("/v1/refused/{id}/reprocess"), FULL_TOKEN)
            .await
            .unwrap(),
    )
    .await;
    doc.check(
        "post",
        "/v1/refused/{id}/reprocess",
        post(format!("/v1/refused/{id}/reprocess"), MASKED_TOKEN)
            .await
            .unwrap(),
    )
    .await;
    doc.check(
        "post",
        "/v1/refused/reprocess",
        post("/v1/refused/reprocess".into(), FULL_TOKEN)
            .await
            .unwrap(),
    )
    .await;
    doc.check(
        "post",
        "/voicecall/status",
        app.post("/voicecall/status", "not json").await,
    )
    .await;
    doc.check(
        "post",
        "/voicecall/status",
        app.post("/voicecall/status", call.callbacks()[0].1.clone())
            .await,
    )
    .await;
    let fee = app.post("/voicecall/fee", call.fee_body()).await;
    doc.check_headers("post", "/voicecall/fee", &fee);
    let fee_ack = doc.check("post", "/voicecall/fee", fee).await;
    assert_eq!(fee_ack["resultcode"], "0");
    let status = app
        .post("/voicecall/events", call.callbacks()[0].1.clone())
        .await;
    assert_eq!(status.headers()["x-callhook-outcome"], "accepted");
    doc.check_headers("post", "/voicecall/events", &status);
    doc.check("post", "/voicecall/events", status).await;
    doc.check(
        "post",
        "/voicecall/status",
        app.post("/voicecall/status", vec![b'{'; 2 << 20]).await,
    )
    .await;
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        doc.check("get", path, response).await;
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        doc.0["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object()
    );
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for path in ["/v1/calls", "/v1/cdrs", "/v1/calls.csv"] {
        let query = format!("{path}?number=%2B8613800000001");
        let refused = get(&query, MASKED_TOKEN).await.unwrap();
        assert_eq!(refused.status(), 403, "{query}");
        doc.check("get", path, refused).await;
    }
    doc.check(
        "get",
        "/v1/calls/{session_id}",
        get("/v1/calls/%FF", FULL_TOKEN).await.unwrap(),
    )
    .await;
    let too_old = get("/v1/gaps?older_than=18446744073709551615", FULL_TOKEN)
        .await
        .unwrap();
    assert_eq!(too_old.status(), 400);
    let too_old = doc.check("get", "/v1/gaps", too_old).await;
    assert_eq!(too_old["error"]["field"], "older_than");

    let routes = callhook::http::routes();
    for (path, item) in doc.0["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes
                    .iter()
                    .any(|(m, p)| p == path && m.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not routed"
            );
        }
    }
    for (method, path) in routes {
        let method = method.as_str().to_ascii_lowercase();
        let operation = &doc.0["paths"][path][&method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let secured = operation["security"].to_string().contains("bearer");
        assert_eq!(secured, path.starts_with("/v1"), "{method} {path} security");
    }
    // A path that moved is documented where it was: deprecated, a 308 to where it went, with
    // the parameters and the token the new one takes.
    let moved = callhook::http::moved();
    assert_eq!(moved.len(), 3, "{moved:?}");
    for (method, from, to) in moved {
        let method = method.as_str().to_ascii_lowercase();
        let old = &doc.0["paths"][from][&method];
        let new = &doc.0["paths"][to][&method];
        assert_eq!(old["deprecated"], true, "{method} {from}");
        assert!(
            old["responses"]["308"]["headers"]["Location"].is_object(),
            "{method} {from}: {old}"
        );
        assert_eq!(old["parameters"], new["parameters"], "{method} {from}");
        assert_eq!(old["security"], new["security"], "{method} {from}");
        assert!(new["deprecated"].is_null(), "{method} {to}");
    }
    // The console's routes are for people, not programs: they are listed apart by the router
    // (`Routes::page`), none is in the document, and each answers HTML or sends the browser to
    // the login page, never an API answer.
    let pages = callhook::http::pages();
    assert!(pages.len() >= 5, "{pages:?}");
    for (method, path) in pages {
        assert!(
            path.starts_with("/console"),
            "{method} {path} is a page outside /console"
        );
        assert!(
            doc.0["paths"][path].is_null(),
            "{method} {path} is a console page, not API"
        );
        if method != axum::http::Method::GET {
            continue;
        }
        let url = path
            .replace("{session_id}", "doc-1")
            .replace("{file}", "console.css");
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(app.url(&url))
            .send()
            .await
            .unwrap();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let login = location.as_deref() == Some("/console/login");
        // A page that moved (a bookmark) sends the browser on to another page.
        let moved_to_page = location
            .as_deref()
            .is_some_and(|l| callhook::http::pages().iter().any(|(_, p)| *p == l));
        assert!(
            (response.status() == 200
                && (kind.starts_with("text/html") || kind.starts_with("text/css")))
                || (response.status() == 303 && login)
                || (response.status() == 308 && moved_to_page),
            "GET {url}: {} {kind}",
            response.status()
        );
    }
    assert_eq!(
        doc.0["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": "One of the tokens of config api.tokens"})
    );
    assert!(doc.0["openapi"].as_str().unwrap().starts_with("3."));
    // The check is not vacuous: a wrong answer fails it.
    let schema = doc.response_schema("get", "/v1/calls", 200);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap();
    let mut wrong = doc_calls.clone();
    wrong["calls"][0]["has_cdr"] = json!("yes");
    assert!(validator.is_valid(&doc_calls));
    assert!(!validator.is_valid(&wrong));
    assert!(!validator.is_valid(&json!({"calls": [{}], "next_cursor": null})));
    // Every reference in the document (parameters included) names a component, and nothing
    // is null where the specification wants an object or an array.
    let components = doc.0["components"]["schemas"].as_object().unwrap();
    inline_refs(&doc.0["paths"], components, 0);
    assert_no_nulls(&doc.0["paths"], "paths");
}

fn placed(session: &str) -> PlacedCall {
    let now = time::OffsetDateTime::now_utc();
    PlacedCall {
        id: uuid::Uuid::now_v7(),
        operation: "click2call",
        app_key: "app-1".into(),
        request: json!({"displayNbr": "+867550000001", "callerNbr": "+8613800000001",
                        "displayCalleeNbr": "+867550000001", "calleeNbr": "+8613800000002"}),
        response: Some(json!({"resultcode": "0", "resultdesc": "Success", "sessionId": session})),
        http_status: Some(200),
        result_code: Some("0".into()),
        result_desc: Some("Success".into()),
        session_id: Some(session.into()),
        user_data: None,
        outcome: PlacedOutcome::Accepted,
        error: None,
        attempts: 1,
        requested_at: now,
        answered_at: Some(now),
    }
}

/// The constraints the document states are the server's: the page size bounds are the
/// configuration's (and the server takes the largest and refuses one more), callback bodies
/// without a sessionId are invalid by the document and refused by the server, the sample
/// bodies valid and taken; the header of outcomes lists every outcome a 200 can carry.
#[sqlx::test]
async fn the_document_states_the_constraints_the_server_enforces(pool: PgPool) {
    let app = spawn_api_with(pool, |config| {
        config.api.max_limit = 7;
        config.api.default_limit = 5;
    })
    .await;
    let doc = Document::fetch(&app).await;
    for path in ["/v1/calls", "/v1/cdrs", "/v1/gaps", "/v1/refused"] {
        let parameters = doc.0["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = parameters.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["minimum"], 1, "{path}");
        assert_eq!(limit["schema"]["maximum"], 7, "{path}");
        let at = |limit: u32| {
            app.client
                .get(app.url(&format!("{path}?limit={limit}")))
                .bearer_auth(FULL_TOKEN)
                .send()
        };
        assert_eq!(at(7).await.unwrap().status(), 200, "{path}");
        assert_eq!(at(8).await.unwrap().status(), 400, "{path}");
        assert_eq!(at(0).await.unwrap().status(), 400, "{path}");
        for parameter in parameters {
            let schema = &parameter["schema"];
            if schema["type"] == "string" && schema["format"].is_null() && schema["enum"].is_null()
            {
                // A cursor is Base64url, which holds no NUL either.
                let pattern = schema["pattern"].as_str().unwrap_or_default();
                assert!(
                    [r"^[^\u0000]*$", "^[A-Za-z0-9_-]+=*$"].contains(&pattern),
                    "{path} {parameter}"
                );
            }
        }
    }

    let components = doc.0["components"]["schemas"].as_object().unwrap();
    for path in ["/voicecall/status", "/voicecall/fee", "/voicecall/events"] {
        let schema =
            &doc.0["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&inline_refs(schema, components, 0))
            .unwrap();
        let no_session = json!({"eventType": "answer", "statusInfo": {"caller": "+8613800000001"}});
        let empty_session = json!({"eventType": "answer", "statusInfo": {"sessionId": ""}});
        let no_readable_cdr = json!({"eventType": "fee", "feeLst": [{"callerNum": "1"}]});
        let one_readable_cdr =
            json!({"eventType": "fee", "feeLst": [{"callerNum": "1"}, {"sessionId": "s"}]});
        let nul_in_unknown =
            json!({"eventType": "answer", "statusInfo": {"sessionId": "s", "x": {"y\u{0}": 1}}});
        for (body, valid, status) in [
            (
                json!(serde_json::from_str::<Value>(CALLOUT_SAMPLE).unwrap()),
                true,
                200,
            ),
            (serde_json::from_str(FEE_SAMPLE).unwrap(), true, 200),
            (one_readable_cdr, true, 200),
            (no_session, false, 400),
            (empty_session, false, 400),
            (no_readable_cdr, false, 400),
            (nul_in_unknown, false, 400),
        ] {
            assert_eq!(validator.is_valid(&body), valid, "{path}: {body}");
            let answer = app.post(path, body.to_string()).await;
            assert_eq!(answer.status(), status, "{path}: {body}");
        }
    }
    let outcomes = &components["CallbackOutcome"]["enum"];
    for outcome in ["accepted", "partial", "unrecognized"] {
        assert!(
            outcomes.as_array().unwrap().contains(&json!(outcome)),
            "{outcomes}"
        );
    }
}
