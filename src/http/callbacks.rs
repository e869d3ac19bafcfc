//! The callback endpoints (spec §1): raw bytes → signature verdict → parse → one transaction →
//! answer. A 200 is sent only after the commit; anything refused is still kept in
//! `raw_callbacks` with the error it was answered with.

use std::{net::SocketAddr, time::Instant};

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Routes,
    body::{BodyRead, read_limited},
    error::ApiError,
    openapi::{AnyCallback, CallbackAnswers, XAksk},
};
use crate::{
    app::AppState,
    config::{SignatureMode, SignedUrl},
    ingest::{self, Failure, Ingested, Job, Submitted},
    metrics as m,
    platform::{
        callback::{Callback, parse_callback},
        signature::{UsernameToken, Verdict, parse_username_token, redact_username_token},
    },
    store::raw::{Outcome, RawCallback},
    telemetry::mask_phone,
};

/// Where a callback arrived. The platform may be given one URL for both kinds, so every
/// endpoint accepts every kind and dispatches on `eventType`; the endpoint is recorded and is
/// the URL a signature is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Status,
    Fee,
    Events,
}

impl Endpoint {
    pub const ALL: [Self; 3] = [Self::Status, Self::Fee, Self::Events];

    pub fn path(self) -> &'static str {
        match self {
            Self::Status => "/voicecall/status",
            Self::Fee => "/voicecall/fee",
            Self::Events => "/voicecall/events",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Fee => "fee",
            Self::Events => "events",
        }
    }
}

pub fn routes() -> Routes {
    let otherwise = |endpoint: Endpoint| {
        move |State(state): State<AppState>, request: Request| {
            wrong_method(state, endpoint, request)
        }
    };
    let path = Endpoint::path;
    Routes::default()
        .route_or(
            Method::POST,
            path(Endpoint::Status),
            status,
            otherwise(Endpoint::Status),
        )
        .route_or(
            Method::POST,
            path(Endpoint::Fee),
            fee,
            otherwise(Endpoint::Fee),
        )
        .route_or(
            Method::POST,
            path(Endpoint::Events),
            events,
            otherwise(Endpoint::Events),
        )
}

/// Status events: callout, alerting, answer, collectInfo, disconnect.
///
/// Every callback endpoint takes every kind and dispatches on `eventType`, so a fee list that
/// arrives here is stored too. Any other method is answered 405 (and kept).
#[utoipa::path(
    post,
    path = "/voicecall/status",
    tag = "callbacks",
    request_body(content = AnyCallback, content_type = "application/json", description = "A status event (StatusCallback), or any callback"),
    params(XAksk),
    responses(CallbackAnswers)
)]
pub async fn status(State(state): State<AppState>, request: Request) -> Response {
    receive(state, Endpoint::Status, request).await
}

/// Fee lists (CDRs).
///
/// Every callback endpoint takes every kind and dispatches on `eventType`. The CDRs of a list
/// that cannot be read are listed in the kept request's error and the rest stored (outcome
/// partial, 200); only a list none of whose CDRs can be read is refused. Any other method is
/// answered 405 (and kept).
#[utoipa::path(
    post,
    path = "/voicecall/fee",
    tag = "callbacks",
    request_body(content = AnyCallback, content_type = "application/json", description = "A fee list (FeeCallback), or any callback"),
    params(XAksk),
    responses(CallbackAnswers)
)]
pub async fn fee(State(state): State<AppState>, request: Request) -> Response {
    receive(state, Endpoint::Fee, request).await
}

/// Either kind, for when one URL is registered for both. Any other method is answered 405
/// (and kept).
#[utoipa::path(
    post,
    path = "/voicecall/events",
    tag = "callbacks",
    request_body(content = AnyCallback, content_type = "application/json"),
    params(XAksk),
    responses(CallbackAnswers)
)]
pub async fn events(State(state): State<AppState>, request: Request) -> Response {
    receive(state, Endpoint::Events, request).await
}

/// The success answer. Fee pushes are judged by `resultcode` (spec §1.3); status pushes only
/// need the 200, and get the same body.
fn acknowledge(raw: &RawCallback, outcome: Outcome) -> Response {
    let mut response = (
        StatusCode::OK,
        Json(json!({"resultcode": "0", "resultdesc": "Success"})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-callhook-outcome",
        HeaderValue::from_static(outcome.as_str()),
    );
    if let Ok(id) = HeaderValue::from_str(&raw.id.to_string()) {
        headers.insert("x-callhook-callback-id", id);
    }
    response
}

async fn receive(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let limit = state.config.http.body_limit_bytes;
    let (body, body_error) = match read_limited(body, limit).await {
        BodyRead::Complete(bytes) => (bytes, None),
        BodyRead::TooLarge(prefix) => (prefix, Some(ApiError::body_too_large(limit))),
        BodyRead::Incomplete(prefix) => (prefix, Some(ApiError::body_incomplete())),
    };
    let mut raw = raw_callback(&parts, endpoint, body);
    if let Some(error) = body_error {
        raw.body_truncated = true;
        return finish(
            &state,
            refuse(&state, &raw, Outcome::Rejected, error).await,
            "unknown",
            started,
        );
    }

    let token = parts
        .headers
        .get("x-aksk")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_username_token);
    raw.signature_verdict =
        judge_signature(&state, &parts, endpoint, token.as_ref(), raw.received_at);
    raw.app_key = token.as_ref().map(|t| t.username.clone());
    metrics::counter!(m::SIGNATURE_VERDICTS_TOTAL, "verdict" => raw.signature_verdict.as_str())
        .increment(1);

    let parsed = parse_callback(&raw.body);
    raw.event_type = parsed.event_type;
    let kind = match &parsed.result {
        Ok(Callback::Status(_)) => "status",
        Ok(Callback::Fee(_)) => "fee",
        Err(_) => "unknown",
    };
    let enforce = state.config.signature.mode == SignatureMode::Enforce;
    if enforce && raw.signature_verdict != Verdict::Valid {
        let error = ApiError::unauthorized(raw.signature_verdict);
        return finish(
            &state,
            refuse(&state, &raw, Outcome::Unauthorized, error).await,
            kind,
            started,
        );
    }
    let callback = match parsed.result {
        Ok(callback) => callback,
        Err(error) => {
            let error = ApiError::bad_input(&error);
            return finish(
                &state,
                refuse(&state, &raw, Outcome::Rejected, error).await,
                kind,
                started,
            );
        }
    };
    if let Callback::Fee(batch) = &callback
        && raw.app_key.is_none()
    {
        raw.app_key = batch.records.iter().find_map(|r| r.info.app_key.clone());
    }

    let nonce = token.filter(|_| raw.signature_verdict == Verdict::Valid);
    let job = Job {
        raw,
        callback,
        nonce,
        refuse_replays: enforce,
    };
    let retry_after = state.config.http.retry_after_secs;
    let response = match state.committer.submit(job).await {
        Submitted::Done(job, Ok(Ingested::Committed { outcome, records })) => {
            record_success(&job.callback, outcome, records);
            acknowledge(&job.raw, outcome)
        }
        Submitted::Done(job, Ok(Ingested::Replayed)) => {
            let error = ApiError::unauthorized(Verdict::Replayed);
            refuse(&state, &job.raw, Outcome::Unauthorized, error).await
        }
        Submitted::Done(job, Err(Failure::Refused)) => {
            let error = ApiError::from_failure(Failure::Refused, retry_after);
            refuse(&state, &job.raw, Outcome::Rejected, error).await
        }
        Submitted::Done(_, Err(failure)) => {
            ApiError::from_failure(failure, retry_after).into_response()
        }
        Submitted::Overloaded(_) => {
            metrics::counter!(m::REJECTIONS_TOTAL, "reason" => "overloaded").increment(1);
            ApiError::overloaded(retry_after).into_response()
        }
        Submitted::Lost => ApiError::from_failure(Failure::Internal, retry_after).into_response(),
    };
    finish(&state, response, kind, started)
}

async fn wrong_method(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (body, truncated) = match read_limited(body, state.config.http.body_limit_bytes).await {
        BodyRead::Complete(bytes) => (bytes, false),
        BodyRead::TooLarge(bytes) | BodyRead::Incomplete(bytes) => (bytes, true),
    };
    let mut raw = raw_callback(&parts, endpoint, body);
    raw.body_truncated = truncated;
    raw.signature_verdict = Verdict::NotChecked;
    let error = ApiError::method_not_allowed(parts.method.as_str());
    finish(
        &state,
        refuse(&state, &raw, Outcome::Rejected, error).await,
        "unknown",
        started,
    )
}

/// Keeps a refused request and answers with its error, or with 503 when it cannot be kept (so
/// the sender retries rather than the request being lost).
async fn refuse(
    state: &AppState,
    raw: &RawCallback,
    outcome: Outcome,
    error: ApiError,
) -> Response {
    metrics::counter!(m::REJECTIONS_TOTAL, "reason" => error.code).increment(1);
    tracing::info!(
        code = error.code,
        field = error.field.as_deref(),
        event_type = raw.event_type.as_deref(),
        callback_id = %raw.id,
        "callback refused"
    );
    let kept = ingest::reject(
        &state.pool,
        raw,
        outcome,
        error.status.as_u16(),
        error.to_json(),
    )
    .await;
    match kept {
        Ok(()) => error.into_response(),
        Err(store_error) => {
            ApiError::from_store(&store_error, state.config.http.retry_after_secs).into_response()
        }
    }
}

fn record_success(
    callback: &Callback,
    outcome: Outcome,
    records: Option<crate::store::raw::RecordCounts>,
) {
    match callback {
        Callback::Status(event) => {
            if outcome == Outcome::Duplicate {
                metrics::counter!(m::DUPLICATES_TOTAL, "kind" => "status").increment(1);
            }
            tracing::debug!(
                event_type = event.event_type.as_str(),
                session_id = %event.session_id,
                caller = event.info.caller.as_deref().map(mask_phone),
                called = event.info.called.as_deref().map(mask_phone),
                outcome = outcome.as_str(),
                "status event"
            );
        }
        Callback::Fee(_) => {
            let counts = records.unwrap_or_default();
            let as_u64 = |n: i32| u64::try_from(n).unwrap_or(0);
            metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "stored")
                .increment(as_u64(counts.stored));
            metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "duplicate")
                .increment(as_u64(counts.duplicate));
            metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "rejected")
                .increment(as_u64(counts.rejected));
            metrics::counter!(m::DUPLICATES_TOTAL, "kind" => "cdr")
                .increment(as_u64(counts.duplicate));
            tracing::debug!(
                total = counts.total,
                stored = counts.stored,
                duplicate = counts.duplicate,
                rejected = counts.rejected,
                "fee list"
            );
        }
    }
}

fn finish(_state: &AppState, response: Response, kind: &'static str, started: Instant) -> Response {
    let outcome = response
        .headers()
        .get("x-callhook-outcome")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| status_outcome(response.status()), outcome_label);
    metrics::counter!(m::CALLBACKS_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!(m::CALLBACK_DURATION_SECONDS, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    response
}

fn outcome_label(value: &str) -> &'static str {
    [Outcome::Stored, Outcome::Duplicate, Outcome::Partial]
        .into_iter()
        .find(|o| o.as_str() == value)
        .map_or("error", Outcome::as_str)
}

fn status_outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        400..=499 => "rejected",
        503 => "unavailable",
        _ => "error",
    }
}

fn judge_signature(
    state: &AppState,
    parts: &Parts,
    endpoint: Endpoint,
    token: Option<&UsernameToken>,
    now: OffsetDateTime,
) -> Verdict {
    if state.config.signature.mode == SignatureMode::Off {
        return Verdict::NotChecked;
    }
    if !parts.headers.contains_key("x-aksk") {
        return Verdict::Absent;
    }
    let Some(token) = token else {
        return Verdict::Malformed;
    };
    let urls = signed_urls(state, parts, endpoint);
    state.verifier.verify(token, &urls, now)
}

/// The URLs the platform may have signed (⚠ UNKNOWN in the spec; `signature.signed_urls`).
fn signed_urls(state: &AppState, parts: &Parts, endpoint: Endpoint) -> Vec<String> {
    let base = if state.config.public_base_url.is_empty() {
        base_from_headers(&parts.headers)
    } else {
        state.config.public_base_url.clone()
    };
    let mut urls = Vec::with_capacity(3);
    for choice in &state.config.signature.signed_urls {
        match choice {
            SignedUrl::Request => {
                urls.push(format!("{base}{}", endpoint.path()));
                if let Some(query) = parts.uri.query() {
                    urls.push(format!("{base}{}?{query}", endpoint.path()));
                }
            }
            SignedUrl::Fee => urls.push(format!("{base}{}", Endpoint::Fee.path())),
        }
    }
    urls.dedup();
    urls
}

fn base_from_headers(headers: &HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim())
    };
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Headers worth keeping with a raw callback. Anything else (cookies, unrelated auth) is not.
const KEPT_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "user-agent",
    "authorization",
    "x-aksk",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// The platform's `Authorization` is a fixed realm string (`AKSK realm="SDP",…`) with nothing
/// secret in it, and is kept as it is. Any other scheme (Basic, Bearer, a proxy's) may carry a
/// credential, so only its scheme is kept.
fn redact_authorization(value: &str) -> String {
    match value.trim().split_once(char::is_whitespace) {
        Some((scheme, _))
            if ["AKSK", "WSSE"]
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s)) =>
        {
            value.to_owned()
        }
        // A scheme is a short token; anything else may be the credential itself.
        Some((scheme, _))
            if scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            format!("{scheme} [redacted]")
        }
        _ => "[redacted]".to_owned(),
    }
}

fn raw_callback(parts: &Parts, endpoint: Endpoint, body: bytes::Bytes) -> RawCallback {
    let mut headers = Map::new();
    for name in KEPT_HEADERS {
        if let Some(value) = parts.headers.get(*name) {
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = match *name {
                "x-aksk" => redact_username_token(&value),
                "authorization" => redact_authorization(&value),
                _ => value.into_owned(),
            };
            headers.insert((*name).to_owned(), Value::String(value));
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    RawCallback {
        id: Uuid::now_v7(),
        received_at: OffsetDateTime::now_utc(),
        endpoint: endpoint.as_str(),
        method: parts.method.as_str().to_owned(),
        path,
        peer_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.to_string()),
        headers: Value::Object(headers),
        body,
        body_truncated: false,
        event_type: None,
        app_key: None,
        signature_verdict: Verdict::NotChecked,
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
