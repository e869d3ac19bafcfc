//! Query parameters, page sizes and cursors of the `/v1` lists.

use axum::http::Uri;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::auth::ApiCaller;
use crate::{
    config::{ApiConfig, KpisConfig},
    http::error::ApiError,
    store::{
        kpis::KpiFilter,
        raw::ReceiptOutcome,
        read::{CallFilter, CdrFilter, RefusedFilter},
    },
    telemetry::{mask_numbers, mask_phone},
};

/// The exact filters of the call log on fields a masked token sees masked (`view::mask_call`),
/// each with that field's masking: refused to such a token (`ApiCaller::may_filter`).
pub fn check_call_filter(caller: &ApiCaller, filter: &CallFilter) -> Result<(), ApiError> {
    caller.may_filter("number", filter.number.as_deref(), mask_phone)?;
    caller.may_filter("user_data", filter.user_data.as_deref(), mask_numbers)
}

/// As `check_call_filter`, for CDRs (`view::mask_cdr`).
pub fn check_cdr_filter(caller: &ApiCaller, filter: &CdrFilter) -> Result<(), ApiError> {
    caller.may_filter("number", filter.number.as_deref(), mask_phone)
}

/// Reads the query string into `T`; a parameter that is unknown or cannot be read is a 400
/// naming it (unknown ones too, so a typo does not silently widen a query).
pub fn parse_query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    let query = uri.query().unwrap_or("");
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        if path == "." {
            // serde reports unknown and missing parameters at the root; name the parameter
            // itself.
            let field = message
                .strip_prefix("unknown field `")
                .or_else(|| message.strip_prefix("missing field `"))
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("query");
            ApiError::invalid_parameter(field, message.clone())
        } else {
            ApiError::invalid_parameter(path, message)
        }
    })
}

/// The page size asked for, or the default; 400 outside 1..=`api.max_limit` (a larger page is
/// refused rather than silently cut, so a client never mistakes a short page for the end).
pub fn page_limit(limit: Option<u32>, config: &ApiConfig) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(config.default_limit);
    if limit == 0 || limit > config.max_limit {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!("limit must be between 1 and {}", config.max_limit),
        ));
    }
    Ok(limit as usize)
}

/// Takes one row more than the page holds, to know whether another page follows without an
/// extra query: cuts the page to `limit` and returns the cursor of its last row if so.
pub fn finish_page<T>(
    rows: &mut Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(cursor)
}

/// Which list a cursor belongs to: a cursor of one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Calls,
    Gaps,
    Cdrs,
    Refused,
}

impl CursorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::Gaps => "gaps",
            Self::Cdrs => "cdrs",
            Self::Refused => "refused",
        }
    }
}

/// A cursor: the last row's sort key and tiebreak, as base64url of a small JSON object. Opaque
/// to clients, who only hand it back.
#[derive(Serialize, Deserialize)]
struct CursorWire {
    #[serde(rename = "l")]
    list: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    #[serde(rename = "k")]
    key: String,
}

pub fn encode_cursor(kind: CursorKind, at: OffsetDateTime, key: &str) -> String {
    let wire = CursorWire {
        list: kind.as_str().to_owned(),
        at,
        key: key.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("a cursor serializes"))
}

/// 400 for a cursor that this list did not hand out.
pub fn invalid_cursor() -> ApiError {
    ApiError::InvalidCursor
}

pub fn decode_cursor(kind: CursorKind, cursor: &str) -> Result<(OffsetDateTime, String), ApiError> {
    let invalid = invalid_cursor;
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let wire: CursorWire = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if wire.list != kind.as_str() {
        return Err(invalid());
    }
    Ok((wire.at, wire.key))
}

/// A call's outcome (`calls.outcome`).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    InProgress,
    Answered,
    NoAnswer,
    Busy,
    Rejected,
    CallerHungUp,
    Failed,
}

impl CallOutcome {
    pub const ALL: [Self; 7] = [
        Self::InProgress,
        Self::Answered,
        Self::NoAnswer,
        Self::Busy,
        Self::Rejected,
        Self::CallerHungUp,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Answered => "answered",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Rejected => "rejected",
            Self::CallerHungUp => "caller_hung_up",
            Self::Failed => "failed",
        }
    }
}

/// A call's scenario (`calls.scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallScenario {
    Click2call,
    Notify,
    Verify,
    Playback,
    Unknown,
}

impl CallScenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Click2call => "click2call",
            Self::Notify => "notify",
            Self::Verify => "verify",
            Self::Playback => "playback",
            Self::Unknown => "unknown",
        }
    }
}

/// The range and filters of `GET /v1/kpis`. Times are RFC 3339 (write a `+` offset as `%2B`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KpisParams {
    /// Calls that started at or after this time (started_at).
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// Calls that started before this time (exclusive); later than `from`, and at most
    /// kpis.max_range_days after it.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// Only the calls of this application.
    pub app_key: Option<String>,
    /// Only the calls of this scenario.
    #[param(inline)]
    pub scenario: Option<CallScenario>,
}

impl KpisParams {
    pub fn filter(&self, config: &KpisConfig) -> KpiFilter {
        KpiFilter {
            from: self.from,
            to: self.to,
            app_key: self.app_key.clone(),
            scenario: self.scenario.map(|s| s.as_str().to_owned()),
            top_hangup_causes: config.top_hangup_causes,
        }
    }
}

/// Filters and paging of `GET /v1/calls` (and, without paging, `GET /v1/calls.csv`). Times are
/// RFC 3339 (`2026-11-24T06:00:00Z`; write a `+` offset as `%2B`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallsParams {
    /// Calls that started at or after this time (started_at; for a call whose start is not
    /// known, when callhook last heard of it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Calls that started before this time (exclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// A number, exactly as stored (global format, e.g. +8613800000001): the caller, the callee
    /// or the display number.
    pub number: Option<String>,
    #[param(inline)]
    pub outcome: Option<CallOutcome>,
    pub app_key: Option<String>,
    /// userData given when the call was placed, exactly.
    pub user_data: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to api.max_limit (default api.default_limit).
    pub limit: Option<u32>,
}

impl CallsParams {
    pub fn filter(&self) -> CallFilter {
        CallFilter {
            from: self.from,
            to: self.to,
            number: self.number.clone(),
            outcome: self.outcome.map(|o| o.as_str().to_owned()),
            app_key: self.app_key.clone(),
            user_data: self.user_data.clone(),
            cdr_missing_for: None,
        }
    }
}

/// The filters of `GET /v1/calls.csv`: those of the list, without paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallsExportParams {
    /// As for `GET /v1/calls`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub number: Option<String>,
    #[param(inline)]
    pub outcome: Option<CallOutcome>,
    pub app_key: Option<String>,
    pub user_data: Option<String>,
}

impl CallsExportParams {
    pub fn filter(&self) -> CallFilter {
        CallFilter {
            from: self.from,
            to: self.to,
            number: self.number.clone(),
            outcome: self.outcome.map(|o| o.as_str().to_owned()),
            app_key: self.app_key.clone(),
            user_data: self.user_data.clone(),
            cdr_missing_for: None,
        }
    }
}

/// Filters of `GET /v1/stream`, and where to resume for clients that cannot send
/// `Last-Event-ID`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    pub app_key: Option<String>,
    /// The call's outcome after the change (a call in progress that is then answered is sent
    /// from the change that answered it on).
    #[param(inline)]
    pub outcome: Option<CallOutcome>,
    /// A number, exactly as stored: the caller, the callee or the display number.
    pub number: Option<String>,
    /// userData given when the call was placed, exactly.
    pub user_data: Option<String>,
    /// The `id` of the last event received: resume after it. For clients that cannot send the
    /// `Last-Event-ID` header, which wins when both are given (an EventSource reconnecting
    /// sends the header with a newer id than its URL's).
    pub last_event_id: Option<String>,
}

impl StreamParams {
    pub fn filter(&self) -> crate::stream::Filter {
        crate::stream::Filter {
            app_key: self.app_key.clone(),
            outcome: self.outcome.map(|o| o.as_str().to_owned()),
            number: self.number.clone(),
            user_data: self.user_data.clone(),
        }
    }

    /// The filters a masked token may not use, as the call log's (`check_call_filter`).
    pub fn as_call_filter(&self) -> CallFilter {
        CallFilter {
            number: self.number.clone(),
            user_data: self.user_data.clone(),
            ..CallFilter::default()
        }
    }
}

/// Filters and paging of `GET /v1/cdrs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CdrsParams {
    /// CDRs whose call ended at or after this time (call_end_time; when unreadable, when the
    /// CDR arrived).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// CDRs whose call ended before this time (exclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// A number exactly as stored: callerNum, calleeNum or fwdDstNum.
    pub number: Option<String>,
    pub app_key: Option<String>,
    pub session_id: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to api.max_limit (default api.default_limit).
    pub limit: Option<u32>,
}

impl CdrsParams {
    pub fn filter(&self) -> CdrFilter {
        CdrFilter {
            from: self.from,
            to: self.to,
            number: self.number.clone(),
            app_key: self.app_key.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

/// The filters of `GET /v1/cdrs.csv`: those of the list, without paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CdrsExportParams {
    /// As for `GET /v1/cdrs`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub number: Option<String>,
    pub app_key: Option<String>,
    pub session_id: Option<String>,
}

impl CdrsExportParams {
    pub fn filter(&self) -> CdrFilter {
        CdrFilter {
            from: self.from,
            to: self.to,
            number: self.number.clone(),
            app_key: self.app_key.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

/// The largest `older_than` of `GET /v1/gaps`: 100 years. PostgreSQL's intervals and
/// timestamps end not far beyond, and a larger age is a typo, not a question.
pub const MAX_GAP_AGE_SECS: u64 = 100 * 365 * 24 * 3600;

/// Paging of `GET /v1/gaps`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GapsParams {
    /// Seconds since the call ended (or, with no end known, was last heard of) after which a
    /// missing CDR counts as a gap (default api.cdr_gap_after_secs: 6 h 10 min), at most 100
    /// years.
    pub older_than: Option<u64>,
    pub app_key: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to api.max_limit (default api.default_limit).
    pub limit: Option<u32>,
}

/// Which refused callbacks to list: the receipt outcomes that are not a full acceptance.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusedOutcome {
    Rejected,
    Partial,
    Unauthorized,
    Unrecognized,
}

impl RefusedOutcome {
    pub const ALL: [Self; 4] = [
        Self::Rejected,
        Self::Partial,
        Self::Unauthorized,
        Self::Unrecognized,
    ];

    pub fn receipt_outcome(self) -> ReceiptOutcome {
        match self {
            Self::Rejected => ReceiptOutcome::Rejected,
            Self::Partial => ReceiptOutcome::Partial,
            Self::Unauthorized => ReceiptOutcome::Unauthorized,
            Self::Unrecognized => ReceiptOutcome::Unrecognized,
        }
    }
}

/// Filters and paging of `GET /v1/refused`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefusedParams {
    /// Only this outcome (default: all four).
    #[param(inline)]
    pub outcome: Option<RefusedOutcome>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to api.max_limit (default api.default_limit).
    pub limit: Option<u32>,
}

impl RefusedParams {
    pub fn filter(&self) -> RefusedFilter {
        RefusedFilter {
            outcome: self
                .outcome
                .map(|o| o.receipt_outcome().as_str().to_owned()),
        }
    }

    /// Where the page starts: after the (received_at, id) its cursor names.
    pub fn after(&self) -> Result<Option<(OffsetDateTime, uuid::Uuid)>, ApiError> {
        let Some(cursor) = self.cursor.as_deref() else {
            return Ok(None);
        };
        let (at, id) = decode_cursor(CursorKind::Refused, cursor)?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| invalid_cursor())?;
        Ok(Some((at, id)))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_cursor_round_trips_and_belongs_to_its_list() {
        let at = datetime!(2026-11-24 06:00:00.123456 UTC);
        let cursor = encode_cursor(CursorKind::Calls, at, "s@h");
        assert_eq!(
            decode_cursor(CursorKind::Calls, &cursor).unwrap(),
            (at, "s@h".to_owned())
        );
        assert!(decode_cursor(CursorKind::Cdrs, &cursor).is_err());
        assert!(decode_cursor(CursorKind::Calls, "not a cursor").is_err());
        assert!(decode_cursor(CursorKind::Calls, "e30").is_err()); // "{}"
    }

    #[test]
    fn unknown_and_unreadable_parameters_are_named() {
        let error = parse_query::<CallsParams>(&"/v1/calls?limt=5".parse().unwrap()).unwrap_err();
        assert_eq!(error.field(), Some("limt"));
        let error =
            parse_query::<CallsParams>(&"/v1/calls?from=yesterday".parse().unwrap()).unwrap_err();
        assert_eq!(error.field(), Some("from"));
        let error =
            parse_query::<CallsParams>(&"/v1/calls?outcome=won".parse().unwrap()).unwrap_err();
        assert_eq!(error.field(), Some("outcome"));
        let ok: CallsParams = parse_query(
            &"/v1/calls?from=2026-11-24T06:00:00%2B08:00&limit=5"
                .parse()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.from, Some(datetime!(2026-11-23 22:00:00 UTC)));
        assert_eq!(ok.limit, Some(5));
        let error = parse_query::<KpisParams>(&"/v1/kpis?to=2026-11-24T06:00:00Z".parse().unwrap())
            .unwrap_err();
        assert_eq!(error.field(), Some("from"));
    }

    #[test]
    fn the_scenario_parameter_takes_every_scenario_of_the_call_log() {
        let parsed: Vec<&str> = crate::calls::SCENARIOS
            .iter()
            .map(|name| {
                let uri = format!(
                    "/v1/kpis?from=2026-11-24T06:00:00Z&to=2026-11-24T07:00:00Z&scenario={name}"
                );
                parse_query::<KpisParams>(&uri.parse().unwrap())
                    .unwrap()
                    .scenario
                    .unwrap()
                    .as_str()
            })
            .collect();
        assert_eq!(parsed, crate::calls::SCENARIOS);
    }
}
