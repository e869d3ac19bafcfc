//! Turning a received callback into rows: one transaction per request, holding the nonce, the
//! typed rows and the raw row, so an acknowledged callback is wholly stored and a failed one not
//! at all.

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    platform::{
        callback::{Callback, FeeBatch, RecordError, WireError, parse_callback},
        signature::{UsernameToken, Verdict},
    },
    store::{
        StoreError, calls, cdrs, events, nonces,
        raw::{self, Disposition, Outcome, RawCallback, RecordCounts},
    },
};

/// What ingesting a callback came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Committed with this outcome.
    Committed {
        outcome: Outcome,
        records: Option<RecordCounts>,
    },
    /// The nonce had been used before and replays are refused: nothing was written.
    Replayed,
}

/// Stores a parsed callback. `nonce` is the token of a valid signature, whose nonce must not
/// have been seen; with `refuse_replays` a seen nonce stops everything, otherwise it only marks
/// the verdict.
pub async fn ingest(
    pool: &PgPool,
    raw: &mut RawCallback,
    callback: &Callback,
    nonce: Option<&UsernameToken>,
    refuse_replays: bool,
) -> Result<Ingested, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some(token) = nonce {
        let first_use =
            nonces::remember(&mut tx, &token.username, &token.nonce, raw.received_at).await?;
        if !first_use {
            raw.signature_verdict = Verdict::Replayed;
            if refuse_replays {
                tx.rollback().await?;
                return Ok(Ingested::Replayed);
            }
        }
    }

    let (outcome, disposition) = store_typed(&mut tx, raw.id, raw.received_at, callback).await?;
    raw::insert(&mut tx, raw, outcome, &disposition).await?;
    tx.commit().await?;
    Ok(Ingested::Committed {
        outcome,
        records: disposition.records,
    })
}

/// Writes the typed rows of a callback and brings the affected calls up to date, inside the
/// caller's transaction.
async fn store_typed(
    tx: &mut PgConnection,
    raw_callback_id: Uuid,
    received_at: OffsetDateTime,
    callback: &Callback,
) -> Result<(Outcome, Disposition), StoreError> {
    match callback {
        Callback::Status(event) => {
            let inserted = events::insert(&mut *tx, raw_callback_id, received_at, event).await?;
            if inserted {
                calls::refresh(tx, std::slice::from_ref(&event.session_id)).await?;
            }
            let outcome = if inserted {
                Outcome::Stored
            } else {
                Outcome::Duplicate
            };
            Ok((
                outcome,
                Disposition {
                    http_status: 200,
                    ..Disposition::default()
                },
            ))
        }
        Callback::Fee(batch) => {
            let stored =
                cdrs::insert(&mut *tx, raw_callback_id, received_at, &batch.records).await?;
            calls::refresh(tx, &stored).await?;
            Ok(fee_disposition(batch, stored.len() as u64))
        }
    }
}

/// What running a kept callback through the parser again came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Reprocessed {
    pub id: Uuid,
    /// Stored, Duplicate, Partial, or Rejected when today's parser still refuses it.
    pub outcome: Outcome,
    /// The error, when it is still (partly) refused.
    pub error: Option<Value>,
}

/// Runs one kept callback whose outcome was `rejected` or `partial` through the current parser
/// (after a fix), storing what it now yields under the original request and receive time.
/// Idempotent: what was stored before is a duplicate the second time. `None` when there is no
/// such callback (or it was not refused: signature refusals cannot be re-verified).
pub async fn reprocess(pool: &PgPool, id: Uuid) -> Result<Option<Reprocessed>, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(Vec<u8>, OffsetDateTime)> = sqlx::query_as(
        "select body, received_at from raw_callbacks
         where id = $1 and outcome in ('rejected', 'partial') and not body_truncated for update",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((body, received_at)) = row else {
        return Ok(None);
    };
    let typed = match parse_callback(&body).result {
        Ok(callback) => store_typed(&mut tx, id, received_at, &callback)
            .await
            .map(|(outcome, d)| (outcome, d.error)),
        Err(error) => Ok((Outcome::Rejected, Some(wire_error_json(&error)))),
    };
    let (outcome, error) = match typed {
        Ok(result) => result,
        Err(StoreError::Refused(_)) => {
            // Still unstorable (e.g. a NUL character): nothing of it may stay.
            tx.rollback().await?;
            tx = pool.begin().await?;
            let error = json!({"code": "unstorable_value", "message": "the callback holds a value PostgreSQL cannot store"});
            (Outcome::Rejected, Some(error))
        }
        Err(other) => return Err(other),
    };
    sqlx::query(
        "update raw_callbacks set reprocessed_at = now(), reprocess_outcome = $2, reprocess_error = $3 where id = $1",
    )
    .bind(id)
    .bind(outcome.as_str())
    .bind(error.as_ref().map(sqlx::types::Json))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Reprocessed { id, outcome, error }))
}

/// Reprocesses every kept callback refused in whole or in part, oldest first.
pub async fn reprocess_all(pool: &PgPool) -> Result<Vec<Reprocessed>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "select id from raw_callbacks where outcome in ('rejected', 'partial') and not body_truncated order by id",
    )
    .fetch_all(pool)
    .await?;
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        done.extend(reprocess(pool, id).await?);
    }
    Ok(done)
}

/// A parse error as answered and as kept: `{code, message, field?, records?}`.
pub fn wire_error_json(error: &WireError) -> Value {
    let mut body = json!({"code": error.code.as_str(), "message": error.message});
    if let Some(field) = &error.field {
        body["field"] = json!(field);
    }
    if !error.records.is_empty() {
        body["records"] = record_errors(&error.records);
    }
    body
}

/// Keeps a refused request (bad input, bad signature) with the error it was answered with.
pub async fn reject(
    pool: &PgPool,
    raw: &RawCallback,
    outcome: Outcome,
    http_status: u16,
    error: Value,
) -> Result<(), StoreError> {
    let disposition = Disposition {
        http_status,
        error: Some(error),
        records: None,
    };
    let mut connection = pool.acquire().await?;
    raw::insert(&mut connection, raw, outcome, &disposition).await
}

fn fee_disposition(batch: &FeeBatch, stored: u64) -> (Outcome, Disposition) {
    let valid = batch.records.len() as u64;
    let counts = RecordCounts {
        total: count(batch.total() as u64),
        stored: count(stored),
        duplicate: count(valid - stored),
        rejected: count(batch.rejected.len() as u64),
    };
    let outcome = if !batch.rejected.is_empty() {
        Outcome::Partial
    } else if stored > 0 {
        Outcome::Stored
    } else {
        Outcome::Duplicate
    };
    let error = (!batch.rejected.is_empty()).then(|| {
        json!({
            "code": "invalid_records",
            "message": format!("{} of {} CDRs could not be read; the others were stored", counts.rejected, counts.total),
            "field": "feeLst",
            "records": record_errors(&batch.rejected),
        })
    });
    (
        outcome,
        Disposition {
            http_status: 200,
            error,
            records: Some(counts),
        },
    )
}

/// Per-record errors as stored and as answered: `[{index, code, field, message}]`.
pub fn record_errors(rejected: &[RecordError]) -> Value {
    rejected
        .iter()
        .map(|r| json!({"index": r.index, "code": r.error.code.as_str(), "field": r.error.field, "message": r.error.message}))
        .collect()
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
