//! Keeping receipts: the acknowledged write. A bounded queue in front of a few writer tasks; a
//! writer takes the first waiting receipt and everything queued behind it (up to
//! `ingest.max_batch`) and keeps them with one INSERT (group commit). Under load many requests
//! share one commit; alone, a request is a group of one.
//!
//! Where a group goes: PostgreSQL while it answers within `ingest.commit_timeout_ms`, else the
//! local spool. Once a commit fails, every group goes to the spool until the drainer has emptied
//! it into the database again, so receipts reach PostgreSQL in arrival order.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::{PgPool, Postgres, pool::PoolConnection};
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::spool::{Spool, SpoolError};
use crate::{
    config::IngestConfig,
    metrics as m,
    platform::signature::Verdict,
    store::{
        StoreError,
        raw::{self, Receipt, ReceiptOutcome},
    },
    telemetry::mask_numbers,
};

/// Where a receipt was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptIn {
    Database,
    Spool,
}

impl KeptIn {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Spool => "spool",
        }
    }
}

/// Why a receipt was not kept. Nothing of it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// The queue (or its share for refusals) is full.
    Overloaded,
    /// The database cannot take it and the spool is at one of its bounds.
    SpoolFull,
    /// Neither the database nor the spool could write it.
    Failed,
}

/// What to make of a receipt whose nonce turns out to be used already.
#[derive(Debug, Clone)]
pub enum OnReplay {
    /// Keep it as accepted, with the verdict `replayed` (observe mode).
    Accept,
    /// Keep it refused (enforce mode) with the answer the HTTP layer gives it: its status and
    /// error body, recorded as `http_status` and `error`.
    Refuse { http_status: u16, error: Value },
}

struct Pending {
    receipt: Receipt,
    on_replay: OnReplay,
    reply: oneshot::Sender<Result<(Receipt, KeptIn), NotKept>>,
    _refusal: Option<OwnedSemaphorePermit>,
}

/// What the writers, the drainer and the projector share: the database, the spool, and whether
/// the database is taking receipts now.
pub struct Durability {
    pub pool: PgPool,
    pub spool: Spool,
    /// True while receipts go to PostgreSQL; false from the first failed commit until the spool
    /// is drained.
    database_up: AtomicBool,
    /// Migrations and code tables are in place (they wait for the database at start).
    schema_ready: AtomicBool,
    /// Woken when a receipt is kept in the database (the projector) or spooled (the drainer).
    pub projector_nudge: Notify,
    spooled: Notify,
    /// Nonces of valid signatures spooled while the database was away: the only replay
    /// protection there is then (the database's unique index catches the rest when drained).
    spooled_nonces: std::sync::Mutex<SpooledNonces>,
    nonce_retention: Duration,
    commit_timeout: Duration,
}

impl Durability {
    pub fn new(
        pool: PgPool,
        spool: Spool,
        config: &IngestConfig,
        nonce_retention: Duration,
    ) -> Self {
        Self {
            pool,
            spool,
            database_up: AtomicBool::new(false),
            schema_ready: AtomicBool::new(false),
            projector_nudge: Notify::new(),
            spooled: Notify::new(),
            spooled_nonces: std::sync::Mutex::new(SpooledNonces {
                seen: HashMap::new(),
                pruned: Instant::now(),
            }),
            nonce_retention,
            commit_timeout: config.commit_timeout(),
        }
    }

    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::SeqCst)
    }

    pub fn schema_ready(&self) -> bool {
        self.schema_ready.load(Ordering::SeqCst)
    }

    /// Migrations and code tables are in place. With nothing spooled the database takes
    /// receipts at once; otherwise the drainer hands it back once the spool is empty.
    pub fn set_schema_ready(&self) {
        self.schema_ready.store(true, Ordering::SeqCst);
        self.spool
            .if_empty(|| self.database_up.store(true, Ordering::SeqCst));
        self.spooled.notify_one();
    }

    fn mark_down(&self, why: &str) {
        if self.database_up.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                error = %mask_numbers(why),
                "database not taking receipts; keeping them in the spool until it is back"
            );
        }
    }

    /// Whether a callback can be kept durably now, and where.
    pub fn accepting(&self) -> Option<KeptIn> {
        if self.database_up() {
            Some(KeptIn::Database)
        } else {
            self.spool.has_room().then_some(KeptIn::Spool)
        }
    }
}

/// Nonces of valid signatures spooled, with when; expired ones are pruned now and then, not
/// on every group (the map can hold hours of nonces during a long outage).
struct SpooledNonces {
    seen: HashMap<(String, String), Instant>,
    pruned: Instant,
}

#[derive(Clone)]
pub struct ReceiptWriter {
    sender: mpsc::Sender<Pending>,
    capacity: usize,
    refusals: Arc<Semaphore>,
}

impl ReceiptWriter {
    /// Starts `ingest.writers` writers. They stop once every `ReceiptWriter` is dropped and the
    /// queue is drained.
    pub fn start(durability: Arc<Durability>, config: &IngestConfig) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..config.writers {
            let (durability, receiver, max_batch) =
                (durability.clone(), receiver.clone(), config.max_batch);
            crate::tasks::supervise(format!("receipt writer {index}"), move || {
                write(durability.clone(), receiver.clone(), max_batch)
            });
        }
        Self {
            sender,
            capacity: config.queue_capacity,
            refusals: Arc::new(Semaphore::new(config.max_queued_refusals)),
        }
    }

    /// Keeps an accepted receipt (one the projector is to derive rows from, or one answered 200
    /// that it cannot: unrecognized).
    pub async fn keep(
        &self,
        receipt: Receipt,
        on_replay: OnReplay,
    ) -> Result<(Receipt, KeptIn), NotKept> {
        self.submit(receipt, on_replay, None).await
    }

    /// Keeps a refused request. Refusals share the queue but only up to
    /// `ingest.max_queued_refusals` at once, so junk cannot starve real callbacks.
    pub async fn keep_refused(&self, receipt: Receipt) -> Result<(Receipt, KeptIn), NotKept> {
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return Err(NotKept::Overloaded);
        };
        self.submit(receipt, OnReplay::Accept, Some(permit)).await
    }

    async fn submit(
        &self,
        receipt: Receipt,
        on_replay: OnReplay,
        refusal: Option<OwnedSemaphorePermit>,
    ) -> Result<(Receipt, KeptIn), NotKept> {
        let (reply, answer) = oneshot::channel();
        let queued = self.sender.try_send(Pending {
            receipt,
            on_replay,
            reply,
            _refusal: refusal,
        });
        metrics::gauge!(m::INGEST_QUEUE_DEPTH).set((self.capacity - self.sender.capacity()) as f64);
        match queued {
            // The writer may be lost (it panicked and is being restarted): the receipt's fate is
            // then unknown, so it must not be acknowledged.
            Ok(()) => answer.await.unwrap_or(Err(NotKept::Failed)),
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                Err(NotKept::Overloaded)
            }
        }
    }
}

/// How long a writer keeps its connection without work.
const IDLE: Duration = Duration::from_millis(100);
/// Attempts at a commit that failed on a transient conflict (deadlock, serialization, lock
/// timeout) before the group goes to the spool.
const CONFLICT_ATTEMPTS: u32 = 3;

async fn write(
    durability: Arc<Durability>,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    max_batch: usize,
) {
    // A writer keeps its connection from group to group while there is work; it gives it back
    // when idle, and drops it when the database failed, so a broken connection is replaced.
    let mut connection: Option<PoolConnection<Postgres>> = None;
    loop {
        let mut group = Vec::new();
        {
            let mut receiver = match receiver.try_lock() {
                Ok(receiver) => receiver,
                Err(_) => {
                    connection = None;
                    receiver.lock().await
                }
            };
            let first = match tokio::time::timeout(IDLE, receiver.recv()).await {
                Ok(first) => first,
                Err(_) => {
                    connection = None;
                    receiver.recv().await
                }
            };
            match first {
                Some(first) => group.push(first),
                None => return,
            }
            while group.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!(m::INGEST_GROUP_SIZE).record(group.len() as f64);
        let result = keep_group(&durability, &mut connection, &mut group).await;
        for pending in group {
            // The requester may have gone (client disconnected); the receipt stands either way.
            let _ = pending
                .reply
                .send(result.map(|kept_in| (pending.receipt, kept_in)));
        }
    }
}

async fn keep_group(
    durability: &Arc<Durability>,
    connection: &mut Option<PoolConnection<Postgres>>,
    group: &mut [Pending],
) -> Result<KeptIn, NotKept> {
    loop {
        if durability.database_up() {
            match commit_with_retries(durability, connection, group).await {
                Ok(()) => {
                    durability.projector_nudge.notify_one();
                    return Ok(KeptIn::Database);
                }
                Err(why) => {
                    *connection = None;
                    durability.mark_down(&why);
                }
            }
        }
        if let Some(kept) = spool_group(durability, group).await {
            return kept;
        }
        // The drainer emptied the spool meanwhile and put the database back in charge.
    }
}

async fn commit_with_retries(
    durability: &Durability,
    connection: &mut Option<PoolConnection<Postgres>>,
    group: &mut [Pending],
) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        let commit = async {
            let held = match connection {
                Some(held) => held,
                None => connection.insert(durability.pool.acquire().await?),
            };
            commit_group(held, group).await
        };
        match tokio::time::timeout(durability.commit_timeout, commit).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(StoreError::Conflict(error))) if attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(%error, attempt, "transient conflict keeping receipts; retrying");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => {
                return Err(format!(
                    "commit not done within ingest.commit_timeout_ms ({} ms)",
                    durability.commit_timeout.as_millis()
                ));
            }
        }
    }
}

/// One INSERT for the group. Receipts it did not write carry a nonce used before (their ids
/// are new): they are kept again as replays, refused or accepted as `on_replay` says.
async fn commit_group(
    connection: &mut sqlx::PgConnection,
    group: &mut [Pending],
) -> Result<(), StoreError> {
    let receipts: Vec<&Receipt> = group.iter().map(|p| &p.receipt).collect();
    let written: HashSet<Uuid> = raw::insert(connection, &receipts)
        .await?
        .into_iter()
        .collect();
    if written.len() == group.len() {
        return Ok(());
    }
    let mut replays = Vec::new();
    for pending in group.iter_mut() {
        if !written.contains(&pending.receipt.id) {
            mark_replayed(pending);
            replays.push(pending.receipt.clone());
        }
    }
    let refs: Vec<&Receipt> = replays.iter().collect();
    raw::insert(connection, &refs).await?;
    Ok(())
}

fn mark_replayed(pending: &mut Pending) {
    let receipt = &mut pending.receipt;
    receipt.signature_verdict = Verdict::Replayed;
    if let OnReplay::Refuse { http_status, error } = &pending.on_replay {
        receipt.outcome = ReceiptOutcome::Unauthorized;
        receipt.http_status = *http_status;
        receipt.error = Some(error.clone());
    }
}

/// Appends the group to the spool; `None` when the database is in charge again.
async fn spool_group(
    durability: &Arc<Durability>,
    group: &mut [Pending],
) -> Option<Result<KeptIn, NotKept>> {
    {
        let mut seen = durability
            .spooled_nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let retention = durability.nonce_retention;
        if now.duration_since(seen.pruned) > Duration::from_secs(1) {
            seen.seen
                .retain(|_, at| now.duration_since(*at) < retention);
            seen.pruned = now;
        }
        for pending in group.iter_mut() {
            let receipt = &pending.receipt;
            if receipt.signature_verdict != Verdict::Valid {
                continue;
            }
            if let (Some(app), Some(nonce)) = (&receipt.app_key, &receipt.nonce)
                && seen
                    .seen
                    .insert((app.clone(), nonce.clone()), now)
                    .is_some_and(|at| now.duration_since(at) < retention)
            {
                mark_replayed(pending);
            }
        }
    }
    let receipts: Vec<Receipt> = group.iter().map(|p| p.receipt.clone()).collect();
    let shared = durability.clone();
    let appended = tokio::task::spawn_blocking(move || {
        let refs: Vec<&Receipt> = receipts.iter().collect();
        // Decided under the spool's lock: once the drainer has emptied the spool and put the
        // database back in charge, this group goes there instead (arrival order is kept).
        shared.spool.append_if(|| !shared.database_up(), &refs)
    })
    .await
    .unwrap_or_else(|panicked| Err(SpoolError::Io(std::io::Error::other(panicked.to_string()))));
    Some(match appended {
        Ok(true) => {
            metrics::counter!(m::SPOOLED_RECEIPTS_TOTAL).increment(group.len() as u64);
            durability.spooled.notify_one();
            Ok(KeptIn::Spool)
        }
        Ok(false) => return None,
        Err(SpoolError::Full(bound)) => {
            tracing::warn!(bound, "spool full: answering 503");
            Err(NotKept::SpoolFull)
        }
        Err(SpoolError::Io(error)) => {
            tracing::error!(%error, "cannot write to the spool");
            Err(NotKept::Failed)
        }
    })
}

/// Keeps spooled receipts in PostgreSQL, oldest segment first, and puts the database back in
/// charge once the spool is empty. Also the one that notices the database is back.
pub async fn drain(durability: Arc<Durability>) {
    let mut failing_since: Option<Instant> = None;
    loop {
        if !durability.schema_ready() {
            let _ = tokio::time::timeout(Duration::from_millis(500), durability.spooled.notified())
                .await;
            continue;
        }
        match drain_once(&durability).await {
            Ok(Drained::Empty) => {
                if durability.database_up() {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(500),
                        durability.spooled.notified(),
                    )
                    .await;
                }
                failing_since = None;
            }
            Ok(Drained::Segment(0)) => {}
            Ok(Drained::Segment(records)) => {
                tracing::info!(records, "drained a spool segment into the database");
                durability.projector_nudge.notify_one();
                failing_since = None;
            }
            Err(error) => {
                if failing_since.is_none() {
                    tracing::warn!(error = %mask_numbers(&error.to_string()), "cannot drain the spool yet; retrying");
                    failing_since = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        update_spool_gauges(&durability.spool);
    }
}

enum Drained {
    Empty,
    Segment(usize),
}

/// Chunk of a segment kept with one INSERT.
const DRAIN_CHUNK: usize = 256;

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panicked| Err(SpoolError::Io(std::io::Error::other(panicked.to_string()))))
}

async fn drain_once(durability: &Arc<Durability>) -> Result<Drained, DrainError> {
    let mut connection = durability.pool.acquire().await?;
    let Some(seq) = durability.spool.oldest_segment() else {
        // Empty: make sure the database really answers before putting it back in charge.
        sqlx::query("select 1").execute(&mut *connection).await?;
        let now_up = durability.spool.if_empty(|| {
            if !durability.database_up.swap(true, Ordering::SeqCst) {
                tracing::info!("database taking receipts again");
            }
        });
        // Not empty after all: a group was spooled meanwhile; drain it next time round.
        return Ok(if now_up {
            Drained::Empty
        } else {
            Drained::Segment(0)
        });
    };
    let shared = durability.clone();
    let receipts = blocking(move || shared.spool.read_segment(seq)).await?;
    for chunk in receipts.chunks(DRAIN_CHUNK) {
        keep_drained(&mut connection, chunk).await?;
    }
    let shared = durability.clone();
    blocking(move || shared.spool.remove_segment(seq)).await?;
    Ok(Drained::Segment(receipts.len()))
}

/// Keeps spooled receipts. One already kept (a segment drained again after a crash) is skipped
/// by its id; one whose nonce another receipt used meanwhile (a replay that reached another
/// replica, or this one before it spooled) is kept as replayed. It was acknowledged already,
/// so it is kept as accepted: the projector sees a replayed status event as a duplicate.
async fn keep_drained(
    connection: &mut sqlx::PgConnection,
    chunk: &[Receipt],
) -> Result<(), StoreError> {
    let refs: Vec<&Receipt> = chunk.iter().collect();
    let written: HashSet<Uuid> = raw::insert(connection, &refs).await?.into_iter().collect();
    if written.len() == chunk.len() {
        return Ok(());
    }
    let missing: Vec<Uuid> = chunk
        .iter()
        .map(|r| r.id)
        .filter(|id| !written.contains(id))
        .collect();
    let present: HashSet<Uuid> = raw::existing(connection, &missing)
        .await?
        .into_iter()
        .collect();
    let replays: Vec<Receipt> = chunk
        .iter()
        .filter(|r| !written.contains(&r.id) && !present.contains(&r.id))
        .map(|r| Receipt {
            signature_verdict: Verdict::Replayed,
            ..r.clone()
        })
        .collect();
    if !replays.is_empty() {
        let refs: Vec<&Receipt> = replays.iter().collect();
        raw::insert(connection, &refs).await?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl From<sqlx::Error> for DrainError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

pub fn update_spool_gauges(spool: &Spool) {
    let status = spool.status();
    metrics::gauge!(m::SPOOL_RECORDS).set(status.records as f64);
    metrics::gauge!(m::SPOOL_BYTES).set(status.bytes as f64);
    let age = status.oldest.map_or(0.0, |oldest| {
        (time::OffsetDateTime::now_utc() - oldest)
            .as_seconds_f64()
            .max(0.0)
    });
    metrics::gauge!(m::SPOOL_OLDEST_AGE_SECONDS).set(age);
}
