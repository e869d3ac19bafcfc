//! `GET /v1/refused` and reprocessing: the kept requests that were refused in whole or in part
//! (docs/api.md's glossary), and running them through today's parser again (after a fix) with
//! `ingest::reprocess`.

use axum::{
    Json,
    extract::{Path, State, rejection::PathRejection},
    http::Uri,
};
use uuid::Uuid;

use super::{
    auth::ApiCaller,
    params::{CursorKind, RefusedParams, encode_cursor, finish_page, page_limit, parse_query},
    view::{RawCallbackView, RefusedPage, ReprocessAllView, ReprocessedView},
};
use crate::{
    http::AppState,
    http::error::{ApiError, ErrorBody},
    ingest::{self, NotReprocessable},
    store::read,
};

/// Refused callbacks (outcome rejected, partial, unauthorized or unrecognized), newest first,
/// with their error and what reprocessing them came to. Reprocessing is refused for those whose
/// stored signature verdict the signature mode in force would refuse, for truncated bodies and
/// for requests that were not a POST.
#[utoipa::path(
    get,
    path = "/v1/refused",
    tag = "refused callbacks",
    params(RefusedParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of refused callbacks", body = RefusedPage),
        (status = 400, description = "A parameter or the cursor cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Json<RefusedPage>, ApiError> {
    let params: RefusedParams = parse_query(&uri)?;
    let limit = page_limit(params.limit, &state.config.api)?;
    let after = params.after()?;
    let mut rows = read::refused(
        &state.pool,
        &params.filter(),
        after.as_ref(),
        limit as i64 + 1,
    )
    .await?;
    let next_cursor = finish_page(&mut rows, limit, |raw| {
        let (at, id) = raw.sort_key();
        encode_cursor(CursorKind::Refused, at, &id.to_string())
    });
    let callbacks = rows
        .into_iter()
        .map(|raw| RawCallbackView::new(raw, caller.scope))
        .collect();
    Ok(Json(RefusedPage {
        callbacks,
        next_cursor,
    }))
}

/// Runs one refused (rejected, partial, unauthorized or unrecognized) callback through today's
/// parser and the projector again. What it now
/// yields is stored under the original request and receive time; a second run finds it all
/// stored (`duplicate`). Needs a token with scope `full`.
#[utoipa::path(
    post,
    path = "/v1/refused/{id}/reprocess",
    tag = "refused callbacks",
    params(("id" = Uuid, Path, description = "raw_callbacks.id (X-Callhook-Callback-Id)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What reprocessing came to", body = ReprocessedView),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "The token's scope is not full", body = ErrorBody),
        (status = 404, description = "No kept callback with this id", body = ErrorBody),
        (status = 409, description = "This callback may not be reprocessed; `code` says why: not_refused (it was accepted), body_truncated, wrong_method, or signature_refused (its signature verdict would not pass the signature mode in force)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn reprocess_one(
    State(state): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ReprocessedView>, ApiError> {
    caller.require_full()?;
    let Path(id) = id.map_err(|e| ApiError::invalid_parameter("id", e.body_text()))?;
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::invalid_parameter("id", "id must be a UUID"))?;
    let done = ingest::reprocess(&state.pool, id, state.config.signature.mode)
        .await?
        .map_err(|refusal| match refusal {
            NotReprocessable::Unknown => {
                ApiError::not_found("callback_not_found", refusal.message())
            }
            _ => ApiError::conflict(refusal.code(), refusal.message()),
        })?;
    tracing::info!(callback_id = %id, outcome = done.outcome.as_str(), api_client = %caller.name, "callback reprocessed");
    Ok(Json(done.into()))
}

/// Reprocesses every refused callback that may be reprocessed, oldest first, each in its own
/// transaction. Not bounded by `http.request_timeout_ms`; if the request is cut anyway, what was
/// done stays done and running it again finishes the rest. Needs a token with scope `full`.
#[utoipa::path(
    post,
    path = "/v1/refused/reprocess",
    tag = "refused callbacks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What reprocessing came to, per callback", body = ReprocessAllView),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "The token's scope is not full", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn reprocess_all(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<ReprocessAllView>, ApiError> {
    caller.require_full()?;
    let done = ingest::reprocess_all(&state.pool, state.config.signature.mode).await?;
    let view = ReprocessAllView::new(done);
    tracing::info!(
        total = view.results.len(),
        stored = view.stored,
        rejected = view.rejected,
        api_client = %caller.name,
        "refused callbacks reprocessed"
    );
    Ok(Json(view))
}
