//! The one place errors become HTTP responses.
//!
//! Policy: every refusal is a JSON body `{"error": {"code", "message", "field"?, "records"?}}`
//! whose `code` is stable and whose `field` is a path into the request body. Database text never
//! reaches the client; it is logged once, inside the request span.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    ingest::{NotKept, record_errors},
    platform::{callback::WireError, signature::Verdict},
    store::StoreError,
    telemetry::mask_numbers,
};

/// Every refusal callhook answers, HTTP or callback. Each variant decides its status; `IntoResponse`
/// below is the only place an error becomes a response.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// 400: the body is not a callback we can read.
    BadInput(WireError),
    /// 400: the body could not be read to its end.
    BodyIncomplete,
    /// 400: a query parameter or path segment that cannot be used.
    InvalidParameter { field: String, message: String },
    /// 400: a `cursor` that is no `next_cursor` of this list.
    InvalidCursor,
    /// 400: PostgreSQL cannot store or compare a value we were given (a NUL character, say).
    UnstorableValue,
    /// 401: the callback's X-AKSK signature was refused (enforce mode).
    SignatureRefused(Verdict),
    /// 401 of the read API: no bearer token, or not one of `api.tokens`.
    TokenRefused {
        code: &'static str,
        message: &'static str,
    },
    /// 401 of the read API: the console's session cookie is expired, altered, or of a token no
    /// longer configured.
    SessionRefused,
    /// 403: the token's scope does not allow this.
    Forbidden {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 404.
    NotFound { code: &'static str, message: String },
    /// 405: callbacks are POSTed.
    MethodNotAllowed { method: String },
    /// 409: the request contradicts what is stored.
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than `http.body_limit_bytes`.
    BodyTooLarge { limit: usize },
    /// 503 + Retry-After: nothing was done; the sender should retry.
    Unavailable(Unavailable),
    /// 500: our fault; the cause was logged where it happened.
    Internal { message: &'static str },
}

/// Why a request could not be served now (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Database,
    /// The receipt queue is full, or too many callbacks are in flight.
    Overloaded,
    /// The database is away and the spool is at its bounds.
    SpoolFull,
    /// `api.max_concurrent_exports` exports are running.
    ExportsBusy,
    /// `stream.max_subscribers` streams are open.
    StreamsBusy,
    /// This replica is shutting down.
    ShuttingDown,
}

/// Marks a response whose `Retry-After` `stamp_retry_after` sets from `http.retry_after_secs`,
/// so that no error site needs the configuration.
#[derive(Debug, Clone, Copy)]
struct RetryAfterWanted;

impl ApiError {
    pub fn invalid_parameter(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParameter {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn internal(message: &'static str) -> Self {
        Self::Internal { message }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadInput(_)
            | Self::BodyIncomplete
            | Self::InvalidParameter { .. }
            | Self::InvalidCursor
            | Self::UnstorableValue => StatusCode::BAD_REQUEST,
            Self::SignatureRefused(_) | Self::TokenRefused { .. } | Self::SessionRefused => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable and machine-readable; also the `reason` label of refusals.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadInput(error) => error.code.as_str(),
            Self::BodyIncomplete => "body_incomplete",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::InvalidCursor => "invalid_cursor",
            Self::UnstorableValue => "unstorable_value",
            Self::SignatureRefused(verdict) => signature_refusal(*verdict).0,
            Self::TokenRefused { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::SessionRefused => "session_invalid",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Unavailable(Unavailable::Database) => "database_unavailable",
            Self::Unavailable(Unavailable::Overloaded) => "overloaded",
            Self::Unavailable(Unavailable::SpoolFull) => "spool_full",
            Self::Unavailable(Unavailable::ExportsBusy) => "exports_busy",
            Self::Unavailable(Unavailable::StreamsBusy) => "streams_busy",
            Self::Unavailable(Unavailable::ShuttingDown) => "shutting_down",
            Self::Internal { .. } => "internal_error",
        }
    }

    /// For people; may change.
    pub fn message(&self) -> String {
        match self {
            Self::BadInput(error) => error.message.clone(),
            Self::BodyIncomplete => "the body could not be read to its end".into(),
            Self::InvalidParameter { message, .. }
            | Self::Forbidden { message, .. }
            | Self::NotFound { message, .. }
            | Self::Conflict { message, .. } => message.clone(),
            Self::InvalidCursor => {
                "cursor is not a next_cursor of this list; start again without it".into()
            }
            Self::UnstorableValue => "the request holds a value PostgreSQL cannot store or compare \
                                      (for example a NUL character)"
                .into(),
            Self::SignatureRefused(verdict) => signature_refusal(*verdict).1.into(),
            Self::TokenRefused { message, .. } => (*message).into(),
            Self::SessionRefused => "the console session has expired or is not valid; log in \
                                     again at /console/login"
                .into(),
            Self::MethodNotAllowed { method } => {
                format!("{method} is not allowed here; the platform pushes callbacks with POST")
            }
            Self::BodyTooLarge { limit } => format!("the body is larger than {limit} bytes"),
            Self::Unavailable(Unavailable::Database) => {
                "the database is unavailable; nothing was done, please retry".into()
            }
            Self::Unavailable(Unavailable::Overloaded) => {
                "callhook is at capacity; nothing was stored, please retry".into()
            }
            Self::Unavailable(Unavailable::SpoolFull) => "the database is unavailable and the \
                                                          local spool is full; nothing was stored, please retry"
                .into(),
            Self::Unavailable(Unavailable::ExportsBusy) => {
                "api.max_concurrent_exports exports are running; retry later".into()
            }
            Self::Unavailable(Unavailable::StreamsBusy) => {
                "stream.max_subscribers streams are open; retry later".into()
            }
            Self::Unavailable(Unavailable::ShuttingDown) => "callhook is shutting down; connect \
                                                             again (to another replica) with Last-Event-ID"
                .into(),
            Self::Internal { message } => (*message).into(),
        }
    }

    /// The field, header or parameter at fault.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::BadInput(error) => error.field.as_deref(),
            Self::InvalidParameter { field, .. } => Some(field),
            Self::Forbidden { field, .. } => field.as_deref(),
            Self::InvalidCursor => Some("cursor"),
            Self::SignatureRefused(_) => Some("X-AKSK"),
            Self::TokenRefused { .. } => Some("Authorization"),
            Self::SessionRefused => Some("Cookie"),
            _ => None,
        }
    }

    /// The body, as answered and as kept in `raw_callbacks.error`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.message() });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        if let Self::BadInput(wire) = self
            && !wire.records.is_empty()
        {
            error["records"] = record_errors(&wire.records);
        }
        error
    }
}

fn signature_refusal(verdict: Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Absent => ("signature_missing", "the X-AKSK header is required"),
        Verdict::Malformed => ("signature_malformed", "the X-AKSK header cannot be read"),
        Verdict::UnknownApp => (
            "signature_unknown_app",
            "X-AKSK Username is not a configured app",
        ),
        Verdict::Stale => (
            "signature_stale",
            "X-AKSK Created is outside the allowed clock skew",
        ),
        Verdict::Replayed => ("signature_replayed", "X-AKSK Nonce was already used"),
        Verdict::BadDigest | Verdict::NotChecked | Verdict::Valid => {
            ("signature_invalid", "X-AKSK PasswordDigest does not match")
        }
    }
}

/// A storage failure, logged here and nowhere else. A value PostgreSQL refuses is the input's
/// fault (400); conflicts that outlived their retries and an unreachable database are 503.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Unavailable(_) | StoreError::Conflict(_) => {
                tracing::warn!(error = %mask_numbers(&error.to_string()), "database unavailable");
                Self::Unavailable(Unavailable::Database)
            }
            StoreError::InvalidValue(_) => Self::UnstorableValue,
            StoreError::Other(_) | StoreError::Migrate(_) => {
                tracing::error!(error = %mask_numbers(&error.to_string()), "storage failed");
                Self::internal("storage failed; nothing was changed")
            }
        }
    }
}

/// A callback that could not be kept (nothing of it was written).
impl From<NotKept> for ApiError {
    fn from(not_kept: NotKept) -> Self {
        match not_kept {
            NotKept::Overloaded => Self::Unavailable(Unavailable::Overloaded),
            NotKept::SpoolFull => Self::Unavailable(Unavailable::SpoolFull),
            NotKept::Failed => Self::internal("the callback could not be kept; nothing was stored"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(json!({ "error": self.to_json() }))).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unavailable(_) => {
                response.extensions_mut().insert(RetryAfterWanted);
            }
            Self::TokenRefused { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        response
    }
}

/// Middleware: every 503 that an `ApiError` made gets `Retry-After: seconds`.
pub async fn stamp_retry_after(
    axum::extract::State(seconds): axum::extract::State<u64>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if response
        .extensions_mut()
        .remove::<RetryAfterWanted>()
        .is_some()
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The body of every error answer (`ApiError`), as the OpenAPI document describes it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_json`, `missing_field`, `token_missing`,
    /// `invalid_parameter`, `invalid_cursor`, `database_unavailable`, …
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// The field, header or parameter at fault: a path into the request body (`statusInfo.sessionId`,
    /// `feeLst[3].callEndTime`), a header name, or a query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Fee lists: why each refused CDR was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<RecordErrorDetail>>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RecordErrorDetail {
    /// Position in `feeLst`.
    pub index: usize,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}
