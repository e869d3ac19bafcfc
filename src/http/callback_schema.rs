//! The callback endpoints' request and answer schemas, for the OpenAPI document, and the
//! vocabulary of their 200 answers (`x-callhook-outcome`, `x-callhook-kept-in`). Apart from
//! `callbacks.rs` so that the handlers and the document both read them, and neither reads the
//! other's module.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::error::ErrorBody;
use crate::platform::callback::{CallStatusInfo, FeeInfo};

/// A status event push (spec §1.5).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCallback {
    pub event_type: StatusEventType,
    pub status_info: CallStatusInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum StatusEventType {
    Callout,
    Alerting,
    Answer,
    CollectInfo,
    Disconnect,
}

/// A fee (CDR) push (spec §1.6): 1 to 50 CDRs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeeCallback {
    pub event_type: FeeEventType,
    /// Stated in full by `document` (a JSON Schema `contains`).
    pub fee_lst: Vec<FeeInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum FeeEventType {
    Fee,
}

/// Either kind: every callback endpoint dispatches on `eventType`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnyCallback {
    Status(Box<StatusCallback>),
    Fee(FeeCallback),
}

/// The answer to a callback that was taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAck {
    /// "0": success, which is what stops the platform re-pushing.
    pub resultcode: String,
    pub resultdesc: String,
}

/// What became of a callback answered 200 (header `x-callhook-outcome`, and the `outcome` label
/// of its metrics). Whether it was new or a duplicate is known once projected
/// (`raw_callbacks.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// The receipt is durable; its rows are derived shortly after.
    Accepted,
    /// A fee list of which some CDRs could not be read; the others will be stored.
    Partial,
    /// An eventType this version does not know: kept, to be reprocessed once it is known.
    Unrecognized,
}

impl CallbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Partial => "partial",
            Self::Unrecognized => "unrecognized",
        }
    }
}

/// Where the receipt of a callback answered 200 was kept (header `x-callhook-kept-in`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeptIn {
    /// Committed in PostgreSQL.
    Database,
    /// Appended to this replica's local spool (the database could not take it); drained into
    /// PostgreSQL when it is back.
    Spool,
}

/// The signature headers of a callback (spec §1.2; checked as `signature.mode` says, required
/// with mode `enforce`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct XAksk {
    /// `UsernameToken Username="…",PasswordDigest="…",Nonce="…",Created="…"`.
    #[param(rename = "X-AKSK")]
    pub x_aksk: Option<String>,
    /// `AKSK realm="SDP",profile="UsernameToken",type="Appkey"`. Any other scheme is kept as
    /// `<scheme> [redacted]`.
    #[param(rename = "Authorization")]
    pub authorization: Option<String>,
}

/// The answers of the callback endpoints.
#[derive(IntoResponses)]
pub enum CallbackAnswers {
    /// Taken: the platform needs nothing more. x-callhook-outcome says what became of it.
    #[response(
        status = 200,
        headers(
            ("x-callhook-outcome" = CallbackOutcome, description = "accepted, partial or unrecognized"),
            ("x-callhook-kept-in" = KeptIn, description = "database or spool"),
            ("x-callhook-callback-id" = Uuid, description = "raw_callbacks.id of the kept request"),
        )
    )]
    Taken(#[to_schema] CallbackAck),
    /// Not a callback that can be read; `field` names the culprit (`records`, the CDRs of a fee
    /// list none of which can be read). The request is kept.
    #[response(status = 400)]
    BadInput(#[to_schema] ErrorBody),
    /// Signature refused (signature.mode = enforce). The request is kept.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// Body over http.body_limit_bytes. The request (its first bytes) is kept.
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// Nothing was kept; retry after Retry-After seconds: `overloaded` (callhook is at capacity)
    /// or `spool_full` (the database is unavailable and the local spool is at its bound).
    #[response(
        status = 503,
        headers(("Retry-After" = u64, description = "Seconds to wait (http.retry_after_secs)"))
    )]
    Unavailable(#[to_schema] ErrorBody),
}
