//! The projector: everything derived from committed receipts, the one write path for typed
//! rows. Live projection, reprocessing a refused callback and reprojecting a time range all come
//! down to `project`: parse each receipt's bytes, insert its status event or CDRs (a redelivery
//! hits the dedup keys and is skipped), recompute the calls they touch once per batch, and record
//! each receipt's outcome, all in the caller's transaction.
//!
//! Exactly once: a receipt is claimed with `FOR UPDATE SKIP LOCKED` and its outcome changes from
//! `received` in the same transaction that writes its rows, so a crash before the commit leaves
//! it to be claimed again and a commit leaves nothing to redo; replicas skip each other's claims.
//! Idempotent: the dedup keys make projecting a receipt's rows twice change nothing.
//!
//! Later consumers of "what changed" (an outbox of deliveries to users' systems, recordings to
//! archive) belong in `project`'s transaction too: `Projection::sessions` are the calls it
//! changed.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{fee_disposition, receipts::Durability, wire_error_json};
use crate::{
    calls::{CallRecord, CdrFact, EventFact},
    config::{ProjectorConfig, SignatureMode},
    kpis::{CallbackDelay, Observations},
    metrics as m,
    platform::{
        callback::{Callback, WireErrorCode, parse_callback},
        signature::Verdict,
        time::parse_platform_time,
    },
    store::{
        StoreError, calls,
        cdrs::{self, NewCdr, StoredCdr},
        events::{self, NewEvent},
        raw::{self, KeptReceipt, OutcomeColumn, Projected, ReceiptOutcome},
    },
    telemetry::mask_numbers,
};

/// Why a projection runs; it decides where each outcome is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receipts just acknowledged.
    Live,
    /// A refused receipt run through today's parser (its answered outcome stays).
    Reprocess,
    /// Receipts projected before, derived again after a code fix.
    Reproject,
}

/// What one `project` call did.
#[derive(Debug, Default)]
pub struct Projection {
    pub projected: Vec<Projected>,
    /// The calls whose rows were written.
    pub sessions: Vec<String>,
    /// What it adds to the call metrics; the caller records them once its transaction has
    /// committed.
    pub kpis: Observations,
}

/// Projects `receipts` (in id order) inside the caller's transaction. `also_refresh` names
/// calls whose facts changed otherwise (reprojection deleted some).
pub async fn project(
    tx: &mut PgConnection,
    receipts: &[KeptReceipt],
    mode: Mode,
    also_refresh: Vec<String>,
) -> Result<Projection, StoreError> {
    let parsed: Vec<_> = receipts
        .iter()
        .map(|receipt| {
            parse_callback(&receipt.body).result.map(|mut callback| {
                if let (Callback::Status(event), Some(nonce)) = (&mut callback, &receipt.nonce) {
                    event.fingerprint = push_identity(&event.fingerprint, nonce);
                }
                callback
            })
        })
        .collect();

    let mut new_events = Vec::new();
    let mut new_cdrs = Vec::new();
    for (receipt, callback) in receipts.iter().zip(&parsed) {
        match callback {
            Ok(Callback::Status(event)) => new_events.push(NewEvent {
                raw_callback_id: receipt.id,
                received_at: receipt.received_at,
                event,
            }),
            Ok(Callback::Fee(batch)) => {
                new_cdrs.extend(batch.records.iter().map(|record| NewCdr {
                    raw_callback_id: receipt.id,
                    received_at: receipt.received_at,
                    record,
                }))
            }
            Err(_) => {}
        }
    }
    // Fingerprint → row id of the events this batch stored.
    let inserted_events: HashMap<Vec<u8>, i64> = if new_events.is_empty() {
        HashMap::new()
    } else {
        events::insert(&mut *tx, &new_events)
            .await?
            .into_iter()
            .map(|(id, fingerprint)| (fingerprint, id))
            .collect()
    };
    let inserted_cdrs = if new_cdrs.is_empty() {
        Vec::new()
    } else {
        cdrs::insert(&mut *tx, &new_cdrs).await?
    };

    let stored_events = first_stored(&new_events, &inserted_events);
    let held = held_facts(&stored_events, &new_cdrs, &inserted_cdrs);
    let mut sessions = also_refresh;
    sessions.extend(held.events.iter().map(|(_, session, _)| session.clone()));
    sessions.extend(inserted_cdrs.iter().map(|cdr| cdr.session_id.clone()));
    sessions.sort_unstable();
    sessions.dedup();
    let refreshed = calls::refresh(&mut *tx, &sessions, held).await?;
    let mut kpis = calls::ended(&refreshed);
    if mode != Mode::Reproject {
        // Reprojection stores again events that were stored (and measured) before.
        kpis.callback_delays = callback_delays(&stored_events, &refreshed);
    }

    let storing_receipts: HashSet<Uuid> = stored_events
        .iter()
        .map(|(_, new)| new.raw_callback_id)
        .collect();
    let mut projected = Vec::with_capacity(receipts.len());
    for (receipt, callback) in receipts.iter().zip(&parsed) {
        let (outcome, error, records) = match callback {
            Ok(Callback::Status(_)) => {
                let outcome = if storing_receipts.contains(&receipt.id) {
                    ReceiptOutcome::Stored
                } else {
                    ReceiptOutcome::Duplicate
                };
                (outcome, None, None)
            }
            Ok(Callback::Fee(batch)) => {
                let stored = inserted_cdrs
                    .iter()
                    .filter(|cdr| cdr.raw_callback_id == receipt.id)
                    .count();
                fee_disposition(batch, stored as u64)
            }
            Err(error) if error.code == WireErrorCode::UnknownEventType => (
                ReceiptOutcome::Unrecognized,
                Some(wire_error_json(error)),
                None,
            ),
            Err(error) => (ReceiptOutcome::Rejected, Some(wire_error_json(error)), None),
        };
        projected.push(Projected {
            id: receipt.id,
            outcome,
            error,
            records,
        });
    }
    let rows: Vec<(&Projected, OutcomeColumn)> = projected
        .iter()
        .zip(receipts)
        .map(|(p, receipt)| (p, outcome_column(mode, receipt)))
        .collect();
    raw::set_outcomes(&mut *tx, &rows).await?;

    if mode == Mode::Live {
        count(&parsed, &projected);
    }
    Ok(Projection {
        projected,
        sessions,
        kpis,
    })
}

/// The events this batch stored, with their row ids: of receipts carrying one new event, the
/// first (in id order, as the insert kept it) stored it; the others are duplicates.
fn first_stored<'n, 'e>(
    new_events: &'n [NewEvent<'e>],
    inserted_events: &HashMap<Vec<u8>, i64>,
) -> Vec<(i64, &'n NewEvent<'e>)> {
    let mut taken: HashSet<&[u8]> = HashSet::new();
    new_events
        .iter()
        .filter_map(|new| {
            let fingerprint = &new.event.fingerprint[..];
            let id = *inserted_events.get(fingerprint)?;
            taken.insert(fingerprint).then_some((id, new))
        })
        .collect()
}

/// The facts this batch stored, as it stored them, for `calls::refresh`: of CDRs with one key,
/// the first (in receipt order) is the one the insert kept.
fn held_facts(
    stored_events: &[(i64, &NewEvent<'_>)],
    new_cdrs: &[NewCdr<'_>],
    inserted_cdrs: &[StoredCdr],
) -> calls::Held {
    let mut held = calls::Held::default();
    for (id, new) in stored_events {
        held.events.push((
            *id,
            new.event.session_id.clone(),
            EventFact::stored_from(new.event, new.received_at),
        ));
    }
    let mut first: HashMap<(Uuid, &str, &str), &NewCdr<'_>> = HashMap::new();
    for new in new_cdrs {
        let key = (
            new.raw_callback_id,
            new.record.session_id.as_str(),
            new.record.dedup_key.as_str(),
        );
        first.entry(key).or_insert(new);
    }
    for stored in inserted_cdrs {
        let key = (
            stored.raw_callback_id,
            stored.session_id.as_str(),
            stored.dedup_key.as_str(),
        );
        if let Some(new) = first.get(&key) {
            held.cdrs.push((
                stored.id,
                stored.session_id.clone(),
                CdrFact::stored_from(new.record, new.received_at),
            ));
        }
    }
    held
}

/// The delay of each status event stored for the first time (once, however many receipts of
/// the batch carried it), labelled as its call now is.
fn callback_delays(
    stored_events: &[(i64, &NewEvent<'_>)],
    refreshed: &[calls::Refreshed],
) -> Vec<CallbackDelay> {
    let records: HashMap<&str, &CallRecord> = refreshed
        .iter()
        .map(|call| (call.record.session_id.as_str(), &call.record))
        .collect();
    stored_events
        .iter()
        .filter_map(|(_, new)| {
            let event_at = parse_platform_time(new.event.info.timestamp.as_deref()?)?;
            let record = records.get(new.event.session_id.as_str())?;
            Some(record.callback_delay(new.event.event_type.as_str(), event_at, new.received_at))
        })
        .collect()
}

/// A signed push is one event however much its content looks like another's: two legs hanging
/// up in the same second can send byte-identical bodies, while a replay repeats the nonce.
fn push_identity(content: &[u8; 32], nonce: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(content);
    hasher.update(b"\0nonce\0");
    hasher.update(nonce.as_bytes());
    hasher.finalize().into()
}

fn outcome_column(mode: Mode, receipt: &KeptReceipt) -> OutcomeColumn {
    match mode {
        Mode::Live => OutcomeColumn::Original,
        Mode::Reprocess => OutcomeColumn::Reprocess,
        Mode::Reproject if receipt.reprocessed_at.is_some() => OutcomeColumn::Reprocess,
        Mode::Reproject => OutcomeColumn::Original,
    }
}

fn count<E>(parsed: &[Result<Callback, E>], projected: &[Projected]) {
    for (callback, projected) in parsed.iter().zip(projected) {
        match (callback, projected.outcome) {
            (Ok(Callback::Status(_)), ReceiptOutcome::Duplicate) => {
                metrics::counter!(m::DUPLICATES_TOTAL, "kind" => "status").increment(1);
            }
            (Ok(Callback::Fee(_)), _) => {
                let counts = projected.records.unwrap_or_default();
                let as_u64 = |n: i32| u64::try_from(n).unwrap_or(0);
                metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "stored")
                    .increment(as_u64(counts.stored));
                metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "duplicate")
                    .increment(as_u64(counts.duplicate));
                metrics::counter!(m::CDR_RECORDS_TOTAL, "outcome" => "rejected")
                    .increment(as_u64(counts.rejected));
                metrics::counter!(m::DUPLICATES_TOTAL, "kind" => "cdr")
                    .increment(as_u64(counts.duplicate));
            }
            _ => {}
        }
        metrics::counter!(m::PROJECTED_TOTAL, "outcome" => projected.outcome.as_str()).increment(1);
    }
}

/// Records a receipt whose rows PostgreSQL refuses to store (a value it cannot hold) as
/// rejected with that reason, in a transaction of its own: nothing of its rows may stay.
async fn keep_unstorable(
    pool: &PgPool,
    id: Uuid,
    column: OutcomeColumn,
) -> Result<Projected, StoreError> {
    let projected = Projected {
        id,
        outcome: ReceiptOutcome::Rejected,
        error: Some(json!({
            "code": "unstorable_value",
            "message": "the callback holds a value PostgreSQL cannot store",
        })),
        records: None,
    };
    let mut tx = pool.begin().await?;
    raw::set_outcomes(&mut tx, &[(&projected, column)]).await?;
    tx.commit().await?;
    Ok(projected)
}

/// Projects what this and other replicas keep, until the process ends.
pub async fn run(durability: Arc<Durability>, config: ProjectorConfig) {
    let poll = Duration::from_millis(config.poll_interval_ms);
    let batch = Batch::of(&config);
    let mut failing = false;
    loop {
        if !durability.schema_ready() {
            tokio::time::sleep(poll).await;
            continue;
        }
        match project_next(&durability.pool, batch).await {
            Ok(claimed) => {
                failing = false;
                if claimed < config.batch {
                    let _ = tokio::time::timeout(poll, durability.projector_nudge.notified()).await;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %mask_numbers(&error.to_string()), "projection failed; retrying");
                    failing = true;
                }
                tokio::time::sleep(poll).await;
            }
        }
    }
}

const CONFLICT_ATTEMPTS: u32 = 5;

/// How much one projection transaction takes (`[projector]`).
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub receipts: i64,
    pub bytes: i64,
}

impl Batch {
    pub fn of(config: &ProjectorConfig) -> Self {
        Self {
            receipts: i64::try_from(config.batch).unwrap_or(i64::MAX),
            bytes: i64::try_from(config.batch_bytes).unwrap_or(i64::MAX),
        }
    }
}

/// Claims and projects the next batch. Returns how many receipts it claimed.
pub async fn project_next(pool: &PgPool, batch: Batch) -> Result<usize, StoreError> {
    let mut attempt = 1;
    loop {
        let mut connection = pool.acquire().await?;
        let mut tx = connection.begin().await?;
        // The batch statements join arrays against large tables: plan each with its real
        // arrays, never with a generic plan cached while a table was small.
        sqlx::query("set local plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await?;
        let claimed = raw::claim_unprojected(&mut tx, batch.receipts, batch.bytes).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        match project(&mut tx, &claimed, Mode::Live, Vec::new()).await {
            Ok(projection) => {
                tx.commit().await?;
                record_lag(&claimed);
                projection.kpis.record();
                return Ok(claimed.len());
            }
            Err(StoreError::Conflict(error)) if attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(%error, attempt, "projection conflicted; retrying");
                drop(tx);
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            Err(StoreError::InvalidValue(_)) => {
                drop(tx);
                let ids: Vec<Uuid> = claimed.iter().map(|r| r.id).collect();
                project_alone(pool, &ids).await?;
                return Ok(claimed.len());
            }
            Err(error) => return Err(error),
        }
    }
}

fn record_lag(receipts: &[KeptReceipt]) {
    let now = OffsetDateTime::now_utc();
    for receipt in receipts {
        metrics::histogram!(m::PROJECTION_LAG_SECONDS)
            .record((now - receipt.received_at).as_seconds_f64().max(0.0));
    }
}

/// One receipt per transaction, after a batch failed on a value: the one PostgreSQL refuses is
/// kept `rejected` with that error, the others are projected as usual.
async fn project_alone(pool: &PgPool, ids: &[Uuid]) -> Result<(), StoreError> {
    for id in ids {
        let mut tx = pool.begin().await?;
        let Some(receipt) = raw::lock(&mut tx, *id).await? else {
            continue;
        };
        if receipt.outcome != ReceiptOutcome::Received.as_str() {
            continue;
        }
        let receipts = [receipt];
        match project(&mut tx, &receipts, Mode::Live, Vec::new()).await {
            Ok(projection) => {
                tx.commit().await?;
                projection.kpis.record();
            }
            Err(StoreError::InvalidValue(error)) => {
                tracing::info!(error = %mask_numbers(&error.to_string()), callback_id = %id, "database refused a value of a receipt");
                drop(tx);
                keep_unstorable(pool, *id, OutcomeColumn::Original).await?;
            }
            Err(other) => return Err(other),
        }
        record_lag(&receipts);
    }
    Ok(())
}

/// What running a kept callback through the parser again came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Reprocessed {
    pub id: Uuid,
    /// Stored, Duplicate, Partial, or Rejected/Unrecognized when today's parser still refuses it.
    pub outcome: ReceiptOutcome,
    /// The error, when it is still (partly) refused.
    pub error: Option<Value>,
}

/// Why a kept callback may not be reprocessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReprocessable {
    /// No callback with that id.
    Unknown,
    /// It was accepted: its rows are derived already (see reprojection).
    NotRefused,
    /// Only its first bytes were kept (413, or a body that stopped arriving).
    Truncated,
    /// It did not arrive as a POST (405).
    WrongMethod,
    /// Its signature verdict would be refused by the signature mode in force.
    SignatureRefused(Verdict),
}

impl NotReprocessable {
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "not_found",
            Self::NotRefused => "not_refused",
            Self::Truncated => "body_truncated",
            Self::WrongMethod => "wrong_method",
            Self::SignatureRefused(_) => "signature_refused",
        }
    }

    pub fn message(self) -> String {
        match self {
            Self::Unknown => "no kept callback has this id".into(),
            Self::NotRefused => "this callback was accepted; its rows are derived already (callhook reproject derives them again)".into(),
            Self::Truncated => "only the first bytes of this callback were kept, so it cannot be read again".into(),
            Self::WrongMethod => "this request was not a POST; the platform never sends those".into(),
            Self::SignatureRefused(verdict) => format!(
                "its signature verdict is {}, which the signature mode in force refuses: reprocessing it would store what was never authenticated",
                verdict.as_str()
            ),
        }
    }
}

/// Outcomes a refused callback can be reprocessed from.
const REPROCESSABLE: [ReceiptOutcome; 4] = [
    ReceiptOutcome::Rejected,
    ReceiptOutcome::Partial,
    ReceiptOutcome::Unrecognized,
    ReceiptOutcome::Unauthorized,
];

fn verdict_passes(mode: SignatureMode, verdict: Verdict) -> bool {
    mode != SignatureMode::Enforce || verdict == Verdict::Valid
}

/// Runs one kept callback whose outcome was refused in whole or in part through the current
/// parser (after a fix), through the projector, under the original request and receive time.
/// Idempotent: what was stored before is a duplicate the second time.
pub async fn reprocess(
    pool: &PgPool,
    id: Uuid,
    mode: SignatureMode,
) -> Result<Result<Reprocessed, NotReprocessable>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(receipt) = raw::lock(&mut tx, id).await? else {
        return Ok(Err(NotReprocessable::Unknown));
    };
    let outcome = ReceiptOutcome::parse(&receipt.outcome);
    if !outcome.is_some_and(|o| REPROCESSABLE.contains(&o)) {
        return Ok(Err(NotReprocessable::NotRefused));
    }
    if receipt.body_truncated {
        return Ok(Err(NotReprocessable::Truncated));
    }
    if receipt.method != "POST" {
        return Ok(Err(NotReprocessable::WrongMethod));
    }
    let verdict = Verdict::parse(&receipt.signature_verdict).unwrap_or(Verdict::NotChecked);
    if !verdict_passes(mode, verdict) {
        return Ok(Err(NotReprocessable::SignatureRefused(verdict)));
    }
    let receipts = [receipt];
    let projected = match project(&mut tx, &receipts, Mode::Reprocess, Vec::new()).await {
        Ok(mut projection) => {
            tx.commit().await?;
            projection.kpis.record();
            projection.projected.remove(0)
        }
        Err(StoreError::InvalidValue(_)) => {
            // Still unstorable (e.g. a NUL character).
            drop(tx);
            keep_unstorable(pool, id, OutcomeColumn::Reprocess).await?
        }
        Err(other) => return Err(other),
    };
    Ok(Ok(Reprocessed {
        id,
        outcome: projected.outcome,
        error: projected.error,
    }))
}

/// Reprocesses every kept callback refused in whole or in part that may be, oldest first.
pub async fn reprocess_all(
    pool: &PgPool,
    mode: SignatureMode,
) -> Result<Vec<Reprocessed>, StoreError> {
    let ids = sqlx::query_scalar!(
        "select id from raw_callbacks
         where outcome in ('rejected', 'partial', 'unrecognized', 'unauthorized')
           and not body_truncated and method = 'POST'
           and ($1 or signature_verdict = 'valid')
         order by id",
        mode != SignatureMode::Enforce,
    )
    .fetch_all(pool)
    .await?;
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        if let Ok(reprocessed) = reprocess(pool, id, mode).await? {
            done.push(reprocessed);
        }
    }
    Ok(done)
}

/// What a reprojection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reprojected {
    pub receipts: u64,
    pub calls: u64,
}

/// Derives again the rows of every receipt received in `[from, to)` whose rows were derived
/// (accepted ones, and refused ones reprocessed into rows): their typed rows are deleted and
/// projected anew in id order, and the calls they touch recomputed. Run after a fix to the
/// parser or the projection; on unchanged code it gives identical rows.
pub async fn reproject(
    pool: &PgPool,
    from: OffsetDateTime,
    to: OffsetDateTime,
    batch: i64,
) -> Result<Reprojected, StoreError> {
    let mut done = Reprojected::default();
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query("set local plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await?;
        let receipts = raw::lock_projected(&mut tx, from, to, after, batch).await?;
        let Some(last) = receipts.last() else {
            tx.commit().await?;
            return Ok(done);
        };
        after = last.id;
        let ids: Vec<Uuid> = receipts.iter().map(|r| r.id).collect();
        let mut deleted = sqlx::query_scalar!(
            "delete from call_events where raw_callback_id = any($1) returning session_id",
            &ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        deleted.extend(
            sqlx::query_scalar!(
                "delete from cdrs where raw_callback_id = any($1) returning session_id",
                &ids,
            )
            .fetch_all(&mut *tx)
            .await?,
        );
        let projection = project(&mut tx, &receipts, Mode::Reproject, deleted).await?;
        tx.commit().await?;
        projection.kpis.record();
        done.receipts += receipts.len() as u64;
        done.calls += projection.sessions.len() as u64;
    }
}
