//! The stand-in platform's HTTP side: the outbound API paths of spec §2, with the platform's
//! authentication checks and result codes, each accepted call then played out as callbacks.
//!
//! It checks requests independently of our client's own validation (it reads the JSON itself),
//! so a client bug is caught here rather than mirrored.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{
    push::{PushSigner, Pusher},
    scenario::{CallPlan, ScenarioOutcome, Service, Step, play, stop_cdr_at},
};
use crate::config::SimulatorConfig;
use callhook_platform::{
    callback::{CallStatusInfo, EventType},
    outbound::{aksk_digest, wsse_digest},
    signature::{parse_username_token, redact_username_token},
    time::{format_platform_time, parse_platform_time},
};

/// How far `Created` may be from the simulator's clock, read as UTC or as Beijing time.
const CREATED_TOLERANCE: time::Duration = time::Duration::minutes(5);

#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatorConfig,
    apps: Vec<(String, SecretString)>,
    pusher: Pusher,
    rng: Mutex<StdRng>,
    sequence: AtomicU64,
    /// Calls still playing, by sessionId: sending on the channel stops one (callStop).
    live: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// The address recordings are served from (for the 301 Location).
    public_base: String,
}

impl SimState {
    pub fn new(
        config: SimulatorConfig,
        apps: Vec<(String, SecretString)>,
        public_base: String,
    ) -> Self {
        let pusher = Pusher::new(
            config
                .fee_retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            Duration::from_millis(config.batch_window_ms),
        );
        let rng = Mutex::new(StdRng::seed_from_u64(config.seed));
        Self {
            inner: Arc::new(Inner {
                config,
                apps,
                pusher,
                rng,
                sequence: AtomicU64::new(0),
                live: Mutex::default(),
                public_base,
            }),
        }
    }

    pub fn pusher(&self) -> &Pusher {
        &self.inner.pusher
    }
}

pub fn router(state: SimState) -> Router {
    Router::new()
        .route("/rest/httpsessions/click2Call/v2.0", post(click_to_call))
        .route("/rest/httpsessions/callnotify/v2.0", post(notify))
        .route("/rest/httpsessions/callnotify/v1.0", post(notify))
        .route("/rest/httpsessions/callVerify/v1.0", post(verify))
        .route("/rest/httpsessions/callStop/v2.0", post(stop))
        .route("/rest/provision/voice/record/v1.0", get(recording))
        .route("/sim/recordings/{file}", get(recording_file))
        .route("/sim/stats", get(stats))
        .fallback(|| async {
            refusal(StatusCode::NOT_FOUND, "1010006", "Invalid Rest API.").into_response()
        })
        .with_state(state)
}

/// A refused API request, answered as the platform does: `{"resultcode", "resultdesc"}`.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    desc: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"resultcode": self.code, "resultdesc": self.desc})),
        )
            .into_response()
    }
}

fn refusal(status: StatusCode, code: &'static str, desc: &str) -> Refusal {
    Refusal {
        status,
        code,
        desc: desc.to_owned(),
    }
}

fn invalid(field: &str, problem: &str) -> Refusal {
    refusal(
        StatusCode::FORBIDDEN,
        "1010002",
        &format!("Invalid request.{field} {problem}"),
    )
}

/// Spec §2.1 and the 10230xx codes of §2.7. A wrong digest or secret is answered 1010003
/// (the spec lists no separate code for it).
fn authenticate(state: &SimState, headers: &HeaderMap) -> Result<String, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023006",
            "Authorization not contained in the HTTP header.",
        ));
    };
    let Some(realm) = authorization
        .split("realm=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023007",
            "realm not contained in Authorization.",
        ));
    };
    if realm != "SDP" {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023009",
            "The value of realm in Authorization must be SDP.",
        ));
    }
    let wsse = authorization
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("WSSE");
    let token_header = if wsse { "x-wsse" } else { "x-aksk" };
    let Some(token) = header(token_header) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023038",
            "UsernameToken not contained in X-AKSK.",
        ));
    };
    if !token.contains("Username=") {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023034",
            "UserName not contained in X-AKSK.",
        ));
    }
    if !token.contains("Nonce=") {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023035",
            "Nonce not contained in X-AKSK.",
        ));
    }
    let Some(token) = parse_username_token(token) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "1023038",
            "UsernameToken not contained in X-AKSK.",
        ));
    };
    let Some((_, secret)) = state
        .inner
        .apps
        .iter()
        .find(|(key, _)| *key == token.username)
    else {
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "1010003",
            "Invalid app_key.",
        ));
    };
    let now = OffsetDateTime::now_utc();
    let fresh = parse_platform_time(&token.created).is_some_and(|created| {
        (now - created).abs() <= CREATED_TOLERANCE
            || (now - (created - time::Duration::hours(8))).abs() <= CREATED_TOLERANCE
    });
    if !fresh {
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "1010013",
            "Time out limit.",
        ));
    }
    let expected = if wsse {
        wsse_digest(secret.expose_secret(), &token.nonce, &token.created)
    } else {
        aksk_digest(secret.expose_secret(), &token.nonce, &token.created)
    };
    if !bool::from(expected.as_bytes().ct_eq(token.password_digest.as_bytes())) {
        tracing::info!(token = %redact_username_token(&format!("{token:?}")), "simulator: digest mismatch");
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "1010003",
            "Invalid app_key.",
        ));
    }
    Ok(token.username)
}

/// The parsed JSON body of an API request, or the platform's 1010002 naming what is wrong.
fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("body", "is not a JSON object")),
    }
}

fn text<'a>(body: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn number(
    body: &serde_json::Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Option<String>, Refusal> {
    match text(body, field) {
        None if required => Err(invalid(field, "is required")),
        None => Ok(None),
        Some(n)
            if n.starts_with('+') && n.len() > 6 && n[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(Some(n.to_owned()))
        }
        Some(_) => Err(invalid(field, "is not a number in +country form")),
    }
}

/// `statusUrl`/`feeUrl` are Base64 of the URL (spec §1.1); absent means the configured default.
fn callback_url(
    body: &serde_json::Map<String, Value>,
    field: &str,
    default: &str,
) -> Result<Option<String>, Refusal> {
    match text(body, field) {
        Some(encoded) => {
            let url = BASE64
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|url| url.starts_with("http://") || url.starts_with("https://"));
            url.map(Some)
                .ok_or_else(|| invalid(field, "is not the Base64 of an http(s) URL"))
        }
        None => Ok((!default.is_empty()).then(|| default.to_owned())),
    }
}

async fn click_to_call(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let app_key = match authenticate(&state, &headers) {
        Ok(app_key) => app_key,
        Err(refusal) => return refusal.into_response(),
    };
    let result = (|| {
        let body = body_object(&body)?;
        let display = number(&body, "displayNbr", true)?.unwrap_or_default();
        let caller = number(&body, "callerNbr", true)?.unwrap_or_default();
        let display_callee = number(&body, "displayCalleeNbr", true)?;
        let callee = number(&body, "calleeNbr", true)?;
        if let Some(max) = body.get("maxDuration")
            && max.as_u64().is_none_or(|m| m > 1440)
        {
            return Err(invalid("maxDuration", "must be 0-1440"));
        }
        let draft = Draft {
            app_key: app_key.clone(),
            service: Service::ClickToCall,
            display,
            display_callee,
            first_party: caller,
            second_party: callee,
            user_data: text(&body, "userData").map(str::to_owned),
            record: text(&body, "recordFlag") == Some("true"),
        };
        Ok((draft, urls(&state, &body)?))
    })();
    accept(&state, result)
}

async fn notify(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let app_key = match authenticate(&state, &headers) {
        Ok(app_key) => app_key,
        Err(refusal) => return refusal.into_response(),
    };
    let result = (|| {
        let body = body_object(&body)?;
        let display = number(&body, "displayNbr", true)?.unwrap_or_default();
        let callee = number(&body, "calleeNbr", true)?.unwrap_or_default();
        let segments = body
            .get("playInfoList")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !(1..=5).contains(&segments.len()) {
            return Err(invalid("playInfoList", "must hold 1-5 segments"));
        }
        let collect = segments.iter().any(|s| {
            s.get("collectInd")
                .and_then(Value::as_u64)
                .is_some_and(|n| n > 0)
        });
        let draft = Draft {
            app_key: app_key.clone(),
            service: Service::Notification { collect },
            display,
            display_callee: None,
            first_party: callee,
            second_party: None,
            user_data: text(&body, "userData").map(str::to_owned),
            record: false,
        };
        Ok((draft, urls(&state, &body)?))
    })();
    accept(&state, result)
}

async fn verify(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let app_key = match authenticate(&state, &headers) {
        Ok(app_key) => app_key,
        Err(refusal) => return refusal.into_response(),
    };
    let result = (|| {
        let body = body_object(&body)?;
        let display = number(&body, "displayNbr", true)?.unwrap_or_default();
        let callee = number(&body, "calleeNbr", true)?.unwrap_or_default();
        let code_ok = text(&body, "verifyCode")
            .is_some_and(|c| c.len() <= 8 && c.bytes().all(|b| b.is_ascii_digit()));
        if !code_ok {
            return Err(invalid("verifyCode", "must be 1-8 digits"));
        }
        if text(&body, "preTone").is_none() {
            return Err(invalid("preTone", "is required"));
        }
        let draft = Draft {
            app_key: app_key.clone(),
            service: Service::Verification,
            display,
            display_callee: None,
            first_party: callee,
            second_party: None,
            user_data: text(&body, "userData").map(str::to_owned),
            record: false,
        };
        Ok((draft, urls(&state, &body)?))
    })();
    accept(&state, result)
}

type Urls = (Option<String>, Option<String>);

fn urls(state: &SimState, body: &serde_json::Map<String, Value>) -> Result<Urls, Refusal> {
    let config = &state.inner.config;
    Ok((
        callback_url(body, "statusUrl", &config.status_url)?,
        callback_url(body, "feeUrl", &config.fee_url)?,
    ))
}

/// What a request asked for, before it becomes a call.
struct Draft {
    app_key: String,
    service: Service,
    display: String,
    display_callee: Option<String>,
    first_party: String,
    second_party: Option<String>,
    user_data: Option<String>,
    record: bool,
}

/// A request that passed its checks: give it a sessionId and play the call out.
fn accept(state: &SimState, checked: Result<(Draft, Urls), Refusal>) -> Response {
    let (draft, (status_url, fee_url)) = match checked {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let started = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let sequence = state.inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
    let stamp = format_platform_time(started).replace(['-', ' ', ':'], "");
    let session_id = format!(
        "1201_{}_{sequence}_{stamp}@callenabler.simulator",
        std::process::id() % 1000
    );
    let outcome = ScenarioOutcome::requested_in(draft.user_data.as_deref())
        .unwrap_or_else(|| state.draw_outcome());
    let plan = CallPlan {
        session_id: session_id.clone(),
        app_key: draft.app_key,
        service: draft.service,
        display: draft.display,
        display_callee: draft.display_callee,
        first_party: draft.first_party,
        second_party: draft.second_party,
        user_data: draft.user_data,
        outcome,
        record: draft.record,
        started,
    };
    let (stop, stopped) = oneshot::channel();
    state
        .inner
        .live
        .lock()
        .expect("live lock")
        .insert(session_id.clone(), stop);
    tracing::info!(
        session_id,
        outcome = outcome.as_str(),
        "simulator: call accepted"
    );
    tokio::spawn(play_out(state.clone(), plan, status_url, fee_url, stopped));
    Json(json!({"resultcode": "0", "resultdesc": "Success", "sessionId": session_id}))
        .into_response()
}

impl SimState {
    fn draw_outcome(&self) -> ScenarioOutcome {
        let weights = &self.inner.config.outcome_weights;
        let total: u32 = ScenarioOutcome::ALL
            .iter()
            .map(|o| weights.get(o).copied().unwrap_or(0))
            .sum();
        if total == 0 {
            return ScenarioOutcome::Answered;
        }
        let mut pick = self
            .inner
            .rng
            .lock()
            .expect("rng lock")
            .random_range(0..total);
        for outcome in ScenarioOutcome::ALL {
            let weight = weights.get(&outcome).copied().unwrap_or(0);
            if pick < weight {
                return outcome;
            }
            pick -= weight;
        }
        ScenarioOutcome::Answered
    }

    fn signer(&self, app_key: &str) -> PushSigner {
        let secret = self
            .inner
            .apps
            .iter()
            .find(|(key, _)| key == app_key)
            .map(|(_, secret)| secret.clone())
            .unwrap_or_else(|| SecretString::from(String::new()));
        PushSigner {
            app_key: app_key.to_owned(),
            secret,
            variant: self.inner.config.callback_signature.variant(),
        }
    }
}

/// Plays the call's events at `time_scale` of their simulated pace, then queues its CDR. A
/// callStop ends it early with stateCode 8017 (release indicated by the SP).
async fn play_out(
    state: SimState,
    plan: CallPlan,
    status_url: Option<String>,
    fee_url: Option<String>,
    mut stopped: oneshot::Receiver<()>,
) {
    let (steps, mut cdr) = play(&plan);
    let signer = state.signer(&plan.app_key);
    let scale = state.inner.config.time_scale;
    let mut played = Duration::ZERO;
    // Which parties the platform has called so far: a stop releases each of them.
    let mut called = vec![plan.first_party.clone()];
    for Step {
        after,
        event_type,
        info,
    } in steps
    {
        let wait = (after.saturating_sub(played)).mul_f64(scale);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = &mut stopped => {
                let at = format_platform_time(plan.started + played);
                for party in &called {
                    let released = CallStatusInfo {
                        session_id: Some(plan.session_id.clone()),
                        timestamp: Some(at.clone()),
                        caller: Some(plan.display.clone()),
                        called: Some(party.clone()),
                        user_data: plan.user_data.clone(),
                        state_code: Some(8017),
                        state_desc: Some("Release indicated by the SP.".into()),
                        ..CallStatusInfo::default()
                    };
                    if let Some(url) = &status_url {
                        state.pusher().push_status(url, &signer, EventType::Disconnect, &released).await;
                    }
                }
                stop_cdr_at(&mut cdr, &at);
                break;
            }
        }
        played = after;
        if let Some(party) = &info.called {
            if event_type == EventType::Callout && !called.contains(party) {
                called.push(party.clone());
            } else if event_type == EventType::Disconnect {
                called.retain(|p| p != party);
            }
        }
        if let Some(url) = &status_url {
            state
                .pusher()
                .push_status(url, &signer, event_type, &info)
                .await;
        }
    }
    state
        .inner
        .live
        .lock()
        .expect("live lock")
        .remove(&plan.session_id);
    if let Some(url) = fee_url {
        state.pusher().queue_cdr(&url, signer, cdr).await;
    }
}

async fn stop(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refusal) = authenticate(&state, &headers) {
        return refusal.into_response();
    }
    let body = match body_object(&body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if text(&body, "signal") != Some("call_stop") {
        return invalid("signal", "must be call_stop").into_response();
    }
    let Some(session_id) = text(&body, "sessionid") else {
        return invalid("sessionid", "is required").into_response();
    };
    match state
        .inner
        .live
        .lock()
        .expect("live lock")
        .remove(session_id)
    {
        Some(stop) => {
            let _ = stop.send(());
            Json(json!({"resultcode": "0", "resultdesc": "Success"})).into_response()
        }
        None => invalid("sessionid", "is not a call in progress").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct RecordingQuery {
    #[serde(rename = "fileName")]
    file_name: Option<String>,
    #[serde(rename = "recordDomain")]
    record_domain: Option<String>,
}

/// Success is a 301 whose Location is the download link (spec §2.6).
async fn recording(
    State(state): State<SimState>,
    headers: HeaderMap,
    Query(query): Query<RecordingQuery>,
) -> Response {
    if let Err(refusal) = authenticate(&state, &headers) {
        return refusal.into_response();
    }
    let valid = |v: &Option<String>| v.as_ref().is_some_and(|v| (1..=128).contains(&v.len()));
    if !valid(&query.file_name) {
        return invalid("fileName", "must be 1-128 characters").into_response();
    }
    if !valid(&query.record_domain) {
        return invalid("recordDomain", "must be 1-128 characters").into_response();
    }
    let file = query.file_name.unwrap_or_default();
    let location = format!(
        "{}/sim/recordings/{}",
        state.inner.public_base,
        urlencode(&file)
    );
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A short silent A-law WAV (8000 Hz, mono, as the platform's recordings are).
async fn recording_file() -> Response {
    let samples = 8000u32; // one second
    let mut wav = Vec::with_capacity(44 + samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&6u16.to_le_bytes()); // A-law
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    wav.resize(44 + samples as usize, 0xD5); // A-law silence
    ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
}

async fn stats(State(state): State<SimState>) -> Response {
    let pushes = state.pusher().stats.lock().expect("stats lock").clone();
    let live = state.inner.live.lock().expect("live lock").len();
    Json(json!({"calls_placed": state.inner.sequence.load(Ordering::Relaxed), "calls_in_progress": live, "pushes": pushes}))
        .into_response()
}
