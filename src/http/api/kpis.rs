//! `GET /v1/kpis`: the voice KPIs of a time range (`store::kpis`).

use axum::{Json, extract::State, http::Uri};

use super::{
    auth::ApiCaller,
    params::{KpisParams, parse_query},
};
use crate::{
    http::AppState,
    http::error::{ApiError, ErrorBody},
    store::kpis::{self, Kpis},
};

/// The voice KPIs of the calls that started in `[from, to)`: ASR, NER, ACD and PDD, overall
/// and by hour, the share of each outcome, the most frequent hang-up causes, and the
/// distributions of ring time, talk time and callback delay.
///
/// Every ratio and mean is over the calls that have ended; calls still in progress are
/// counted apart (`in_progress`). A ratio or mean with nothing to divide by is null.
/// Definitions and sources: docs/kpis.md.
#[utoipa::path(
    get,
    path = "/v1/kpis",
    tag = "KPIs",
    params(KpisParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The KPIs of the range", body = Kpis),
        (status = 400, description = "A parameter is missing or cannot be used: from/to not RFC 3339, to not after from, a range over kpis.max_range_days, an unknown scenario (`invalid_parameter`, `field` names it)", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: ApiCaller,
    uri: Uri,
) -> Result<Json<Kpis>, ApiError> {
    let params: KpisParams = parse_query(&uri)?;
    let filter = params.filter(&state.config.kpis);
    filter
        .check(state.config.kpis.max_range_days)
        .map_err(|invalid| ApiError::invalid_parameter(invalid.field, invalid.message))?;
    let kpis = kpis::compute(&state.pool, &filter).await?;
    Ok(Json(kpis))
}
