//! `GET /v1/cdrs`.

use axum::{Json, extract::State, http::Uri};

use super::{
    auth::ApiCaller,
    params::{
        CdrsParams, CursorKind, check_cdr_filter, decode_cursor, encode_cursor, finish_page,
        invalid_cursor, page_limit, parse_query,
    },
    view::{CdrPage, mask_cdr, scoped},
};
use crate::{
    http::AppState,
    http::error::{ApiError, ErrorBody},
    store::read,
};

/// CDRs, newest call end first.
#[utoipa::path(
    get,
    path = "/v1/cdrs",
    tag = "CDRs",
    params(CdrsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of CDRs", body = CdrPage),
        (status = 400, description = "A parameter or the cursor cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "A masked token filtered on `number` (`filter_not_allowed`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Json<CdrPage>, ApiError> {
    let params: CdrsParams = parse_query(&uri)?;
    let filter = params.filter();
    check_cdr_filter(&caller, &filter)?;
    let limit = page_limit(params.limit, &state.config.api)?;
    let after = match params.cursor.as_deref() {
        Some(cursor) => {
            let (at, id) = decode_cursor(CursorKind::Cdrs, cursor)?;
            let id = id.parse::<i64>().map_err(|_| invalid_cursor())?;
            Some((at, id))
        }
        None => None,
    };
    let mut cdrs = read::cdrs(&state.pool, &filter, after.as_ref(), limit as i64 + 1).await?;
    let next_cursor = finish_page(&mut cdrs, limit, |cdr| {
        let (at, id) = cdr.sort_key();
        encode_cursor(CursorKind::Cdrs, at, &id.to_string())
    });
    let cdrs = cdrs
        .into_iter()
        .map(|cdr| scoped(caller.scope, cdr, mask_cdr))
        .collect();
    Ok(Json(CdrPage { cdrs, next_cursor }))
}
