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

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Per-record errors of a fee list.
    pub records: Option<Value>,
    /// Seconds for Retry-After (503 only).
    pub retry_after: Option<u64>,
    /// Whether to send `WWW-Authenticate: Bearer` (401 of the read API only; callbacks are
    /// signed with X-AKSK instead).
    pub bearer_challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            records: None,
            retry_after: None,
            bearer_challenge: false,
        }
    }

    /// 401 of the read API: no token, or not one of `api.tokens`.
    pub fn bearer_refused(code: &'static str, message: &'static str) -> Self {
        Self {
            bearer_challenge: true,
            field: Some("Authorization".into()),
            ..Self::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }

    /// 400 naming the query parameter (or path segment) that cannot be used.
    pub fn invalid_parameter(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 400: the body is not a callback we can read.
    pub fn bad_input(error: &WireError) -> Self {
        Self {
            field: error.field.clone(),
            records: (!error.records.is_empty()).then(|| record_errors(&error.records)),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                error.code.as_str(),
                error.message.clone(),
            )
        }
    }

    /// 401: the signature was refused (enforce mode).
    pub fn unauthorized(verdict: Verdict) -> Self {
        let (code, message) = match verdict {
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
        };
        Self {
            field: Some("X-AKSK".into()),
            ..Self::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn body_incomplete() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "body_incomplete",
            "the body could not be read to its end",
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here; the platform pushes callbacks with POST"),
        )
    }

    /// 503 with Retry-After: the database cannot take the request now; the sender should retry.
    pub fn unavailable(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; nothing was stored, please retry",
            )
        }
    }

    /// Maps a storage failure (logged here, once). `Refused` is the input's fault and is
    /// answered 400.
    pub fn from_store(error: &StoreError, retry_after_secs: u64) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::Conflict(_) => {
                tracing::warn!(error = %mask_numbers(&error.to_string()), "database unavailable");
                Self::unavailable(retry_after_secs)
            }
            StoreError::Refused(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "unstorable_value",
                "the request holds a value PostgreSQL cannot store (for example a NUL character)",
            ),
            StoreError::Other(_) | StoreError::Migrate(_) => {
                tracing::error!(error = %mask_numbers(&error.to_string()), "storage failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "storage failed; nothing was stored",
                )
            }
        }
    }

    /// Maps a callback that could not be kept (nothing of it was written).
    pub fn from_not_kept(not_kept: NotKept, retry_after_secs: u64) -> Self {
        match not_kept {
            NotKept::Overloaded => Self::overloaded(retry_after_secs),
            NotKept::SpoolFull => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "spool_full",
                    "the database is unavailable and the local spool is full; nothing was stored, please retry",
                )
            },
            NotKept::Failed => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the callback could not be kept; nothing was stored",
            ),
        }
    }

    pub fn overloaded(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "callhook is at capacity; nothing was stored, please retry",
            )
        }
    }

    /// Maps a failure of the read API (`/v1`): 503 + Retry-After when the database is
    /// unavailable, 400 when it refused a value we were given, else a 500 whose cause is logged,
    /// not answered.
    pub fn from_read(error: &StoreError, retry_after_secs: u64) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %mask_numbers(&error.to_string()), "database unavailable");
                Self {
                    message: "the database is unavailable; please retry".into(),
                    ..Self::unavailable(retry_after_secs)
                }
            }
            StoreError::Refused(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "a parameter holds a value PostgreSQL cannot take (for example a NUL character)",
            ),
            _ => {
                tracing::error!(error = %mask_numbers(&error.to_string()), "query failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the query failed",
                )
            }
        }
    }

    /// The body, as answered and as kept in `raw_callbacks.error`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        if let Some(records) = &self.records {
            error["records"] = records.clone();
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.to_json() }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.bearer_challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
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
