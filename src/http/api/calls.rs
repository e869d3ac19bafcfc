//! `GET /v1/calls`, `GET /v1/calls/{session_id}`, `GET /v1/gaps`.

use axum::{
    Json,
    extract::{Path, State, rejection::PathRejection},
    http::Uri,
};

use super::{
    auth::ApiCaller,
    params::{
        CallsParams, CursorKind, GapsParams, MAX_GAP_AGE_SECS, check_call_filter, decode_cursor,
        encode_cursor, finish_page, page_limit, parse_query,
    },
    view::{CallDetailView, CallPage, GapPage, mask_call, scoped},
};
use crate::{
    http::AppState,
    http::error::{ApiError, ErrorBody},
    store::read::{self, CallFilter, CallRow},
};

/// The call log, newest first.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "call log",
    params(CallsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of calls", body = CallPage),
        (status = 400, description = "A parameter or the cursor cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "A masked token filtered on `number`, or on `user_data` holding a phone number (`filter_not_allowed`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Json<CallPage>, ApiError> {
    let params: CallsParams = parse_query(&uri)?;
    let filter = params.filter();
    check_call_filter(&caller, &filter)?;
    let (calls, next_cursor) = page(
        &state,
        &caller,
        &filter,
        CursorKind::Calls,
        params.cursor.as_deref(),
        params.limit,
    )
    .await?;
    Ok(Json(CallPage { calls, next_cursor }))
}

/// Calls that should have a CDR by now but have none, newest first.
///
/// A call is a gap when it has no CDR and it ended (or, with no end known, callhook last heard
/// of it) more than `older_than` seconds ago. Calls callhook placed that never got any callback
/// are gaps too (their `events` is 0): they are as unbilled as the others, and usually mean the
/// callback URLs are wrong.
#[utoipa::path(
    get,
    path = "/v1/gaps",
    tag = "call log",
    params(GapsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of calls without their CDR", body = GapPage),
        (status = 400, description = "A parameter or the cursor cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn gaps(
    State(state): State<AppState>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Json<GapPage>, ApiError> {
    let params: GapsParams = parse_query(&uri)?;
    let older_than = params
        .older_than
        .unwrap_or(state.config.api.cdr_gap_after_secs);
    if older_than > MAX_GAP_AGE_SECS {
        return Err(ApiError::invalid_parameter(
            "older_than",
            format!("older_than must be at most {MAX_GAP_AGE_SECS} seconds (100 years)"),
        ));
    }
    let filter = CallFilter {
        app_key: params.app_key.clone(),
        cdr_missing_for: Some(std::time::Duration::from_secs(older_than)),
        ..CallFilter::default()
    };
    let (calls, next_cursor) = page(
        &state,
        &caller,
        &filter,
        CursorKind::Gaps,
        params.cursor.as_deref(),
        params.limit,
    )
    .await?;
    Ok(Json(GapPage {
        calls,
        next_cursor,
        older_than,
    }))
}

async fn page(
    state: &AppState,
    caller: &ApiCaller,
    filter: &CallFilter,
    kind: CursorKind,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<(Vec<CallRow>, Option<String>), ApiError> {
    let limit = page_limit(limit, &state.config.api)?;
    let after = cursor.map(|c| decode_cursor(kind, c)).transpose()?;
    let mut calls = read::calls(&state.pool, filter, after.as_ref(), limit as i64 + 1).await?;
    let next_cursor = finish_page(&mut calls, limit, |call| {
        let (at, session_id) = call.sort_key();
        encode_cursor(kind, at, &session_id)
    });
    let calls = calls
        .into_iter()
        .map(|call| scoped(caller.scope, call, mask_call))
        .collect();
    Ok((calls, next_cursor))
}

/// One call with everything stored about it.
#[utoipa::path(
    get,
    path = "/v1/calls/{session_id}",
    tag = "call log",
    params(("session_id" = String, Path, description = "The platform's sessionId (URL-encoded)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call, its events, CDRs, requests and placed call", body = CallDetailView),
        (status = 400, description = "The sessionId cannot be used (not UTF-8 once decoded, or a NUL)", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 404, description = "No call with this sessionId", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    session_id: Result<Path<String>, PathRejection>,
) -> Result<Json<CallDetailView>, ApiError> {
    let Path(session_id) =
        session_id.map_err(|e| ApiError::invalid_parameter("session_id", e.body_text()))?;
    let detail = read::call_detail(&state.pool, &session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("call_not_found", "no call with this sessionId"))?;
    Ok(Json(CallDetailView::new(detail, caller.scope)))
}
