//! The read API's test tools: an app with one token per scope, authenticated requests, and
//! calls made the way the platform makes them (posted callbacks).

use callhook::{config::TokenScope, platform::time::format_platform_time};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::helpers::{TestApp, spawn_app_with};

pub const FULL_TOKEN: &str = "full-token-0123456789abcdef";
pub const MASKED_TOKEN: &str = "masked-token-0123456789abcdef";

pub const A: &str = "+8613800000001";
pub const B: &str = "+8613800000002";
pub const DISPLAY: &str = "+867550000001";

/// The app with a `full` token ("ops") and a `masked` one ("dashboard").
pub async fn spawn_api(pool: PgPool) -> TestApp {
    spawn_api_with(pool, |_| {}).await
}

pub async fn spawn_api_with(
    pool: PgPool,
    configure: impl FnOnce(&mut callhook::config::Config),
) -> TestApp {
    spawn_app_with(pool, |config| {
        config.api.tokens = serde_json::from_value(json!([
            {"token": FULL_TOKEN, "name": "ops", "scope": "full"},
            {"token": MASKED_TOKEN, "name": "dashboard", "scope": "masked"},
        ]))
        .unwrap();
        assert_eq!(config.api.tokens[0].scope, TokenScope::Full);
        configure(config);
    })
    .await
}

/// GET with a bearer token; the status is checked by the caller.
pub async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request is sent")
}

/// GET with the full token, expecting 200 and JSON.
pub async fn get_json(app: &TestApp, path: &str) -> Value {
    get_json_as(app, path, FULL_TOKEN).await
}

pub async fn get_json_as(app: &TestApp, path: &str, token: &str) -> Value {
    let response = get(app, path, token).await;
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

pub async fn post_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request is sent")
}

/// A click-to-call as the platform reports it: A is called and answers, then B is called; B
/// answers and they talk 60 s (or B is busy); with or without its CDR.
#[derive(Clone)]
pub struct Call {
    pub session: String,
    pub start: OffsetDateTime,
    pub a: String,
    pub b: String,
    pub display: String,
    pub user_data: String,
    pub app_key: String,
    pub answered: bool,
    pub with_cdr: bool,
}

impl Call {
    pub fn new(session: &str, start: OffsetDateTime) -> Self {
        Self {
            session: session.into(),
            start,
            a: A.into(),
            b: B.into(),
            display: DISPLAY.into(),
            user_data: format!("order-{session}"),
            app_key: "app-1".into(),
            answered: true,
            with_cdr: true,
        }
    }

    fn at(&self, seconds: i64) -> String {
        format_platform_time(self.start + Duration::seconds(seconds))
    }

    fn event(&self, event_type: &str, seconds: i64, called: &str, extra: Value) -> String {
        let mut info = json!({
            "sessionId": self.session, "timestamp": self.at(seconds), "caller": self.display,
            "called": called, "userData": self.user_data,
        });
        info.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"eventType": event_type, "statusInfo": info}).to_string()
    }

    /// The CDR push of this call.
    pub fn fee_body(&self) -> String {
        let end = if self.answered { 70 } else { 12 };
        let mut cdr = json!({
            "direction": 1, "spId": "sp", "appKey": self.app_key, "icid": format!("icid-{}", self.session),
            "bindNum": self.display, "sessionId": self.session, "callerNum": self.display,
            "calleeNum": self.a, "fwdDisplayNum": self.display, "fwdDstNum": self.b,
            "callOutStartTime": self.at(0), "callOutAlertingTime": self.at(2),
            "callOutAnswerTime": self.at(5), "fwdStartTime": self.at(6), "fwdAlertingTime": self.at(8),
            "callEndTime": self.at(end), "callOutUnaswRsn": 0, "ulFailReason": 0, "recordFlag": 0,
            "serviceType": "002", "hostName": "callenabler245.huaweicaas.com", "userData": self.user_data,
        });
        if self.answered {
            cdr["fwdAnswerTime"] = json!(self.at(10));
            cdr["fwdUnaswRsn"] = json!(0);
        } else {
            cdr["fwdUnaswRsn"] = json!(17);
            cdr["sipStatusCode"] = json!(486);
            cdr["ulFailReason"] = json!(518);
        }
        json!({"eventType": "fee", "feeLst": [cdr]}).to_string()
    }

    /// Every callback of the call, in the order the platform sends them.
    pub fn callbacks(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            (
                "/voicecall/status",
                self.event("callout", 0, &self.a, json!({})),
            ),
            (
                "/voicecall/status",
                self.event("answer", 5, &self.a, json!({})),
            ),
            (
                "/voicecall/status",
                self.event("callout", 6, &self.b, json!({})),
            ),
        ];
        if self.answered {
            facts.push((
                "/voicecall/status",
                self.event("answer", 10, &self.b, json!({})),
            ));
            facts.push((
                "/voicecall/status",
                self.event(
                    "disconnect",
                    70,
                    &self.a,
                    json!({"stateCode": 0, "partyType": "1"}),
                ),
            ));
        } else {
            facts.push((
                "/voicecall/status",
                self.event("disconnect", 12, &self.b, json!({"stateCode": 8102})),
            ));
        }
        if self.with_cdr {
            facts.push(("/voicecall/fee", self.fee_body()));
        }
        facts
    }

    /// Posts every callback and checks each was taken.
    pub async fn deliver(&self, app: &TestApp) {
        for (path, body) in self.callbacks() {
            let response = app.post(path, body).await;
            assert_eq!(response.status(), 200, "{path} for {}", self.session);
        }
    }
}

/// A fixed start time, `hours` after 2026-11-20 10:00 UTC.
pub fn hour(hours: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-11-20 10:00 UTC) + Duration::hours(hours)
}

/// The session ids of a list answer, in order.
pub fn sessions(page: &Value, list: &str) -> Vec<String> {
    page[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {page}"))
        .iter()
        .map(|item| item["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The session ids of every page of `list` at `path` (e.g. `/v1/cdrs?limit=2`), following
/// `next_cursor` to the end (at most 50 pages).
pub async fn walk_pages(app: &TestApp, path: &str, list: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let query = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let page = get_json(app, &query).await;
        seen.extend(sessions(&page, list));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
    panic!("more than 50 pages of {path}: {seen:?}");
}

/// Percent-encodes a query value (RFC 3339 offsets have a '+').
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
