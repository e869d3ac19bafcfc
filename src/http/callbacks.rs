//! The callback endpoints (spec §1): raw bytes → signature verdict → parse → keep the receipt →
//! answer. A 200 is sent only once the receipt is durable (in PostgreSQL, or in the local spool
//! when the database cannot take it); its rows are derived afterwards by the projector. Anything
//! refused is kept as a receipt too, with the error it was answered with.

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
    callback_schema::{AnyCallback, CallbackAnswers, CallbackOutcome, XAksk},
    error::ApiError,
};
use crate::{
    config::{SignatureMode, SignedUrl},
    http::AppState,
    ingest::{self, KeptIn, NotKept, OnReplay},
    metrics as m,
    platform::{
        callback::{Callback, WireErrorCode, parse_callback},
        signature::{UsernameToken, Verdict, parse_username_token, redact_username_token},
    },
    store::raw::{Receipt, ReceiptOutcome},
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

/// The success answer: the receipt is kept. Fee pushes are judged by `resultcode` (spec §1.3);
/// status pushes only need the 200, and get the same body.
fn acknowledge(receipt: &Receipt, outcome: CallbackOutcome, kept_in: KeptIn) -> Response {
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
    headers.insert(
        "x-callhook-kept-in",
        HeaderValue::from_static(kept_in.as_str()),
    );
    if let Ok(id) = HeaderValue::from_str(&receipt.id.to_string()) {
        headers.insert("x-callhook-callback-id", id);
    }
    response
}

async fn receive(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let Ok(_slot) = state.callback_slots.clone().try_acquire_owned() else {
        return too_many_requests(started);
    };
    let (parts, body) = request.into_parts();
    let limit = state.config.http.body_limit_bytes;
    let (body, body_error) = match read_limited(body, limit).await {
        BodyRead::Complete(bytes) => (bytes, None),
        BodyRead::TooLarge(prefix) => (prefix, Some(ApiError::BodyTooLarge { limit })),
        BodyRead::Incomplete(prefix) => (prefix, Some(ApiError::BodyIncomplete)),
    };
    let mut receipt = new_receipt(&parts, endpoint, body);
    if let Some(error) = body_error {
        receipt.body_truncated = true;
        let answer = refuse(&state, receipt, ReceiptOutcome::Rejected, error).await;
        return finish(answer, "unknown", started);
    }

    let token = parts
        .headers
        .get("x-aksk")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_username_token);
    receipt.signature_verdict = judge_signature(
        &state,
        &parts,
        endpoint,
        token.as_ref(),
        receipt.received_at,
    );
    if let Some(token) = token {
        receipt.app_key = Some(token.username);
        receipt.nonce = Some(token.nonce);
    }
    metrics::counter!(m::SIGNATURE_VERDICTS_TOTAL, "verdict" => receipt.signature_verdict.as_str())
        .increment(1);

    let parsed = parse_callback(&receipt.body);
    receipt.event_type = parsed.event_type;
    let kind = match &parsed.result {
        Ok(Callback::Status(_)) => "status",
        Ok(Callback::Fee(_)) => "fee",
        Err(_) => "unknown",
    };
    let enforce = state.config.signature.mode == SignatureMode::Enforce;
    if enforce && receipt.signature_verdict != Verdict::Valid {
        let error = ApiError::SignatureRefused(receipt.signature_verdict);
        let answer = refuse(&state, receipt, ReceiptOutcome::Unauthorized, error).await;
        return finish(answer, kind, started);
    }
    let label = match &parsed.result {
        Ok(Callback::Status(_)) => CallbackOutcome::Accepted,
        Ok(Callback::Fee(batch)) => {
            if receipt.app_key.is_none() {
                receipt.app_key = batch.records.iter().find_map(|r| r.info.app_key.clone());
            }
            if batch.rejected.is_empty() {
                CallbackOutcome::Accepted
            } else {
                CallbackOutcome::Partial
            }
        }
        Err(error) if error.code == WireErrorCode::UnknownEventType => {
            // Spec §1.5: accept and log values not known yet. Kept, answered 200, and counted,
            // so a new event type is visible and can be reprocessed once the parser learns it.
            tracing::warn!(event_type = receipt.event_type.as_deref(), callback_id = %receipt.id, "unknown eventType: kept for reprocessing");
            metrics::counter!(m::REJECTIONS_TOTAL, "reason" => error.code.as_str()).increment(1);
            receipt.outcome = ReceiptOutcome::Unrecognized;
            receipt.error = Some(ingest::wire_error_json(error));
            CallbackOutcome::Unrecognized
        }
        Err(error) => {
            let error = ApiError::BadInput(error.clone());
            let answer = refuse(&state, receipt, ReceiptOutcome::Rejected, error).await;
            return finish(answer, kind, started);
        }
    };

    let on_replay = if enforce {
        let error = ApiError::SignatureRefused(Verdict::Replayed);
        OnReplay::Refuse {
            http_status: error.status().as_u16(),
            error: error.to_json(),
        }
    } else {
        OnReplay::Accept
    };
    let answer = match state.receipts.keep(receipt, on_replay).await {
        Ok((receipt, _)) if receipt.outcome == ReceiptOutcome::Unauthorized => {
            let error = ApiError::SignatureRefused(Verdict::Replayed);
            metrics::counter!(m::REJECTIONS_TOTAL, "reason" => error.code()).increment(1);
            (error.into_response(), ReceiptOutcome::Unauthorized.as_str())
        }
        Ok((receipt, kept_in)) => (acknowledge(&receipt, label, kept_in), label.as_str()),
        Err(not_kept) => (not_kept_answer(not_kept), not_kept_label(not_kept)),
    };
    finish(answer, kind, started)
}

/// The 503 of a callback request beyond `ingest.max_concurrent_requests`.
fn too_many_requests(started: Instant) -> Response {
    let answer = not_kept_answer(NotKept::Overloaded);
    finish((answer, "unavailable"), "unknown", started)
}

fn not_kept_answer(not_kept: NotKept) -> Response {
    if not_kept == NotKept::Overloaded {
        metrics::counter!(m::REJECTIONS_TOTAL, "reason" => "overloaded").increment(1);
    }
    ApiError::from(not_kept).into_response()
}

fn not_kept_label(not_kept: NotKept) -> &'static str {
    match not_kept {
        NotKept::Overloaded | NotKept::SpoolFull => "unavailable",
        NotKept::Failed => "error",
    }
}

async fn wrong_method(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let Ok(_slot) = state.callback_slots.clone().try_acquire_owned() else {
        return too_many_requests(started);
    };
    let (parts, body) = request.into_parts();
    let (body, truncated) = match read_limited(body, state.config.http.body_limit_bytes).await {
        BodyRead::Complete(bytes) => (bytes, false),
        BodyRead::TooLarge(bytes) | BodyRead::Incomplete(bytes) => (bytes, true),
    };
    let mut receipt = new_receipt(&parts, endpoint, body);
    receipt.body_truncated = truncated;
    let error = ApiError::MethodNotAllowed {
        method: parts.method.to_string(),
    };
    let answer = refuse(&state, receipt, ReceiptOutcome::Rejected, error).await;
    finish(answer, "unknown", started)
}

/// Keeps a refused request as a receipt and answers with its error, or with 503 when it cannot
/// be kept (so the sender retries rather than the request being lost).
async fn refuse(
    state: &AppState,
    mut receipt: Receipt,
    outcome: ReceiptOutcome,
    error: ApiError,
) -> (Response, &'static str) {
    metrics::counter!(m::REJECTIONS_TOTAL, "reason" => error.code()).increment(1);
    tracing::info!(
        code = error.code(),
        field = error.field(),
        event_type = receipt.event_type.as_deref(),
        callback_id = %receipt.id,
        "callback refused"
    );
    receipt.outcome = outcome;
    receipt.http_status = error.status().as_u16();
    receipt.error = Some(error.to_json());
    let label = outcome.as_str();
    match state.receipts.keep_refused(receipt).await {
        Ok(_) => (error.into_response(), label),
        Err(not_kept) => (not_kept_answer(not_kept), not_kept_label(not_kept)),
    }
}

fn finish(
    (response, outcome): (Response, &'static str),
    kind: &'static str,
    started: Instant,
) -> Response {
    metrics::counter!(m::CALLBACKS_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!(m::CALLBACK_DURATION_SECONDS, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    response
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
        base_from_headers(&parts.headers, state.config.http.trust_forwarded_headers)
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

/// The X-Forwarded-* headers count only when trusted (`http.trust_forwarded_headers`): anyone
/// can send them, and without a proxy that sets them they say nothing about the signed URL.
fn base_from_headers(headers: &HeaderMap, trust_forwarded: bool) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim())
    };
    let forwarded = |name: &str| header(name).filter(|_| trust_forwarded);
    let scheme = forwarded("x-forwarded-proto").unwrap_or("http");
    let host = forwarded("x-forwarded-host")
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

fn new_receipt(parts: &Parts, endpoint: Endpoint, body: bytes::Bytes) -> Receipt {
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
    Receipt {
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
        nonce: None,
        signature_verdict: Verdict::NotChecked,
        outcome: ReceiptOutcome::Received,
        http_status: 200,
        error: None,
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
