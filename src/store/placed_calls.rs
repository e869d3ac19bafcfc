//! `placed_calls`: what the outbound client asked the platform to do, and how it ended.

use serde_json::Value;
use sqlx::{PgExecutor, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::kpis::Observations;

/// How an operation ended. Stored as `placed_calls.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedOutcome {
    /// The platform accepted it (resultcode "0", or the recording link's 301).
    Accepted,
    /// The platform answered and declined it: another resultcode.
    Declined,
    /// No usable answer, and the request may have reached the platform.
    Failed,
    /// It never reached the platform.
    NotSent,
}

impl PlacedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::NotSent => "not_sent",
        }
    }
}

/// One row of `placed_calls`.
#[derive(Debug, Clone)]
pub struct PlacedCall {
    pub id: Uuid,
    /// click2call, notify, verify, stop or recording.
    pub operation: &'static str,
    pub app_key: String,
    /// The parameters as sent; never secrets or authentication headers.
    pub request: Value,
    pub response: Option<Value>,
    pub http_status: Option<u16>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub session_id: Option<String>,
    pub user_data: Option<String>,
    pub outcome: PlacedOutcome,
    pub error: Option<String>,
    pub attempts: u32,
    pub requested_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
}

/// Records a placed call and, when it created a call, brings that call's `calls` row up to date
/// in the same transaction.
pub async fn record(pool: &sqlx::PgPool, call: &PlacedCall) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    insert(&mut *tx, call).await?;
    let mut observations = Observations::default();
    if let (PlacedOutcome::Accepted, Some(session_id), "click2call" | "notify" | "verify") =
        (call.outcome, &call.session_id, call.operation)
    {
        // Usually the call has just begun; its callbacks can have been quicker, though.
        let refreshed = super::calls::refresh(
            &mut tx,
            std::slice::from_ref(session_id),
            super::calls::Held::default(),
        )
        .await?;
        observations = super::calls::ended(&refreshed);
    }
    tx.commit().await?;
    observations.record();
    Ok(())
}

pub async fn insert(executor: impl PgExecutor<'_>, call: &PlacedCall) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into placed_calls (id, operation, app_key, request, response, http_status,
             result_code, result_desc, session_id, user_data, outcome, error, attempts,
             requested_at, answered_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        call.id,
        call.operation,
        call.app_key,
        Json(&call.request) as _,
        call.response.as_ref().map(Json) as _,
        call.http_status
            .map(|s| i16::try_from(s).unwrap_or(i16::MAX)),
        call.result_code,
        call.result_desc,
        call.session_id,
        call.user_data,
        call.outcome.as_str(),
        call.error,
        i16::try_from(call.attempts).unwrap_or(i16::MAX),
        call.requested_at,
        call.answered_at,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The result codes the platform answered within `within`, oldest first, with when each came
/// (what the client's circuit breaker is restored from).
pub async fn recent_answers(
    pool: &sqlx::PgPool,
    within: std::time::Duration,
) -> Result<Vec<(OffsetDateTime, String)>, StoreError> {
    // requested_at bounds the scan through its index; an answer comes well within the hour
    // after its request (timeouts, retries and backoff included).
    let answers = sqlx::query!(
        r#"select answered_at as "answered_at!", result_code as "result_code!" from placed_calls
         where requested_at > now() - make_interval(secs => $1) - interval '1 hour'
           and answered_at > now() - make_interval(secs => $1)
           and result_code is not null
         order by answered_at"#,
        within.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    Ok(answers
        .into_iter()
        .map(|answer| (answer.answered_at, answer.result_code))
        .collect())
}

/// How many operations `placed_calls` holds, by `(operation, outcome)`.
pub async fn counts(
    executor: impl PgExecutor<'_>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let counts = sqlx::query!(
        r#"select operation, outcome, count(*) as "count!"
           from placed_calls group by operation, outcome"#
    )
    .fetch_all(executor)
    .await?;
    Ok(counts
        .into_iter()
        .map(|row| (row.operation, row.outcome, row.count))
        .collect())
}
