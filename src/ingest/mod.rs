//! Turning received callbacks into rows. Requests are committed in groups (group commit): the
//! `Committer` queues them, and a few writers each take whatever has queued up and store it in
//! one transaction (nonces, typed rows, the calls they touch, raw rows), one statement per
//! table for the whole group. Every request is answered only after its group committed, so an
//! acknowledged callback is wholly stored and a failed one not at all.

mod committer;

use std::collections::HashSet;

pub use self::committer::{Committer, Submitted};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    platform::{
        callback::{Callback, FeeBatch, RecordError, WireError, parse_callback},
        signature::{UsernameToken, Verdict},
    },
    store::{
        StoreError, calls,
        cdrs::{self, NewCdr},
        events::{self, NewEvent},
        nonces,
        raw::{self, Disposition, NewRaw, Outcome, RawCallback, RecordCounts},
    },
    telemetry::mask_numbers,
};

/// A received callback, parsed and judged, waiting to be committed.
#[derive(Debug)]
pub struct Job {
    pub raw: RawCallback,
    pub callback: Callback,
    /// The token of a valid signature: its nonce must not have been seen before.
    pub nonce: Option<UsernameToken>,
    /// Whether a seen nonce stops the job (enforce) or only marks the verdict (observe).
    pub refuse_replays: bool,
}

/// What committing a job came to.
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

/// Why a job was not committed. Plain data, so one failed group can tell each of its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot take writes now: retry later (503).
    Unavailable,
    /// The database refused one of the job's values (400; the raw request is kept instead).
    Refused,
    /// Anything else (500).
    Internal,
}

impl From<&StoreError> for Failure {
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Refused(_) => Self::Refused,
            StoreError::Other(_) | StoreError::Migrate(_) => Self::Internal,
        }
    }
}

/// Commits jobs together: one transaction for the whole group. Should that fail for any reason
/// but an unavailable database, each job is tried alone, so one request's bad row never fails
/// the others.
pub async fn commit(
    connection: &mut PgConnection,
    mut jobs: Vec<Job>,
) -> Vec<(Job, Result<Ingested, Failure>)> {
    let error = match commit_group(connection, &mut jobs).await {
        Ok(results) => return jobs.into_iter().zip(results.into_iter().map(Ok)).collect(),
        Err(error) => error,
    };
    let failure = Failure::from(&error);
    match failure {
        Failure::Unavailable => {
            tracing::warn!(error = %mask_numbers(&error.to_string()), "database unavailable")
        }
        Failure::Refused => {
            tracing::info!(error = %mask_numbers(&error.to_string()), "database refused a value")
        }
        Failure::Internal => {
            tracing::error!(error = %mask_numbers(&error.to_string()), "storing callbacks failed")
        }
    }
    if jobs.len() == 1 || failure == Failure::Unavailable {
        return jobs.into_iter().map(|job| (job, Err(failure))).collect();
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut alone = vec![job];
        let result = commit_group(connection, &mut alone).await;
        let job = alone.pop().expect("one job in, one job out");
        results.push((
            job,
            result
                .map(|mut r| r.remove(0))
                .map_err(|e| Failure::from(&e)),
        ));
    }
    results
}

/// One transaction: nonces (replay check), typed rows, the calls they touch, raw rows; each
/// step one statement for the whole group.
async fn commit_group(
    connection: &mut PgConnection,
    jobs: &mut [Job],
) -> Result<Vec<Ingested>, StoreError> {
    let mut tx = connection.begin().await?;

    let pairs: Vec<(&str, &str)> = jobs
        .iter()
        .filter_map(|j| {
            j.nonce
                .as_ref()
                .map(|t| (t.username.as_str(), t.nonce.as_str()))
        })
        .collect();
    let mut replayed = vec![false; jobs.len()];
    if !pairs.is_empty() {
        let fresh: HashSet<(String, String)> =
            nonces::remember(&mut tx, &pairs, OffsetDateTime::now_utc())
                .await?
                .into_iter()
                .collect();
        let mut claimed = HashSet::new();
        for (job, replayed) in jobs.iter().zip(replayed.iter_mut()) {
            if let Some(token) = &job.nonce {
                let key = (token.username.clone(), token.nonce.clone());
                *replayed = !(fresh.contains(&key) && claimed.insert(key));
            }
        }
    }
    let skipped: Vec<bool> = jobs
        .iter()
        .zip(&replayed)
        .map(|(job, replayed)| *replayed && job.refuse_replays)
        .collect();
    let kept = || {
        jobs.iter()
            .zip(&skipped)
            .filter(|(_, skip)| !**skip)
            .map(|(job, _)| job)
    };

    let new_events: Vec<NewEvent<'_>> = kept()
        .filter_map(|job| match &job.callback {
            Callback::Status(event) => Some(NewEvent {
                raw_callback_id: job.raw.id,
                received_at: job.raw.received_at,
                event,
            }),
            Callback::Fee(_) => None,
        })
        .collect();
    let new_cdrs: Vec<NewCdr<'_>> = kept()
        .filter_map(|job| match &job.callback {
            Callback::Fee(batch) => Some((job, batch)),
            Callback::Status(_) => None,
        })
        .flat_map(|(job, batch)| {
            batch.records.iter().map(|record| NewCdr {
                raw_callback_id: job.raw.id,
                received_at: job.raw.received_at,
                record,
            })
        })
        .collect();
    let inserted_events: HashSet<Vec<u8>> = if new_events.is_empty() {
        HashSet::new()
    } else {
        events::insert(&mut tx, &new_events)
            .await?
            .into_iter()
            .collect()
    };
    let inserted_cdrs = if new_cdrs.is_empty() {
        Vec::new()
    } else {
        cdrs::insert(&mut tx, &new_cdrs).await?
    };

    let mut touched: Vec<String> = inserted_cdrs
        .iter()
        .map(|(_, session)| session.clone())
        .collect();
    touched.extend(
        new_events
            .iter()
            .filter(|new| inserted_events.contains(&new.event.fingerprint[..]))
            .map(|new| new.event.session_id.clone()),
    );
    calls::refresh(&mut tx, &touched).await?;

    // Outcomes in request order: of two requests carrying one new event, the first stored it.
    let mut claimed_events: HashSet<&[u8]> = HashSet::new();
    let mut results = Vec::with_capacity(jobs.len());
    let mut dispositions = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        if skipped[index] {
            results.push(Ingested::Replayed);
            continue;
        }
        let (outcome, disposition) = match &job.callback {
            Callback::Status(event) => {
                let fingerprint = &event.fingerprint[..];
                let stored =
                    inserted_events.contains(fingerprint) && claimed_events.insert(fingerprint);
                let outcome = if stored {
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
                let stored = inserted_cdrs
                    .iter()
                    .filter(|(raw_id, _)| *raw_id == job.raw.id)
                    .count();
                fee_disposition(batch, stored as u64)
            }
        };
        results.push(Ingested::Committed {
            outcome,
            records: disposition.records,
        });
        dispositions.push((index, outcome, disposition));
    }
    let rows: Vec<NewRaw<'_>> = dispositions
        .iter()
        .map(|(index, outcome, disposition)| NewRaw {
            raw: &jobs[*index].raw,
            verdict: if replayed[*index] {
                Verdict::Replayed
            } else {
                jobs[*index].raw.signature_verdict
            },
            outcome: *outcome,
            disposition,
        })
        .collect();
    raw::insert(&mut tx, &rows).await?;
    tx.commit().await?;

    for (job, replayed) in jobs.iter_mut().zip(replayed) {
        if replayed {
            job.raw.signature_verdict = Verdict::Replayed;
        }
    }
    Ok(results)
}

/// Writes the typed rows of one callback and brings the affected calls up to date, inside the
/// caller's transaction (reprocessing: the raw row is already there).
async fn store_typed(
    tx: &mut PgConnection,
    raw_callback_id: Uuid,
    received_at: OffsetDateTime,
    callback: &Callback,
) -> Result<(Outcome, Disposition), StoreError> {
    match callback {
        Callback::Status(event) => {
            let new = [NewEvent {
                raw_callback_id,
                received_at,
                event,
            }];
            let stored = !events::insert(&mut *tx, &new).await?.is_empty();
            if stored {
                calls::refresh(tx, std::slice::from_ref(&event.session_id)).await?;
            }
            let outcome = if stored {
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
            let new: Vec<NewCdr<'_>> = batch
                .records
                .iter()
                .map(|record| NewCdr {
                    raw_callback_id,
                    received_at,
                    record,
                })
                .collect();
            let stored: Vec<String> = cdrs::insert(&mut *tx, &new)
                .await?
                .into_iter()
                .map(|(_, s)| s)
                .collect();
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
    let row = NewRaw {
        raw,
        verdict: raw.signature_verdict,
        outcome,
        disposition: &disposition,
    };
    raw::insert(&mut connection, &[row]).await
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
