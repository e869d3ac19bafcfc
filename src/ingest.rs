//! Turning a received callback into rows: one transaction per request, holding the nonce, the
//! typed rows and the raw row, so an acknowledged callback is wholly stored and a failed one not
//! at all.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    platform::{
        callback::{Callback, FeeBatch, RecordError},
        signature::{UsernameToken, Verdict},
    },
    store::{
        StoreError, cdrs, events, nonces,
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

    let (outcome, disposition) = match callback {
        Callback::Status(event) => {
            let inserted = events::insert(&mut tx, raw.id, raw.received_at, event).await?;
            let outcome = if inserted {
                Outcome::Stored
            } else {
                Outcome::Duplicate
            };
            (
                outcome,
                Disposition {
                    http_status: 200,
                    ..Disposition::default()
                },
            )
        }
        Callback::Fee(batch) => {
            let stored = cdrs::insert(&mut tx, raw.id, raw.received_at, &batch.records).await?;
            fee_disposition(batch, stored)
        }
    };
    raw::insert(&mut tx, raw, outcome, &disposition).await?;
    tx.commit().await?;
    Ok(Ingested::Committed {
        outcome,
        records: disposition.records,
    })
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
