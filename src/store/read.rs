//! The read side of the tables, for the `/v1` API and its CSV exports: filtered, keyset-paginated
//! lists of calls, CDRs and refused callbacks, and everything stored about one call.
//!
//! Lists are ordered newest first on a sort key and a tiebreaker, and a page continues strictly
//! after the last row of the previous one (`(key, tiebreak) < (last key, last tiebreak)`), so a
//! page is one index range scan however deep it is, and rows arriving meanwhile never shift it.
//!
//! | list | sort key (never null) | tiebreak | index |
//! |---|---|---|---|
//! | calls | `coalesce(started_at, last_callback_at)` | `session_id` | `calls_sort_idx` (gaps: `calls_missing_cdr_sort_idx`) |
//! | cdrs | `coalesce(call_end_time, received_at)` | `id` | `cdrs_sort_idx` |
//! | refused callbacks | `received_at` | `id` | `raw_callbacks_refused_idx` (the few refused ones) |
//!
//! (`calls_*` and `cdrs_sort_idx`: migration 20261124000004.)
//!
//! A call has no `started_at` only while nothing that says when it started has been read (all
//! its times unreadable); it then sorts, and is filtered by `from`/`to`, as of when callhook last
//! heard of it, rather than disappearing from every time-bounded query.
//!
//! The SQL is assembled from fixed fragments with every value bound (`QueryBuilder`): one text
//! per combination of filters, so PostgreSQL plans each for the filters it really has, which a
//! single `($1 is null or …)` statement would defeat once its plan goes generic.

use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
pub use super::{calls::CallRow, cdrs::CdrRow, events::EventRow, raw::RawRow};

/// The sort key of `calls` (see the module docs).
pub const CALL_SORT_KEY: &str = "coalesce(started_at, last_callback_at)";
/// The sort key of `cdrs`.
pub const CDR_SORT_KEY: &str = "coalesce(call_end_time, received_at)";
/// The outcomes of refused callbacks, as in the partial index.
const REFUSED: &str = "outcome in ('rejected', 'unauthorized', 'partial', 'unrecognized')";

/// A `placed_calls` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PlacedRow {
    pub id: Uuid,
    pub operation: String,
    pub app_key: String,
    pub request: Value,
    pub response: Option<Value>,
    pub http_status: Option<i16>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub session_id: Option<String>,
    pub user_data: Option<String>,
    pub outcome: String,
    pub error: Option<String>,
    pub attempts: i16,
    pub requested_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
}

/// Everything stored about one call.
#[derive(Debug, Clone)]
pub struct CallDetail {
    pub call: CallRow,
    /// In platform order: event time (unknown last), then arrival.
    pub events: Vec<EventRow>,
    pub cdrs: Vec<CdrRow>,
    /// The requests that brought one of the call's stored events or CDRs, in arrival order.
    pub raw_callbacks: Vec<RawRow>,
    pub placed_call: Option<PlacedRow>,
}

/// Filters of the calls list; every one is optional, all must hold.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Sort key (≈ `started_at`) at or after.
    pub from: Option<OffsetDateTime>,
    /// Sort key strictly before.
    pub to: Option<OffsetDateTime>,
    /// Equals caller, callee or display_number.
    pub number: Option<String>,
    pub outcome: Option<String>,
    pub app_key: Option<String>,
    pub user_data: Option<String>,
    /// Only calls without a CDR that ended (or, when no end is known, were last heard of)
    /// longer ago than this: the CDR gaps.
    pub cdr_missing_for: Option<std::time::Duration>,
}

/// Filters of the CDR list.
#[derive(Debug, Clone, Default)]
pub struct CdrFilter {
    /// Sort key (≈ `call_end_time`) at or after.
    pub from: Option<OffsetDateTime>,
    /// Sort key strictly before.
    pub to: Option<OffsetDateTime>,
    /// Equals caller_num, callee_num or fwd_dst_num.
    pub number: Option<String>,
    pub app_key: Option<String>,
    pub session_id: Option<String>,
}

/// Filters of the refused-callbacks list.
#[derive(Debug, Clone, Default)]
pub struct RefusedFilter {
    /// rejected, partial, unauthorized or unrecognized; all of them when absent.
    pub outcome: Option<String>,
}

/// The calls query; `after` continues a list, `limit` caps it (none: the whole list, for exports).
pub fn calls_query(
    filter: &CallFilter,
    after: Option<&(OffsetDateTime, String)>,
    limit: Option<i64>,
) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new("select * from calls where true");
    if let Some(from) = filter.from {
        q.push(format_args!(" and {CALL_SORT_KEY} >= "))
            .push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(format_args!(" and {CALL_SORT_KEY} < "))
            .push_bind(to);
    }
    if let Some(number) = &filter.number {
        q.push(" and (caller = ")
            .push_bind(number.clone())
            .push(" or callee = ")
            .push_bind(number.clone())
            .push(" or display_number = ")
            .push_bind(number.clone())
            .push(")");
    }
    for (column, value) in [
        ("outcome", &filter.outcome),
        ("app_key", &filter.app_key),
        ("user_data", &filter.user_data),
    ] {
        if let Some(value) = value {
            q.push(format_args!(" and {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(age) = filter.cdr_missing_for {
        q.push(" and not has_cdr and coalesce(ended_at, last_callback_at) < now() - make_interval(secs => ")
            .push_bind(age.as_secs_f64())
            .push(")");
    }
    if let Some((at, session_id)) = after {
        q.push(format_args!(" and ({CALL_SORT_KEY}, session_id) < ("))
            .push_bind(*at)
            .push(", ")
            .push_bind(session_id.clone())
            .push(")");
    }
    q.push(format_args!(
        " order by {CALL_SORT_KEY} desc, session_id desc"
    ));
    if let Some(limit) = limit {
        q.push(" limit ").push_bind(limit);
    }
    q
}

/// The CDRs query, like `calls_query`.
pub fn cdrs_query(
    filter: &CdrFilter,
    after: Option<&(OffsetDateTime, i64)>,
    limit: Option<i64>,
) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new("select * from cdrs where true");
    if let Some(from) = filter.from {
        q.push(format_args!(" and {CDR_SORT_KEY} >= "))
            .push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(format_args!(" and {CDR_SORT_KEY} < ")).push_bind(to);
    }
    if let Some(number) = &filter.number {
        q.push(" and (caller_num = ")
            .push_bind(number.clone())
            .push(" or callee_num = ")
            .push_bind(number.clone())
            .push(" or fwd_dst_num = ")
            .push_bind(number.clone())
            .push(")");
    }
    for (column, value) in [
        ("app_key", &filter.app_key),
        ("session_id", &filter.session_id),
    ] {
        if let Some(value) = value {
            q.push(format_args!(" and {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some((at, id)) = after {
        q.push(format_args!(" and ({CDR_SORT_KEY}, id) < ("))
            .push_bind(*at)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    q.push(format_args!(" order by {CDR_SORT_KEY} desc, id desc"));
    if let Some(limit) = limit {
        q.push(" limit ").push_bind(limit);
    }
    q
}

/// One page of calls.
pub async fn calls(
    pool: &PgPool,
    filter: &CallFilter,
    after: Option<&(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<CallRow>, StoreError> {
    let mut query = calls_query(filter, after, Some(limit));
    Ok(query.build_query_as().fetch_all(pool).await?)
}

/// One page of CDRs.
pub async fn cdrs(
    pool: &PgPool,
    filter: &CdrFilter,
    after: Option<&(OffsetDateTime, i64)>,
    limit: i64,
) -> Result<Vec<CdrRow>, StoreError> {
    let mut query = cdrs_query(filter, after, Some(limit));
    Ok(query.build_query_as().fetch_all(pool).await?)
}

/// One page of refused callbacks (outcome rejected, partial, unauthorized or unrecognized),
/// newest first.
pub async fn refused(
    pool: &PgPool,
    filter: &RefusedFilter,
    after: Option<&(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<RawRow>, StoreError> {
    let mut q = QueryBuilder::new(format!("select * from raw_callbacks where {REFUSED}"));
    if let Some(outcome) = &filter.outcome {
        q.push(" and outcome = ").push_bind(outcome.clone());
    }
    if let Some((at, id)) = after {
        q.push(" and (received_at, id) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    q.push(" order by received_at desc, id desc limit ")
        .push_bind(limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// Everything stored about one call, or `None` when there is no such call.
pub async fn call_detail(
    pool: &PgPool,
    session_id: &str,
) -> Result<Option<CallDetail>, StoreError> {
    let Some(call) = sqlx::query_as::<_, CallRow>("select * from calls where session_id = $1")
        .bind(session_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let events = sqlx::query_as(
        "select * from call_events where session_id = $1 order by event_at nulls last, id",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await?;
    let cdrs = sqlx::query_as("select * from cdrs where session_id = $1 order by id")
        .bind(session_id)
        .fetch_all(pool)
        .await?;
    // raw_callbacks has no session column: a request belongs to the call when it brought one of
    // the call's stored rows. Redeliveries (duplicates) and refused requests are not linked.
    let raw_callbacks = sqlx::query_as(
        "select * from raw_callbacks where id in (
             select raw_callback_id from call_events where session_id = $1
             union select raw_callback_id from cdrs where session_id = $1)
         order by received_at, id",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await?;
    let placed_call = match call.placed_call_id {
        Some(id) => {
            sqlx::query_as("select * from placed_calls where id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        }
        None => None,
    };
    Ok(Some(CallDetail {
        call,
        events,
        cdrs,
        raw_callbacks,
        placed_call,
    }))
}
