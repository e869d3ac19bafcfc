//! What the `/v1` API answers: the stored rows, with phone numbers masked unless the caller's
//! token has the `full` scope.
//!
//! Masking (`telemetry::mask_phone`, `+8613800001111` → `+86*********11`) covers:
//! - the number columns: calls caller, callee, display_number; call_events caller, called,
//!   display_caller_num; cdrs bind_num, caller_num, callee_num, fwd_display_num, fwd_dst_num;
//! - inside JSON (raw bodies, placed-call requests): every value under a key that names a number
//!   (`caller`, `called`, and any key ending in `Num` or `Nbr`, e.g. `callerNum`, `calleeNbr`);
//! - free text and free-form JSON (errors, `extra`): every run of five or more digits
//!   (`telemetry::mask_numbers`).
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
    telemetry::{mask_numbers, mask_phone},
};

fn mask(value: &mut Option<String>) {
    if let Some(number) = value {
        *number = mask_phone(number);
    }
}

/// Whether a JSON key of the platform's bodies or of our requests holds a phone number.
fn is_number_key(key: &str) -> bool {
    matches!(key, "caller" | "called") || key.ends_with("Num") || key.ends_with("Nbr")
}

/// Masks the values of number keys, at any depth.
pub fn mask_number_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(number) if is_number_key(key) => *number = mask_phone(number),
                    Value::Number(number) if is_number_key(key) => {
                        *value = Value::String(mask_phone(&number.to_string()));
                    }
                    _ => mask_number_fields(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_number_fields),
        _ => {}
    }
}

/// Masks every run of five or more digits in every string, at any depth.
pub fn mask_digit_runs(value: &mut Value) {
    match value {
        Value::String(text) => *text = mask_numbers(text),
        Value::Object(map) => map.values_mut().for_each(mask_digit_runs),
        Value::Array(items) => items.iter_mut().for_each(mask_digit_runs),
        _ => {}
    }
}

fn mask_json(value: &mut Option<Value>) {
    if let Some(value) = value {
        mask_number_fields(value);
        mask_digit_runs(value);
    }
}

pub fn mask_call(call: &mut CallRow) {
    mask(&mut call.caller);
    mask(&mut call.callee);
    mask(&mut call.display_number);
}

pub fn mask_cdr(cdr: &mut CdrRow) {
    mask(&mut cdr.bind_num);
    mask(&mut cdr.caller_num);
    mask(&mut cdr.callee_num);
    mask(&mut cdr.fwd_display_num);
    mask(&mut cdr.fwd_dst_num);
    mask_json(&mut cdr.extra);
}

pub fn mask_event(event: &mut EventRow) {
    mask(&mut event.caller);
    mask(&mut event.called);
    mask(&mut event.display_caller_num);
    mask_json(&mut event.extra);
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
            // The path may carry a query string, and errors may quote a value of the body.
            view.path = mask_numbers(&view.path);
            mask_json(&mut view.error);
            mask_json(&mut view.reprocess_error);
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
            mask_number_fields(&mut json);
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
    /// accepted, refused, failed or not_sent.
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
            mask_number_fields(&mut view.request);
            view.error = view.error.as_deref().map(mask_numbers);
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
pub struct RejectedPage {
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

/// `POST /v1/rejected/reprocess`: every refused callback that can be reprocessed, oldest first.
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
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_inside_bodies_are_masked_wherever_they_are() {
        let mut body = json!({
            "eventType": "fee",
            "feeLst": [{"sessionId": "1201_612_4294967295_20190124030424@h", "callerNum": "+8613800001111",
                        "calleeNum": 8613800002222_u64, "fwdDstNum": "+8613800003333", "bindNum": "+867550000000"}],
            "statusInfo": {"caller": "+8613800004444", "called": "+8613800005555", "displayCallerNum": "+8613800006666"}
        });
        mask_number_fields(&mut body);
        let text = body.to_string();
        for number in [
            "8613800001111",
            "8613800002222",
            "8613800003333",
            "867550000000",
            "8613800004444",
            "8613800005555",
            "8613800006666",
        ] {
            assert!(!text.contains(number), "{number} in {text}");
        }
        assert_eq!(body["feeLst"][0]["callerNum"], "+86*********11");
        assert_eq!(body["feeLst"][0]["calleeNum"], "86*********22");
        // The session id is not a number field and stays usable.
        assert_eq!(
            body["feeLst"][0]["sessionId"],
            "1201_612_4294967295_20190124030424@h"
        );
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
