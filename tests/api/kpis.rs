//! The voice KPIs: `GET /v1/kpis` on a hand-built set of calls whose answers are worked out by
//! hand (every definition, across scenarios and outcomes, by hour, filtered, empty, refused),
//! the call metrics on `/metrics` (each call counted once, whatever is delivered or derived
//! again afterwards), and the Grafana dashboard against what `/metrics` really exports.

use std::collections::{BTreeMap, BTreeSet};

use callhook::{
    ingest,
    platform::time::format_platform_time,
    store::placed_calls::{self, PlacedCall, PlacedOutcome},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::{
    api_helpers::{
        A, B, DISPLAY, FULL_TOKEN, MASKED_TOKEN, encode, get, get_json, get_json_as, hour,
        spawn_api, spawn_api_with,
    },
    helpers::TestApp,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Click2Call,
    Notify,
    Verify,
}

impl Scenario {
    fn operation(self) -> &'static str {
        match self {
            Self::Click2Call => "click2call",
            Self::Notify => "notify",
            Self::Verify => "verify",
        }
    }
}

/// How a call ends, and what stateCode its last disconnect carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Answered { talk: i64 },
    Busy,
    NoAnswer,
    Rejected,
    CallerHungUp,
    Failed,
    InProgress,
}

impl Ending {
    fn state_code(self) -> Option<i32> {
        match self {
            Self::Answered { .. } => Some(0),
            Self::Busy => Some(8102),
            Self::NoAnswer => Some(8101),
            Self::Rejected => Some(8004),
            Self::CallerHungUp => Some(8009),
            Self::Failed => Some(8000),
            Self::InProgress => None,
        }
    }
}

/// A call placed by callhook (so its app and scenario are known from the start), played out
/// as the platform reports it, with the post-dial delay (first leg: callout to alerting) and
/// the ringing of the deciding party (B for click-to-call, the user otherwise) chosen.
#[derive(Debug, Clone)]
struct KpiCall {
    session: String,
    app_key: &'static str,
    scenario: Scenario,
    start: OffsetDateTime,
    pdd: i64,
    ring: i64,
    ending: Ending,
}

impl KpiCall {
    fn new(
        session: &str,
        app_key: &'static str,
        scenario: Scenario,
        start: OffsetDateTime,
    ) -> Self {
        Self {
            session: session.into(),
            app_key,
            scenario,
            start,
            pdd: 2,
            ring: 5,
            ending: Ending::Answered { talk: 60 },
        }
    }

    fn pdd(self, pdd: i64) -> Self {
        Self { pdd, ..self }
    }

    fn ring(self, ring: i64) -> Self {
        Self { ring, ..self }
    }

    fn ending(self, ending: Ending) -> Self {
        Self { ending, ..self }
    }

    fn event(&self, event_type: &str, at: i64, called: &str, state_code: Option<i32>) -> String {
        let mut info = json!({
            "sessionId": self.session, "timestamp": format_platform_time(self.start + Duration::seconds(at)),
            "caller": DISPLAY, "called": called, "userData": format!("order-{}", self.session),
        });
        if let Some(code) = state_code {
            info["stateCode"] = json!(code);
            info["partyType"] = json!("1");
        }
        json!({"eventType": event_type, "statusInfo": info}).to_string()
    }

    /// The status events, in the order the platform sends them.
    fn events(&self) -> Vec<String> {
        let (pdd, ring, code) = (self.pdd, self.ring, self.ending.state_code());
        let mut events = vec![self.event("callout", 0, A, None)];
        if self.ending == Ending::Failed {
            events.push(self.event("disconnect", 1, A, code));
            return events;
        }
        match self.scenario {
            Scenario::Notify | Scenario::Verify => {
                if self.ending == Ending::Busy {
                    events.push(self.event("disconnect", pdd, A, code));
                    return events;
                }
                events.push(self.event("alerting", pdd, A, None));
                match self.ending {
                    Ending::Answered { talk } => {
                        events.push(self.event("answer", pdd + ring, A, None));
                        events.push(self.event("disconnect", pdd + ring + talk, A, code));
                    }
                    Ending::InProgress => {}
                    _ => events.push(self.event("disconnect", pdd + ring, A, code)),
                }
            }
            Scenario::Click2Call => {
                events.push(self.event("alerting", pdd, A, None));
                events.push(self.event("answer", pdd + 3, A, None));
                events.push(self.event("callout", pdd + 4, B, None));
                if self.ending == Ending::Busy {
                    events.push(self.event("disconnect", pdd + 5, B, code));
                    return events;
                }
                let b_alerting = pdd + 5;
                events.push(self.event("alerting", b_alerting, B, None));
                match self.ending {
                    Ending::Answered { talk } => {
                        events.push(self.event("answer", b_alerting + ring, B, None));
                        events.push(self.event("disconnect", b_alerting + ring + talk, A, code));
                    }
                    Ending::InProgress => {}
                    Ending::CallerHungUp => {
                        events.push(self.event("disconnect", b_alerting + ring, A, code))
                    }
                    _ => events.push(self.event("disconnect", b_alerting + ring, B, code)),
                }
            }
        }
        events
    }

    /// The CDR of an answered click-to-call, consistent with its events.
    fn fee_body(&self) -> String {
        let Ending::Answered { talk } = self.ending else {
            panic!("only answered click-to-calls have a CDR here");
        };
        let at = |s: i64| format_platform_time(self.start + Duration::seconds(s));
        let b_alerting = self.pdd + 5;
        json!({"eventType": "fee", "feeLst": [{
            "direction": 1, "spId": "sp", "appKey": self.app_key, "icid": format!("icid-{}", self.session),
            "bindNum": DISPLAY, "sessionId": self.session, "callerNum": DISPLAY, "calleeNum": A,
            "fwdDisplayNum": DISPLAY, "fwdDstNum": B, "callOutStartTime": at(0),
            "callOutAlertingTime": at(self.pdd), "callOutAnswerTime": at(self.pdd + 3),
            "fwdStartTime": at(self.pdd + 4), "fwdAlertingTime": at(b_alerting),
            "fwdAnswerTime": at(b_alerting + self.ring), "callEndTime": at(b_alerting + self.ring + talk),
            "callOutUnaswRsn": 0, "fwdUnaswRsn": 0, "ulFailReason": 0, "recordFlag": 0,
            "serviceType": "002", "hostName": "callenabler245.huaweicaas.com",
        }]})
        .to_string()
    }

    fn placed(&self) -> PlacedCall {
        let request = match self.scenario {
            Scenario::Click2Call => {
                json!({"displayNbr": DISPLAY, "callerNbr": A, "displayCalleeNbr": DISPLAY, "calleeNbr": B})
            }
            Scenario::Notify | Scenario::Verify => json!({"displayNbr": DISPLAY, "calleeNbr": A}),
        };
        PlacedCall {
            id: uuid::Uuid::now_v7(),
            operation: self.scenario.operation(),
            app_key: self.app_key.into(),
            request,
            response: Some(
                json!({"resultcode": "0", "resultdesc": "Success", "sessionId": self.session}),
            ),
            http_status: Some(200),
            result_code: Some("0".into()),
            result_desc: Some("Success".into()),
            session_id: Some(self.session.clone()),
            user_data: Some(format!("order-{}", self.session)),
            outcome: PlacedOutcome::Accepted,
            error: None,
            attempts: 1,
            requested_at: self.start - Duration::seconds(1),
            answered_at: Some(self.start),
        }
    }

    /// Records the placed call, then posts every status event (each projected before the next).
    async fn deliver(&self, app: &TestApp) {
        placed_calls::record(&app.pool, &self.placed())
            .await
            .unwrap();
        for body in self.events() {
            let response = app.post("/voicecall/status", body).await;
            assert_eq!(response.status(), 200, "{}", self.session);
        }
    }
}

fn kpis_path(from: OffsetDateTime, to: OffsetDateTime, rest: &str) -> String {
    let rfc3339 = |t: OffsetDateTime| {
        encode(
            &t.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        )
    };
    format!("/v1/kpis?from={}&to={}{rest}", rfc3339(from), rfc3339(to))
}

/// The set every definition is checked on, between hour(0) and hour(5), and one call on each
/// side of that range. Per call: scenario, app, post-dial delay, ringing, how it ends.
fn the_calls() -> Vec<KpiCall> {
    use Ending::*;
    use Scenario::*;
    let at = |h: i64, minutes: i64| hour(h) + Duration::minutes(minutes);
    vec![
        // 10:00-11:00
        KpiCall::new("k1", "app-a", Click2Call, at(0, 1))
            .pdd(2)
            .ring(6)
            .ending(Answered { talk: 60 }),
        KpiCall::new("k2", "app-a", Click2Call, at(0, 2))
            .pdd(4)
            .ring(10)
            .ending(Answered { talk: 120 }),
        KpiCall::new("k3", "app-a", Click2Call, at(0, 3))
            .pdd(1)
            .ending(Busy),
        KpiCall::new("k4", "app-b", Notify, at(0, 4))
            .pdd(3)
            .ring(5)
            .ending(Answered { talk: 30 }),
        KpiCall::new("k5", "app-b", Notify, at(0, 59))
            .pdd(2)
            .ring(40)
            .ending(NoAnswer),
        // 11:00-12:00
        KpiCall::new("k6", "app-b", Verify, at(1, 0))
            .pdd(1)
            .ring(8)
            .ending(Rejected),
        KpiCall::new("k7", "app-a", Verify, at(1, 10))
            .pdd(2)
            .ring(4)
            .ending(Answered { talk: 20 }),
        KpiCall::new("k8", "app-a", Click2Call, at(1, 20))
            .pdd(3)
            .ring(12)
            .ending(CallerHungUp),
        KpiCall::new("k9", "app-b", Notify, at(1, 30)).ending(Failed),
        KpiCall::new("k10", "app-a", Click2Call, at(1, 40))
            .pdd(2)
            .ring(3)
            .ending(InProgress),
        // 13:00-14:00
        KpiCall::new("k11", "app-b", Notify, at(3, 30))
            .pdd(1)
            .ring(2)
            .ending(Answered { talk: 300 }),
        // outside [hour(0), hour(5))
        KpiCall::new("before", "app-a", Notify, at(-1, 59)).ending(Answered { talk: 10 }),
        KpiCall::new("after", "app-a", Notify, hour(5)).ending(Answered { talk: 10 }),
    ]
}

fn figures(value: &Value) -> (i64, i64, i64, i64) {
    let n = |key: &str| {
        value[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} in {value}"))
    };
    (
        n("calls"),
        n("in_progress"),
        n("answered"),
        n("network_effective"),
    )
}

/// A ratio or mean of an answer: a number close to `expected`, or null.
fn assert_figure(value: &Value, key: &str, expected: Option<f64>) {
    match (value[key].as_f64(), expected) {
        (Some(got), Some(want)) => {
            assert!(
                (got - want).abs() < 1e-9,
                "{key}: {got}, expected {want}, in {value}"
            )
        }
        (None, None) => assert!(value[key].is_null(), "{key} is null in {value}"),
        (got, want) => panic!("{key}: {got:?}, expected {want:?}, in {value}"),
    }
}

fn assert_means(
    value: &Value,
    asr: Option<f64>,
    ner: Option<f64>,
    acd: Option<f64>,
    pdd: Option<f64>,
) {
    assert_figure(value, "asr", asr);
    assert_figure(value, "ner", ner);
    assert_figure(value, "acd_seconds", acd);
    assert_figure(value, "pdd_seconds", pdd);
}

/// The counts of a distribution, bucket by bucket.
fn counts(buckets: &Value) -> Vec<i64> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .collect()
}

/// Every definition on the hand-built set: overall (ended calls only; the one in progress
/// apart), by hour with the empty hours, the outcomes, the hang-up causes with their meanings,
/// the ring and talk time distributions, and callback delay counting every event of the ended
/// calls.
#[sqlx::test]
async fn kpis_follow_their_definitions_on_calls_with_known_answers(pool: PgPool) {
    // Arrange
    let app = spawn_api(pool.clone()).await;
    for call in the_calls() {
        call.deliver(&app).await;
    }

    // Act
    let kpis = get_json(&app, &kpis_path(hour(0), hour(5), "")).await;

    // Assert
    // Ended: k1-k9 and k11 (10); k10 in progress. Answered: k1, k2, k4, k7, k11. The network
    // did its job for those and busy k3, no answer k5, rejected k6 (not caller_hung_up k8 nor
    // failed k9). Talk of the answered: 60, 120, 30, 20, 300. PDD of the ended with an
    // alerting: 2, 4, 1, 3, 2, 1, 2, 3, 1 (k9 failed before ringing).
    assert_eq!(figures(&kpis), (10, 1, 5, 8));
    assert_means(&kpis, Some(0.5), Some(0.8), Some(106.0), Some(19.0 / 9.0));

    let hourly = kpis["hourly"].as_array().unwrap();
    let hours: Vec<&str> = hourly.iter().map(|h| h["hour"].as_str().unwrap()).collect();
    assert_eq!(
        hours,
        [
            "2026-11-20T10:00:00Z",
            "2026-11-20T11:00:00Z",
            "2026-11-20T12:00:00Z",
            "2026-11-20T13:00:00Z",
            "2026-11-20T14:00:00Z"
        ]
    );
    assert_eq!(figures(&hourly[0]), (5, 0, 3, 5));
    assert_means(&hourly[0], Some(0.6), Some(1.0), Some(70.0), Some(2.4));
    assert_eq!(figures(&hourly[1]), (4, 1, 1, 2));
    assert_means(&hourly[1], Some(0.25), Some(0.5), Some(20.0), Some(2.0));
    for empty in [&hourly[2], &hourly[4]] {
        assert_eq!(figures(empty), (0, 0, 0, 0));
        assert_means(empty, None, None, None, None);
    }
    assert_eq!(figures(&hourly[3]), (1, 0, 1, 1));
    assert_means(&hourly[3], Some(1.0), Some(1.0), Some(300.0), Some(1.0));

    assert_eq!(
        kpis["outcomes"],
        json!([
            {"outcome": "answered", "calls": 5}, {"outcome": "no_answer", "calls": 1},
            {"outcome": "busy", "calls": 1}, {"outcome": "rejected", "calls": 1},
            {"outcome": "caller_hung_up", "calls": 1}, {"outcome": "failed", "calls": 1},
        ])
    );
    assert_eq!(
        kpis["hangup_causes"],
        json!([
            {"state_code": 0, "meaning": "released normally after being connected", "calls": 5},
            {"state_code": 8000, "meaning": "internal error", "calls": 1},
            {"state_code": 8004, "meaning": "hung up while ringing", "calls": 1},
            {"state_code": 8009, "meaning": "caller hung up before connection", "calls": 1},
            {"state_code": 8101, "meaning": "called party did not answer", "calls": 1},
            {"state_code": 8102, "meaning": "called party busy", "calls": 1},
        ])
    );
    // Ringing known (8 calls): 6, 10, 5, 40, 8, 4, 12, 2; none for busy k3 (B never rang)
    // and failed k9. Buckets: ≤2, ≤5, ≤10, ≤15, ≤20, ≤30, ≤45, ≤60, above.
    assert_eq!(counts(&kpis["ring_seconds"]), [1, 2, 3, 1, 0, 0, 1, 0, 0]);
    assert_eq!(
        kpis["ring_seconds"][0],
        json!({"from": null, "to": 2.0, "count": 1})
    );
    assert_eq!(
        kpis["ring_seconds"][8],
        json!({"from": 60.0, "to": null, "count": 0})
    );
    // Talk of the answered: 60, 120, 30, 20, 300. Buckets ≤10, ≤30, ≤60, ≤120, ≤300, …
    assert_eq!(
        counts(&kpis["talk_seconds"]),
        [0, 2, 1, 1, 1, 0, 0, 0, 0, 0]
    );
    // Every status event of the ended calls, each in the bucket of its own delay.
    let ended: Vec<String> = ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k11"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        counts(&kpis["callback_delay"]),
        expected_delay_counts(&pool, &ended).await
    );
    assert_eq!(counts(&kpis["callback_delay"]).iter().sum::<i64>(), 45);
}

/// The callback-delay buckets computed here from the stored events, independently of the
/// projection: receipt minus platform time, counted under the first bound at or above it.
async fn expected_delay_counts(pool: &PgPool, sessions: &[String]) -> Vec<i64> {
    let delays: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from received_at - event_at)::float8 from call_events
         where session_id = any($1) and event_at is not null",
    )
    .bind(sessions)
    .fetch_all(pool)
    .await
    .unwrap();
    let bounds = callhook::kpis::CALLBACK_DELAY_BUCKETS;
    let mut counts = vec![0; bounds.len() + 1];
    for delay in delays {
        let bucket = bounds
            .iter()
            .position(|b| delay <= *b)
            .unwrap_or(bounds.len());
        counts[bucket] += 1;
    }
    counts
}

/// The filters select by app, by scenario and by both, each with its own figures.
#[sqlx::test]
async fn kpis_are_filtered_by_app_and_scenario(pool: PgPool) {
    let app = spawn_api(pool).await;
    for call in the_calls() {
        call.deliver(&app).await;
    }
    let range = |rest: &str| kpis_path(hour(0), hour(5), rest);

    // app-a: k1, k2, k3, k7, k8 ended, k10 in progress.
    let app_a = get_json(&app, &range("&app_key=app-a")).await;
    assert_eq!(figures(&app_a), (5, 1, 3, 4));
    assert_means(&app_a, Some(0.6), Some(0.8), Some(200.0 / 3.0), Some(2.4));
    assert_eq!(app_a["app_key"], "app-a");
    // notify: k4, k5, k9, k11.
    let notify = get_json(&app, &range("&scenario=notify")).await;
    assert_eq!(figures(&notify), (4, 0, 2, 3));
    assert_means(&notify, Some(0.5), Some(0.75), Some(165.0), Some(2.0));
    assert_eq!(notify["hangup_causes"].as_array().unwrap().len(), 3);
    // app-b's verifications: k6 alone, rejected.
    let verify_b = get_json(&app, &range("&app_key=app-b&scenario=verify")).await;
    assert_eq!(figures(&verify_b), (1, 0, 0, 1));
    assert_means(&verify_b, Some(0.0), Some(1.0), None, Some(1.0));
    // The same answer for a masked token: there are no numbers in it.
    let masked = get_json_as(&app, &range("&scenario=notify"), MASKED_TOKEN).await;
    assert_eq!(masked, notify);
    // An app with no calls.
    let none = get_json(&app, &range("&app_key=app-z")).await;
    assert_eq!(figures(&none), (0, 0, 0, 0));
}

/// A range without calls has zeros and null ratios everywhere, never NaN or an error.
#[sqlx::test]
async fn an_empty_range_has_zero_calls_and_null_ratios(pool: PgPool) {
    let app = spawn_api(pool).await;
    KpiCall::new("elsewhere", "app-a", Scenario::Notify, hour(0))
        .deliver(&app)
        .await;

    let kpis = get_json(&app, &kpis_path(hour(24), hour(26), "")).await;

    assert_eq!(figures(&kpis), (0, 0, 0, 0));
    assert_means(&kpis, None, None, None, None);
    assert_eq!(kpis["hourly"].as_array().unwrap().len(), 2);
    for hour in kpis["hourly"].as_array().unwrap() {
        assert_eq!(figures(hour), (0, 0, 0, 0));
        assert_means(hour, None, None, None, None);
    }
    assert!(
        kpis["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["calls"] == 0)
    );
    assert_eq!(kpis["hangup_causes"], json!([]));
    for distribution in ["ring_seconds", "talk_seconds", "callback_delay"] {
        assert!(
            counts(&kpis[distribution]).iter().all(|c| *c == 0),
            "{distribution}"
        );
    }
}

/// Parameters that cannot be used are a 400 naming the parameter; no token is a 401.
#[sqlx::test]
async fn bad_kpi_parameters_are_refused_naming_the_parameter(pool: PgPool) {
    let app = spawn_api(pool).await;
    let cases = [
        ("/v1/kpis?to=2026-11-20T10:00:00Z", "from"),
        ("/v1/kpis?from=2026-11-20T10:00:00Z", "to"),
        ("/v1/kpis?from=yesterday&to=2026-11-20T10:00:00Z", "from"),
        (
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T10:00:00Z",
            "to",
        ),
        (
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T09:00:00Z",
            "to",
        ),
        (
            "/v1/kpis?from=2026-10-01T00:00:00Z&to=2026-11-20T00:00:00Z",
            "to",
        ),
        (
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T11:00:00Z&scenario=robocall",
            "scenario",
        ),
        (
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T11:00:00Z&app=x",
            "app",
        ),
        (
            "/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T11:00:00Z&app_key=a%00b",
            "app_key",
        ),
    ];
    for (path, field) in cases {
        let response = get(&app, path, FULL_TOKEN).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    // Exactly kpis.max_range_days is allowed.
    let month = get(
        &app,
        "/v1/kpis?from=2026-10-20T00:00:00Z&to=2026-11-20T00:00:00Z",
        FULL_TOKEN,
    )
    .await;
    assert_eq!(month.status(), 200);
    let anonymous = app
        .client
        .get(app.url("/v1/kpis?from=2026-11-20T10:00:00Z&to=2026-11-20T11:00:00Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Callback delay is each status event's receipt minus its platform `timestamp`, bucketed as
/// `/metrics` buckets it; events of calls still in progress are not in it.
#[sqlx::test]
async fn callback_delay_runs_from_the_platform_timestamp_to_the_receipt(pool: PgPool) {
    let app = spawn_api(pool.clone()).await;
    let now = OffsetDateTime::now_utc();
    // Events a minute old, ten minutes old, and from a platform clock ahead of ours.
    let calls = [
        KpiCall::new(
            "late-1min",
            "app-a",
            Scenario::Notify,
            now - Duration::seconds(40 + 30),
        ),
        KpiCall::new(
            "late-10min",
            "app-a",
            Scenario::Verify,
            now - Duration::minutes(10) - Duration::seconds(30),
        ),
        KpiCall::new(
            "ahead-5s",
            "app-a",
            Scenario::Notify,
            now + Duration::seconds(5),
        )
        .ring(1)
        .ending(Ending::Answered { talk: 1 }),
        KpiCall::new(
            "ringing",
            "app-a",
            Scenario::Notify,
            now - Duration::seconds(20),
        )
        .ending(Ending::InProgress),
    ];
    for call in &calls {
        call.deliver(&app).await;
    }

    let kpis = get_json(
        &app,
        &kpis_path(now - Duration::hours(1), now + Duration::hours(1), ""),
    )
    .await;

    let ended: Vec<String> = calls[..3].iter().map(|c| c.session.clone()).collect();
    let expected = expected_delay_counts(&pool, &ended).await;
    assert_eq!(counts(&kpis["callback_delay"]), expected);
    assert_eq!(expected.iter().sum::<i64>(), 12);
    // Not all in one bucket: the clocks differ enough for the cut to show.
    assert!(
        expected.iter().filter(|c| **c > 0).count() >= 3,
        "{expected:?}"
    );
    assert!(
        expected[0] > 0,
        "the platform ahead of us counts as 0 s or less: {expected:?}"
    );
}

/// One sample of an exposition: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples of a Prometheus text exposition.
fn parse_exposition(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some((
                Series {
                    name: name.to_owned(),
                    labels,
                },
                value.parse().ok()?,
            ))
        })
        .collect()
}

async fn scrape(app: &TestApp) -> Vec<(Series, f64)> {
    let text = app.metrics_text().await;
    parse_exposition(&text)
}

/// The sum of the samples of `name` whose labels include `labels`.
fn total(samples: &[(Series, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.name == name
                && labels
                    .iter()
                    .all(|(k, v)| series.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| *value)
        .sum()
}

/// The metrics of the calls of one app (a key no other test uses, so that the process-wide
/// recorder's counts move only by what this test does).
fn kpi_series(samples: &[(Series, f64)], app_key: &str) -> BTreeMap<Series, f64> {
    samples
        .iter()
        .filter(|(series, _)| {
            series.name.starts_with("callhook_call")
                && series.labels.get("app_key").map(String::as_str) == Some(app_key)
        })
        .cloned()
        .collect()
}

/// Each call counts once when its row goes from in progress to ended, labelled by app,
/// scenario and outcome, with its talk, ring and post-dial times; each event's callback delay
/// once. Redeliveries, a CDR after the end, and deriving everything again move nothing; the
/// ratios the documented PromQL computes from them equal the SQL's.
#[sqlx::test]
async fn call_metrics_count_each_call_once_when_it_ends(pool: PgPool) {
    const APP: &str = "kpi-metrics-app";
    const UNLISTED: &str = "kpi-unlisted-app";
    let app = spawn_api_with(pool.clone(), |config| {
        config.kpis.metric_app_keys = vec![APP.to_owned()];
    })
    .await;
    let before = scrape(&app).await;
    let start = hour(100);
    let answered_c2c = KpiCall::new("m1", APP, Scenario::Click2Call, start)
        .pdd(2)
        .ring(6)
        .ending(Ending::Answered { talk: 45 });
    let calls = [
        answered_c2c.clone(),
        KpiCall::new("m2", APP, Scenario::Notify, start)
            .pdd(3)
            .ring(4)
            .ending(Ending::Answered { talk: 30 }),
        KpiCall::new("m3", APP, Scenario::Notify, start)
            .pdd(1)
            .ring(50)
            .ending(Ending::NoAnswer),
        KpiCall::new("m4", APP, Scenario::Click2Call, start)
            .pdd(2)
            .ending(Ending::Busy),
        KpiCall::new("m5", APP, Scenario::Verify, start).ending(Ending::InProgress),
        KpiCall::new("m6", UNLISTED, Scenario::Verify, start).ending(Ending::Answered { talk: 5 }),
    ];
    for call in &calls {
        call.deliver(&app).await;
    }

    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let mut labels = labels.to_vec();
        labels.push(("app_key", APP));
        total(&after, name, &labels) - total(&before, name, &labels)
    };
    let ended = "callhook_calls_ended_total";
    assert_eq!(moved(ended, &[]), 4.0, "in progress is not ended");
    assert_eq!(
        moved(
            ended,
            &[("scenario", "click2call"), ("outcome", "answered")]
        ),
        1.0
    );
    assert_eq!(
        moved(ended, &[("scenario", "notify"), ("outcome", "answered")]),
        1.0
    );
    assert_eq!(
        moved(ended, &[("scenario", "notify"), ("outcome", "no_answer")]),
        1.0
    );
    assert_eq!(
        moved(ended, &[("scenario", "click2call"), ("outcome", "busy")]),
        1.0
    );
    assert_eq!(moved("callhook_call_talk_seconds_sum", &[]), 75.0);
    assert_eq!(moved("callhook_call_talk_seconds_count", &[]), 2.0);
    // Ringing known for m1, m2, m3 (busy m4's B never rang).
    assert_eq!(moved("callhook_call_ring_seconds_sum", &[]), 60.0);
    assert_eq!(moved("callhook_call_ring_seconds_count", &[]), 3.0);
    assert_eq!(moved("callhook_call_pdd_seconds_sum", &[]), 8.0);
    assert_eq!(moved("callhook_call_pdd_seconds_count", &[]), 4.0);
    let events: usize = calls[..5].iter().map(|c| c.events().len()).sum();
    assert_eq!(
        moved("callhook_callback_delay_seconds_count", &[]),
        events as f64
    );
    assert_eq!(
        moved(
            "callhook_callback_delay_seconds_count",
            &[("scenario", "verify"), ("event_type", "callout")]
        ),
        1.0,
        "the in-progress call's events have a delay too"
    );
    // An app key that is not configured is not a label value of its own: it is "other"
    // (which other tests of this process move too, so only its presence is checked).
    assert!(
        total(
            &after,
            ended,
            &[("app_key", "other"), ("scenario", "verify")]
        ) >= 1.0
    );
    assert_eq!(total(&after, ended, &[("app_key", UNLISTED)]), 0.0);

    // The documented PromQL (docs/kpis.md) on these counts gives the SQL's figures.
    let kpis = get_json(
        &app,
        &kpis_path(
            start - Duration::hours(1),
            start + Duration::hours(1),
            &format!("&app_key={APP}"),
        ),
    )
    .await;
    let all = moved(ended, &[]);
    let effective: f64 = ["answered", "busy", "no_answer", "rejected"]
        .iter()
        .map(|outcome| moved(ended, &[("outcome", outcome)]))
        .sum();
    assert_figure(
        &kpis,
        "asr",
        Some(moved(ended, &[("outcome", "answered")]) / all),
    );
    assert_figure(&kpis, "ner", Some(effective / all));
    assert_figure(
        &kpis,
        "acd_seconds",
        Some(
            moved("callhook_call_talk_seconds_sum", &[])
                / moved("callhook_call_talk_seconds_count", &[]),
        ),
    );
    assert_figure(
        &kpis,
        "pdd_seconds",
        Some(
            moved("callhook_call_pdd_seconds_sum", &[])
                / moved("callhook_call_pdd_seconds_count", &[]),
        ),
    );

    // Act again: every callback redelivered, the CDR of the answered click-to-call after its
    // end, and every receipt derived again.
    for call in &calls[..5] {
        for body in call.events() {
            assert_eq!(app.post("/voicecall/status", body).await.status(), 200);
        }
    }
    assert_eq!(
        app.post("/voicecall/fee", answered_c2c.fee_body())
            .await
            .status(),
        200
    );
    let reprojected = ingest::reproject(
        &pool,
        OffsetDateTime::UNIX_EPOCH,
        OffsetDateTime::now_utc() + Duration::seconds(1),
        100,
    )
    .await
    .unwrap();
    assert!(reprojected.receipts > 30, "{reprojected:?}");

    let again = scrape(&app).await;
    assert_eq!(
        kpi_series(&again, APP),
        kpi_series(&after, APP),
        "nothing counted twice"
    );
}

/// The PromQL expressions of the Grafana dashboard: its panels' and its variables' queries.
fn dashboard_expressions() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/callhook.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            let query = &variable["query"];
            let query = query.as_str().or(query["query"].as_str()).unwrap();
            expressions.push(selector_of_variable(query).to_owned());
        }
    }
    expressions
}

/// The series selector of a variable's query: `label_values(selector, label)` names a label
/// after the selector, which is no metric.
fn selector_of_variable(query: &str) -> &str {
    query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.rsplit_once(','))
        .map_or(query, |(selector, _label)| selector.trim())
}

/// The metric names an expression selects: every identifier outside label matchers, range
/// selectors, grouping clauses and strings, that is not a PromQL function, aggregation or
/// keyword.
fn metric_names(expression: &str) -> Vec<String> {
    const PROMQL: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "label_values",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "topk",
        "vector",
        "abs",
        "round",
        "time",
    ];
    let mut names = Vec::new();
    let chars: Vec<char> = expression.chars().collect();
    let mut i = 0;
    let mut after_grouping_keyword = false;
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |close: char, from: usize| {
            (from + 1..chars.len())
                .find(|j| chars[*j] == close)
                .unwrap_or(chars.len())
        };
        if c == '{' || c == '[' || c == '"' {
            i = skip_to(
                match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                },
                i,
            ) + 1;
        } else if c == '(' && after_grouping_keyword {
            i = skip_to(')', i) + 1;
            after_grouping_keyword = false;
        } else if c == '$' {
            // A Grafana variable ($__rate_interval, $app).
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let begin = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[begin..i].iter().collect();
            after_grouping_keyword = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if !PROMQL.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            if !c.is_whitespace() {
                after_grouping_keyword = false;
            }
            i += 1;
        }
    }
    names
}

/// Every metric the Grafana dashboard queries is one `/metrics` exports, once the app has
/// handled calls: the dashboard cannot show an empty panel for a name that does not exist.
#[sqlx::test]
async fn the_grafana_dashboard_queries_only_metrics_callhook_exports(pool: PgPool) {
    // Arrange
    let app = spawn_api(pool).await;
    for call in [
        KpiCall::new("g1", "app-a", Scenario::Click2Call, hour(200)),
        KpiCall::new("g2", "app-a", Scenario::Notify, hour(200)).ending(Ending::Busy),
    ] {
        call.deliver(&app).await;
    }
    // A refused callback, so the refusal counters exist too.
    assert_eq!(
        app.post("/voicecall/status", "not json").await.status(),
        400
    );

    // Act
    let exported: BTreeSet<String> = scrape(&app)
        .await
        .into_iter()
        .map(|(s, _)| s.name)
        .collect();

    // Assert
    let expressions = dashboard_expressions();
    assert!(
        expressions.len() >= 10,
        "the dashboard has its panels: {expressions:?}"
    );
    let mut used = BTreeSet::new();
    for expression in &expressions {
        let names = metric_names(expression);
        assert!(!names.is_empty(), "no metric in {expression}");
        used.extend(names);
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not export"
    );
    for kpi in [
        "callhook_calls_ended_total",
        "callhook_call_talk_seconds_sum",
        "callhook_call_pdd_seconds_sum",
        "callhook_call_ring_seconds_bucket",
        "callhook_callback_delay_seconds_bucket",
    ] {
        assert!(used.contains(kpi), "the dashboard shows {kpi}");
    }
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (app_key) (increase(callhook_calls_ended_total{outcome="answered", app_key=~"$app"}[$__range])) / sum(rate(callhook_calls_ended_total[5m]))"#
        ),
        ["callhook_calls_ended_total", "callhook_calls_ended_total"]
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(callhook_call_pdd_seconds_bucket[$__rate_interval])))"
        ),
        ["callhook_call_pdd_seconds_bucket"]
    );
    assert_eq!(
        selector_of_variable("label_values(callhook_calls_ended_total, app_key)"),
        "callhook_calls_ended_total"
    );
}

/// The callback-delay columns of `calls` are those the code sums, one per bucket, and the
/// comment that tells SQL users how `calls.callback_delay_counts` is cut names the bounds the
/// code cuts it with.
#[sqlx::test]
async fn the_callback_delay_columns_are_the_buckets_in_use(pool: PgPool) {
    let columns: Vec<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns
         where table_name = 'calls' and column_name like 'callback_delays_%' order by ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(columns, callhook::kpis::callback_delay_columns());

    let comment: String = sqlx::query_scalar(
        "select col_description('calls'::regclass, attnum) from pg_attribute
         where attrelid = 'calls'::regclass and attname = 'callback_delay_counts'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let bounds: Vec<String> = callhook::kpis::CALLBACK_DELAY_BUCKETS
        .iter()
        .map(f64::to_string)
        .collect();
    let listed = format!("upper bounds {} s", bounds.join(", "));
    assert!(comment.contains(&listed), "{comment} names {listed}");
}
