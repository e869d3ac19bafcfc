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

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::StoreError;

/// The sort key of `calls` (see the module docs).
pub const CALL_SORT_KEY: &str = "coalesce(started_at, last_callback_at)";
/// The sort key of `cdrs`.
pub const CDR_SORT_KEY: &str = "coalesce(call_end_time, received_at)";
/// The outcomes of refused callbacks, as in the partial index.
const REFUSED: &str = "outcome in ('rejected', 'unauthorized', 'partial', 'unrecognized')";

/// A `calls` row (column meanings: `\d+ calls`). Phone numbers are as stored; the HTTP layer
/// masks them for tokens without the `full` scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
#[schema(as = Call)]
pub struct CallRow {
    pub session_id: String,
    /// click2call, notify, verify, playback or unknown.
    pub scenario: String,
    pub app_key: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub display_number: Option<String>,
    pub user_data: Option<String>,
    pub placed_call_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub a_callout_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub a_alerting_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub a_answer_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub a_disconnect_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub b_callout_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub b_alerting_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub b_answer_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub b_disconnect_at: Option<OffsetDateTime>,
    pub digits: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub ring_seconds: Option<i32>,
    pub talk_seconds: Option<i32>,
    /// in_progress, answered, no_answer, busy, rejected, caller_hung_up or failed.
    pub outcome: String,
    pub state_code: Option<i32>,
    pub state_meaning: Option<String>,
    pub party_type: Option<String>,
    pub q850_cause: Option<i32>,
    pub q850_meaning: Option<String>,
    pub ul_fail_reason: Option<i32>,
    pub ul_fail_meaning: Option<String>,
    pub sip_status_code: Option<i32>,
    pub record_flag: Option<i32>,
    pub record_object_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub has_cdr: bool,
    pub events: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub last_callback_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl CallRow {
    /// The columns, in the order of the struct (and of the CSV export).
    pub const COLUMNS: &[&str] = &[
        "session_id",
        "scenario",
        "app_key",
        "caller",
        "callee",
        "display_number",
        "user_data",
        "placed_call_id",
        "a_callout_at",
        "a_alerting_at",
        "a_answer_at",
        "a_disconnect_at",
        "b_callout_at",
        "b_alerting_at",
        "b_answer_at",
        "b_disconnect_at",
        "digits",
        "started_at",
        "ended_at",
        "ring_seconds",
        "talk_seconds",
        "outcome",
        "state_code",
        "state_meaning",
        "party_type",
        "q850_cause",
        "q850_meaning",
        "ul_fail_reason",
        "ul_fail_meaning",
        "sip_status_code",
        "record_flag",
        "record_object_name",
        "record_domain",
        "record_file_download_url",
        "has_cdr",
        "events",
        "last_callback_at",
        "updated_at",
    ];

    /// This row's position in the list order.
    pub fn sort_key(&self) -> (OffsetDateTime, String) {
        (
            self.started_at.unwrap_or(self.last_callback_at),
            self.session_id.clone(),
        )
    }
}

/// A `cdrs` row (column meanings: `\d+ cdrs`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[schema(as = Cdr)]
pub struct CdrRow {
    pub id: i64,
    pub raw_callback_id: Uuid,
    pub session_id: String,
    pub dedup_key: String,
    pub direction: Option<i32>,
    pub sp_id: Option<String>,
    pub app_key: Option<String>,
    pub icid: Option<String>,
    pub bind_num: Option<String>,
    pub caller_num: Option<String>,
    pub callee_num: Option<String>,
    pub fwd_display_num: Option<String>,
    pub fwd_dst_num: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fwd_start_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fwd_alerting_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fwd_answer_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub call_end_time: Option<OffsetDateTime>,
    pub fwd_unasw_rsn: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fail_time: Option<OffsetDateTime>,
    pub ul_fail_reason: Option<i32>,
    pub sip_status_code: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub call_out_start_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub call_out_alerting_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub call_out_answer_time: Option<OffsetDateTime>,
    pub call_out_unasw_rsn: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dyn_ivr_start_time: Option<OffsetDateTime>,
    pub dyn_ivr_path: Option<String>,
    pub record_flag: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub record_start_time: Option<OffsetDateTime>,
    pub record_object_name: Option<String>,
    pub record_bucket_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub tts_play_times: Option<i32>,
    pub tts_trans_duration: Option<i32>,
    pub service_type: Option<String>,
    pub host_name: Option<String>,
    pub user_data: Option<String>,
    /// Time fields that were present but unreadable, `{"<wire name>": "<raw>"}`.
    pub unparsed_times: Option<Value>,
    /// FeeInfo fields the spec does not list, as received.
    pub extra: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

impl CdrRow {
    /// The columns, in the order of the struct (and of the CSV export).
    pub const COLUMNS: &[&str] = &[
        "id",
        "raw_callback_id",
        "session_id",
        "dedup_key",
        "direction",
        "sp_id",
        "app_key",
        "icid",
        "bind_num",
        "caller_num",
        "callee_num",
        "fwd_display_num",
        "fwd_dst_num",
        "fwd_start_time",
        "fwd_alerting_time",
        "fwd_answer_time",
        "call_end_time",
        "fwd_unasw_rsn",
        "fail_time",
        "ul_fail_reason",
        "sip_status_code",
        "call_out_start_time",
        "call_out_alerting_time",
        "call_out_answer_time",
        "call_out_unasw_rsn",
        "dyn_ivr_start_time",
        "dyn_ivr_path",
        "record_flag",
        "record_start_time",
        "record_object_name",
        "record_bucket_name",
        "record_domain",
        "record_file_download_url",
        "tts_play_times",
        "tts_trans_duration",
        "service_type",
        "host_name",
        "user_data",
        "unparsed_times",
        "extra",
        "received_at",
    ];

    pub fn sort_key(&self) -> (OffsetDateTime, i64) {
        (self.call_end_time.unwrap_or(self.received_at), self.id)
    }
}

/// A `call_events` row, without the fingerprint (an internal dedup key).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[schema(as = CallEvent)]
pub struct EventRow {
    pub id: i64,
    pub raw_callback_id: Uuid,
    /// callout, alerting, answer, collectInfo or disconnect.
    pub event_type: String,
    pub session_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub event_at: Option<OffsetDateTime>,
    pub caller: Option<String>,
    pub called: Option<String>,
    pub user_data: Option<String>,
    pub party_type: Option<String>,
    pub state_code: Option<i32>,
    pub state_desc: Option<String>,
    pub digit_info: Option<String>,
    pub display_caller_num: Option<String>,
    pub unparsed_times: Option<Value>,
    pub extra: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// A `raw_callbacks` row as stored, body bytes included.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RawRow {
    pub id: Uuid,
    pub received_at: OffsetDateTime,
    pub endpoint: String,
    pub method: String,
    pub path: String,
    pub peer_addr: Option<String>,
    pub headers: Value,
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub event_type: Option<String>,
    pub app_key: Option<String>,
    pub signature_verdict: String,
    pub outcome: String,
    pub http_status: i16,
    pub error: Option<Value>,
    pub records_total: Option<i32>,
    pub records_stored: Option<i32>,
    pub records_duplicate: Option<i32>,
    pub records_rejected: Option<i32>,
    pub request_id: Option<String>,
    pub reprocessed_at: Option<OffsetDateTime>,
    pub reprocess_outcome: Option<String>,
    pub reprocess_error: Option<Value>,
}

impl RawRow {
    pub fn sort_key(&self) -> (OffsetDateTime, Uuid) {
        (self.received_at, self.id)
    }
}

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
