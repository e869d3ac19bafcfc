//! What the `/v1` API answers: the stored rows, with phone numbers masked unless the caller's
//! token has the `full` scope.
//!
//! Masking (`telemetry::mask_phone`, `+8613800001111` → `+86*********11`) covers:
//! - the number columns: calls caller, callee, display_number; call_events caller, called,
//!   display_caller_num; cdrs bind_num, caller_num, callee_num, fwd_display_num, fwd_dst_num;
//! - free text that may quote a number (userData, digits keyed in, stateDesc, errors, the request
//!   path, the eventType as written): every run of five or more digits
//!   (`telemetry::mask_numbers`);
//! - every JSON value (raw bodies, headers, placed-call requests and answers, errors, `extra`):
//!   `telemetry::mask_json`, the one masking of JSON: any field at any depth, known or not.
//!
//! Raw bodies: with `full`, the exact bytes, as UTF-8 text when they are, else Base64. With
//! `masked`, a body that is JSON is answered re-serialized with its numbers masked (key order and
//! spacing are not the original's), and a body that is not JSON is omitted: it cannot be masked
//! reliably, and what is wrong with it is in `error`.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    config::TokenScope,
    ingest::Reprocessed,
    store::read::{CallDetail, CallRow, CdrRow, EventRow, PlacedRow, RawRow},
    telemetry::{mask_json, mask_numbers, mask_phone},
};

fn mask(value: &mut Option<String>) {
    if let Some(number) = value {
        *number = mask_phone(number);
    }
}

/// Free text that may quote a number (userData, digits keyed in).
fn mask_text(value: &mut Option<String>) {
    if let Some(text) = value {
        *text = mask_numbers(text);
    }
}

fn mask_json_field(value: &mut Option<Value>) {
    if let Some(value) = value {
        mask_json(value);
    }
}

pub fn mask_call(call: &mut CallRow) {
    mask(&mut call.caller);
    mask(&mut call.callee);
    mask(&mut call.display_number);
    mask_text(&mut call.user_data);
    mask_text(&mut call.digits);
}

pub fn mask_cdr(cdr: &mut CdrRow) {
    mask(&mut cdr.bind_num);
    mask(&mut cdr.caller_num);
    mask(&mut cdr.callee_num);
    mask(&mut cdr.fwd_display_num);
    mask(&mut cdr.fwd_dst_num);
    mask_text(&mut cdr.user_data);
    mask_json_field(&mut cdr.extra);
}

pub fn mask_event(event: &mut EventRow) {
    mask(&mut event.caller);
    mask(&mut event.called);
    mask(&mut event.display_caller_num);
    mask_text(&mut event.user_data);
    mask_text(&mut event.digit_info);
    mask_text(&mut event.state_desc);
    mask_json_field(&mut event.extra);
}

/// Applies `mask` to `row` unless the scope is `full`.
pub fn scoped<T>(scope: TokenScope, mut row: T, mask: fn(&mut T)) -> T {
    if scope != TokenScope::Full {
        mask(&mut row);
    }
    row
}

/// How `RawCallbackView::body` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// The exact bytes, which are UTF-8 text.
    Utf8,
    /// The exact bytes, Base64 (standard alphabet, padded): they are not UTF-8.
    Base64,
    /// Masked scope: the JSON body re-serialized with its phone numbers masked.
    MaskedJson,
    /// Masked scope: the body is not JSON and is left out (`body` is null).
    Omitted,
}

/// A kept request (`raw_callbacks`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RawCallback)]
pub struct RawCallbackView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// status, fee or events.
    pub endpoint: String,
    pub method: String,
    pub path: String,
    pub peer_addr: Option<String>,
    /// The relevant request headers; X-AKSK's PasswordDigest is already redacted when stored.
    pub headers: Value,
    pub body: Option<String>,
    pub body_encoding: BodyEncoding,
    pub body_truncated: bool,
    pub event_type: Option<String>,
    pub app_key: Option<String>,
    pub signature_verdict: String,
    /// stored, duplicate, partial, rejected or unauthorized.
    pub outcome: String,
    pub http_status: i16,
    /// `{code, message, field?, records?}` for refused requests and refused CDRs.
    pub error: Option<Value>,
    pub records_total: Option<i32>,
    pub records_stored: Option<i32>,
    pub records_duplicate: Option<i32>,
    pub records_rejected: Option<i32>,
    pub request_id: Option<String>,
    /// When it was last run through the parser again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub reprocessed_at: Option<OffsetDateTime>,
    /// What that came to: stored, duplicate, partial or rejected.
    pub reprocess_outcome: Option<String>,
    pub reprocess_error: Option<Value>,
}

impl RawCallbackView {
    pub fn new(raw: RawRow, scope: TokenScope) -> Self {
        let full = scope == TokenScope::Full;
        let (body, body_encoding) = body_view(raw.body, full);
        let mut view = Self {
            id: raw.id,
            received_at: raw.received_at,
            endpoint: raw.endpoint,
            method: raw.method,
            path: raw.path,
            peer_addr: raw.peer_addr,
            headers: raw.headers,
            body,
            body_encoding,
            body_truncated: raw.body_truncated,
            event_type: raw.event_type,
            app_key: raw.app_key,
            signature_verdict: raw.signature_verdict,
            outcome: raw.outcome,
            http_status: raw.http_status,
            error: raw.error,
            records_total: raw.records_total,
            records_stored: raw.records_stored,
            records_duplicate: raw.records_duplicate,
            records_rejected: raw.records_rejected,
            request_id: raw.request_id,
            reprocessed_at: raw.reprocessed_at,
            reprocess_outcome: raw.reprocess_outcome,
            reprocess_error: raw.reprocess_error,
        };
        if !full {
            // Anything here may come from the request: the path's query string, the headers,
            // the eventType as written, errors quoting a value of the body. (The app key is
            // the app's name, shown as is here as in calls and CDRs, and filtered on.)
            view.path = mask_numbers(&view.path);
            mask_json(&mut view.headers);
            mask_text(&mut view.event_type);
            mask_json_field(&mut view.error);
            mask_json_field(&mut view.reprocess_error);
        }
        view
    }
}

fn body_view(body: Vec<u8>, full: bool) -> (Option<String>, BodyEncoding) {
    if full {
        return match String::from_utf8(body) {
            Ok(text) => (Some(text), BodyEncoding::Utf8),
            Err(error) => (
                Some(STANDARD.encode(error.into_bytes())),
                BodyEncoding::Base64,
            ),
        };
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut json) => {
            mask_json(&mut json);
            (Some(json.to_string()), BodyEncoding::MaskedJson)
        }
        Err(_) => (None, BodyEncoding::Omitted),
    }
}

/// The outbound request that placed the call (`placed_calls`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PlacedCall)]
pub struct PlacedCallView {
    pub id: Uuid,
    /// click2call, notify or verify.
    pub operation: String,
    pub app_key: String,
    /// The parameters as sent (masked scope: numbers masked).
    pub request: Value,
    pub response: Option<Value>,
    pub http_status: Option<i16>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub session_id: Option<String>,
    pub user_data: Option<String>,
    /// accepted, declined, failed or not_sent.
    pub outcome: String,
    pub error: Option<String>,
    pub attempts: i16,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
}

impl PlacedCallView {
    pub fn new(placed: PlacedRow, scope: TokenScope) -> Self {
        let mut view = Self {
            id: placed.id,
            operation: placed.operation,
            app_key: placed.app_key,
            request: placed.request,
            response: placed.response,
            http_status: placed.http_status,
            result_code: placed.result_code,
            result_desc: placed.result_desc,
            session_id: placed.session_id,
            user_data: placed.user_data,
            outcome: placed.outcome,
            error: placed.error,
            attempts: placed.attempts,
            requested_at: placed.requested_at,
            answered_at: placed.answered_at,
        };
        if scope != TokenScope::Full {
            // The platform's answer may quote a parameter it refused (1010002 names it).
            mask_json(&mut view.request);
            mask_json_field(&mut view.response);
            mask_text(&mut view.result_desc);
            mask_text(&mut view.user_data);
            mask_text(&mut view.error);
        }
        view
    }
}

/// `GET /v1/calls/{session_id}`: the call and everything stored about it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = CallDetail)]
pub struct CallDetailView {
    pub call: CallRow,
    /// Its status events (call_events), in platform order.
    pub events: Vec<EventRow>,
    /// Its CDRs (normally one).
    pub cdrs: Vec<CdrRow>,
    /// The requests that brought one of its stored events or CDRs (not redeliveries, which
    /// stored nothing), in arrival order.
    pub raw_callbacks: Vec<RawCallbackView>,
    /// The request that placed it, when callhook placed it.
    pub placed_call: Option<PlacedCallView>,
}

impl CallDetailView {
    pub fn new(detail: CallDetail, scope: TokenScope) -> Self {
        Self {
            call: scoped(scope, detail.call, mask_call),
            events: detail
                .events
                .into_iter()
                .map(|e| scoped(scope, e, mask_event))
                .collect(),
            cdrs: detail
                .cdrs
                .into_iter()
                .map(|c| scoped(scope, c, mask_cdr))
                .collect(),
            raw_callbacks: detail
                .raw_callbacks
                .into_iter()
                .map(|r| RawCallbackView::new(r, scope))
                .collect(),
            placed_call: detail.placed_call.map(|p| PlacedCallView::new(p, scope)),
        }
    }
}

/// The data of an `event: call` of `GET /v1/stream`: a call's row after it changed, exactly as
/// `GET /v1/calls/{session_id}` shows its `call` (masked likewise).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallChange {
    pub session_id: String,
    pub call: CallRow,
}

impl CallChange {
    pub fn new(call: &CallRow, scope: TokenScope) -> Self {
        Self {
            session_id: call.session_id.clone(),
            call: scoped(scope, call.clone(), mask_call),
        }
    }
}

/// A page of calls, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallPage {
    pub calls: Vec<CallRow>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of calls whose CDR is overdue, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GapPage {
    /// Calls without a CDR; `events` = 0 marks a call we placed that never got any callback.
    pub calls: Vec<CallRow>,
    pub next_cursor: Option<String>,
    /// The age, in seconds, after which a missing CDR counted as a gap for this answer.
    pub older_than: u64,
}

/// A page of CDRs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CdrPage {
    pub cdrs: Vec<CdrRow>,
    pub next_cursor: Option<String>,
}

/// A page of refused callbacks, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefusedPage {
    pub callbacks: Vec<RawCallbackView>,
    pub next_cursor: Option<String>,
}

/// What reprocessing one kept callback came to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Reprocessed)]
pub struct ReprocessedView {
    pub id: Uuid,
    /// stored, duplicate, partial, or rejected when today's parser still refuses it.
    pub outcome: String,
    /// The error when it is still (partly) refused.
    pub error: Option<Value>,
}

impl From<Reprocessed> for ReprocessedView {
    fn from(done: Reprocessed) -> Self {
        Self {
            id: done.id,
            outcome: done.outcome.as_str().to_owned(),
            error: done.error,
        }
    }
}

/// `POST /v1/refused/reprocess`: every refused callback that can be reprocessed, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReprocessReport)]
pub struct ReprocessAllView {
    pub results: Vec<ReprocessedView>,
    /// How many came to stored, duplicate, partial, rejected, unrecognized: they add up to the
    /// number of results.
    pub stored: usize,
    pub duplicate: usize,
    pub partial: usize,
    pub rejected: usize,
    pub unrecognized: usize,
}

impl ReprocessAllView {
    pub fn new(done: Vec<Reprocessed>) -> Self {
        let results: Vec<ReprocessedView> = done.into_iter().map(Into::into).collect();
        let count = |outcome: &str| results.iter().filter(|r| r.outcome == outcome).count();
        Self {
            stored: count("stored"),
            duplicate: count("duplicate"),
            partial: count("partial"),
            rejected: count("rejected"),
            unrecognized: count("unrecognized"),
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_bodies_hide_numbers_in_fields_no_key_names() {
        let body =
            br#"{"eventType":"callout","statusInfo":{"sessionId":"s-1","userData":"13800001111",
            "caller":"+8613800002222","surprise":{"note":"ring +8613800003333"}}}"#;
        let (Some(masked), BodyEncoding::MaskedJson) = body_view(body.to_vec(), false) else {
            panic!("a JSON body is shown masked");
        };
        for number in ["13800001111", "8613800002222", "8613800003333"] {
            assert!(!masked.contains(number), "{number} in {masked}");
        }
        assert!(masked.contains(r#""sessionId":"s-1""#), "{masked}");
    }

    #[test]
    fn masked_scope_omits_bodies_that_are_not_json() {
        assert_eq!(
            body_view(b"not json +8613800001111".to_vec(), false),
            (None, BodyEncoding::Omitted)
        );
        assert_eq!(
            body_view(vec![0xff, 0x00], true),
            (Some("/wA=".into()), BodyEncoding::Base64)
        );
        assert_eq!(
            body_view(b"{\"caller\":\"+8613800001111\"}".to_vec(), false),
            (
                Some("{\"caller\":\"+86*********11\"}".into()),
                BodyEncoding::MaskedJson
            )
        );
    }
}
