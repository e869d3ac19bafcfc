//! What can go wrong placing a call, sorted by what the caller should do about it.

use std::fmt;

use time::OffsetDateTime;

use crate::platform::{
    result_codes::{self, ResultCode},
    time::format_created,
};

/// A parameter the platform would refuse, found before sending. `field` is the wire name
/// (`calleeNbr`, `playInfoList[1].collectInd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Errors of [`super::PlatformClient`]. None of them carries a secret or an authentication header.
///
/// Whether a call may have been placed: never for `Validation`, `CircuitOpen`, `UnknownApp`,
/// `NoDefaultApp`, `Connect` and `ConnectTimeout` (nothing reached the platform); not for
/// `Platform` (it declined); **maybe** for `Timeout`, `Interrupted` and `HttpStatus`: the request
/// may have reached the platform, so they are never retried automatically. Look for its callbacks
/// before trying again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid before sending: nothing reached the platform.
    #[error("invalid parameter {0}")]
    Validation(ValidationError),
    /// The platform answered with a resultcode other than "0" (spec §2.7).
    #[error("declined by the platform: {code} {meaning}{}", described(.resultdesc))]
    Platform {
        http_status: u16,
        /// The `resultcode` as sent.
        code: String,
        /// Its documented text and meaning, or "undocumented code".
        meaning: String,
        /// The platform's `resultdesc` (for 1010002 it names the bad parameter).
        resultdesc: Option<String>,
    },
    /// An HTTP answer without a readable result: an error page, or JSON without `resultcode`.
    #[error("the platform answered HTTP {status} without a result code: {body_excerpt:?}")]
    HttpStatus { status: u16, body_excerpt: String },
    /// No connection within `platform.connect_timeout_ms`, after every attempt.
    #[error("could not connect to the platform within the connect timeout ({attempts} attempts)")]
    ConnectTimeout { attempts: u32 },
    /// No complete answer within `platform.timeout_ms`. The request may have reached the platform.
    #[error(
        "no answer from the platform within the timeout; the request may have reached it, so it was not retried"
    )]
    Timeout,
    /// No connection could be made (refused, DNS), after every attempt: nothing reached the platform.
    #[error("could not connect to the platform ({attempts} attempts): {detail}")]
    Connect { attempts: u32, detail: String },
    /// The exchange broke off after the request may have been sent (e.g. connection reset).
    #[error(
        "the connection to the platform broke off after sending; the request may have reached it, so it was not retried: {0}"
    )]
    Interrupted(String),
    /// The circuit breaker is open after authentication failures or an IP blacklist answer; no
    /// request is made until `until`.
    #[error(
        "not calling the platform until {} (circuit breaker open after authentication failures or an IP blacklist answer)",
        format_created(*.until)
    )]
    CircuitOpen { until: OffsetDateTime },
    /// The app key is not among the configured `[[apps]]`.
    #[error("app {0:?} is not configured in [[apps]]")]
    UnknownApp(String),
    /// No app was named and none is the default (`platform.default_app`).
    #[error("{0}")]
    NoDefaultApp(String),
    /// The client could not be set up from the configuration.
    #[error("platform client configuration: {0}")]
    Config(String),
}

fn described(resultdesc: &Option<String>) -> String {
    resultdesc
        .as_deref()
        .filter(|desc| !desc.is_empty())
        .map(|desc| format!(" - the platform says: {desc:?}"))
        .unwrap_or_default()
}

impl Error {
    pub(crate) fn platform(http_status: u16, code: &str, resultdesc: Option<String>) -> Self {
        Self::Platform {
            http_status,
            code: code.to_owned(),
            meaning: result_codes::describe(code),
            resultdesc,
        }
    }

    /// The documented entry of a platform result code.
    pub fn result_code(&self) -> Option<&'static ResultCode> {
        match self {
            Self::Platform { code, .. } => result_codes::lookup(code),
            _ => None,
        }
    }

    /// Whether the platform may have acted on the request although no acceptance came back
    /// (see the type's documentation): check the session's callbacks before trying again.
    pub fn may_have_placed_call(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Interrupted(_) | Self::HttpStatus { .. }
        )
    }
}

impl From<ValidationError> for Error {
    fn from(error: ValidationError) -> Self {
        Self::Validation(error)
    }
}
