//! `raw_callbacks`: the receipts. Every request that reached a callback endpoint, exactly as
//! received, with what became of it. A receipt is what callhook acknowledges; the typed rows and
//! the call log are projected from it later (see `ingest::projector`).

use bytes::Bytes;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::platform::signature::Verdict;

/// What became of a request. Stored as `raw_callbacks.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Accepted and durably kept; the projector has not derived its rows yet.
    Received,
    /// New typed rows were written.
    Stored,
    /// Everything in it was already stored by an earlier delivery.
    Duplicate,
    /// Some CDRs of the fee list were refused; the others were stored.
    Partial,
    /// Bad input: nothing was stored but this row.
    Rejected,
    /// The signature was refused (enforce mode).
    Unauthorized,
    /// Well-formed but of an `eventType` this version does not know: answered 200 and kept, to be
    /// reprocessed once the parser learns it.
    Unrecognized,
}

impl ReceiptOutcome {
    pub const ALL: [Self; 7] = [
        Self::Received,
        Self::Stored,
        Self::Duplicate,
        Self::Partial,
        Self::Rejected,
        Self::Unauthorized,
        Self::Unrecognized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Partial => "partial",
            Self::Rejected => "rejected",
            Self::Unauthorized => "unauthorized",
            Self::Unrecognized => "unrecognized",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == value)
    }
}

/// A request as received and judged, ready to be kept.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// UUIDv7, assigned on arrival: sorts by arrival, and is the key that makes keeping a
    /// receipt twice (a spool drained again after a crash) change nothing.
    pub id: Uuid,
    pub received_at: OffsetDateTime,
    pub endpoint: &'static str,
    pub method: String,
    pub path: String,
    pub peer_addr: Option<String>,
    /// Relevant headers with secrets removed.
    pub headers: Value,
    pub body: Bytes,
    pub body_truncated: bool,
    pub event_type: Option<String>,
    pub app_key: Option<String>,
    /// X-AKSK `Nonce`, when the header could be read. Unique among valid signatures of an app.
    pub nonce: Option<String>,
    pub signature_verdict: Verdict,
    pub request_id: Option<String>,
    /// `Received` for what the projector is to derive rows from; the final outcome otherwise.
    pub outcome: ReceiptOutcome,
    pub http_status: u16,
    pub error: Option<Value>,
}

/// The endpoint names a receipt can carry, as `&'static str` again after a round trip.
pub fn endpoint_name(name: &str) -> Option<&'static str> {
    ["status", "fee", "events"]
        .into_iter()
        .find(|known| *known == name)
}

/// For fee lists: what happened to its CDRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub total: i32,
    pub stored: i32,
    pub duplicate: i32,
    pub rejected: i32,
}

/// Keeps receipts in one statement and returns the ids it wrote. A receipt not written is
/// either there already (same id) or carries a nonce that a valid receipt of the same app has
/// used: the unique index on (app_key, nonce) decides replays inside this very statement.
pub async fn insert(
    connection: &mut PgConnection,
    receipts: &[&Receipt],
) -> Result<Vec<Uuid>, StoreError> {
    let n = receipts.len();
    let mut id = Vec::with_capacity(n);
    let mut received_at = Vec::with_capacity(n);
    let mut endpoint = Vec::with_capacity(n);
    let mut method = Vec::with_capacity(n);
    let mut path = Vec::with_capacity(n);
    let mut peer_addr = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    let mut body_truncated = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut app_key = Vec::with_capacity(n);
    let mut nonce = Vec::with_capacity(n);
    let mut verdict = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut http_status = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut request_id = Vec::with_capacity(n);
    for receipt in receipts {
        id.push(receipt.id);
        received_at.push(receipt.received_at);
        endpoint.push(receipt.endpoint);
        method.push(pg_text(&receipt.method));
        path.push(pg_text(&receipt.path));
        peer_addr.push(receipt.peer_addr.as_deref());
        headers.push(Json(&receipt.headers));
        body.push(receipt.body.as_ref());
        body_truncated.push(receipt.body_truncated);
        event_type.push(receipt.event_type.as_deref().map(pg_text));
        app_key.push(receipt.app_key.as_deref().map(pg_text));
        nonce.push(receipt.nonce.as_deref().map(pg_text));
        verdict.push(receipt.signature_verdict.as_str());
        outcome.push(receipt.outcome.as_str());
        http_status.push(i16::try_from(receipt.http_status).unwrap_or(i16::MAX));
        error.push(receipt.error.as_ref().map(Json));
        request_id.push(receipt.request_id.as_deref());
    }
    let written = sqlx::query_scalar!(
        "insert into raw_callbacks (id, received_at, endpoint, method, path, peer_addr, headers, body,
             body_truncated, event_type, app_key, nonce, signature_verdict, outcome, http_status, error,
             request_id)
         select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::jsonb[], $8::bytea[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[],
             $14::text[], $15::int2[], $16::jsonb[], $17::text[])
         on conflict do nothing
         returning id",
        &id,
        &received_at,
        &endpoint as _,
        &method as _,
        &path as _,
        &peer_addr as _,
        &headers as _,
        &body as _,
        &body_truncated,
        &event_type as _,
        &app_key as _,
        &nonce as _,
        &verdict as _,
        &outcome as _,
        &http_status,
        &error as _,
        &request_id as _,
    )
    .fetch_all(connection)
    .await?;
    Ok(written)
}

/// Which of `ids` are kept already.
pub async fn existing(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar!("select id from raw_callbacks where id = any($1)", ids)
            .fetch_all(connection)
            .await?,
    )
}

/// A kept receipt as the projector reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeptReceipt {
    pub id: Uuid,
    pub received_at: OffsetDateTime,
    pub body: Vec<u8>,
    pub nonce: Option<String>,
    pub outcome: String,
    pub reprocessed_at: Option<OffsetDateTime>,
    pub method: String,
    pub body_truncated: bool,
    pub signature_verdict: String,
}

const KEPT_COLUMNS: &str = "id, received_at, body, nonce, outcome, reprocessed_at, method, body_truncated, signature_verdict";

/// Locks up to `limit` receipts not projected yet, oldest first, stopping once their bodies
/// reach `max_bytes` (always at least one), so a batch of fee lists stays small in memory.
/// Receipts another projector holds are skipped, not waited for, so replicas share the work
/// without doing it twice; and since this asks for every unprojected receipt rather than those
/// after a cursor, one whose transaction committed late is found all the same.
pub async fn claim_unprojected(
    connection: &mut PgConnection,
    limit: i64,
    max_bytes: i64,
) -> Result<Vec<KeptReceipt>, StoreError> {
    let sql = format!(
        "select {KEPT_COLUMNS} from raw_callbacks
         where outcome = 'received' and id in (
             select id from (
                 select id, coalesce(sum(octet_length(body)) over (
                     order by id rows between unbounded preceding and 1 preceding), 0) as before
                 from raw_callbacks where outcome = 'received' order by id limit $1
             ) as queued
             where before < $2)
         order by id for update skip locked"
    );
    Ok(sqlx::query_as(&sql)
        .bind(limit)
        .bind(max_bytes)
        .fetch_all(connection)
        .await?)
}

/// Locks one receipt, whatever its outcome.
pub async fn lock(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<KeptReceipt>, StoreError> {
    let sql = format!("select {KEPT_COLUMNS} from raw_callbacks where id = $1 for update");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(connection)
        .await?)
}

/// Locks the next receipts of a reprojection: those received in `[from, to)` whose rows were
/// derived (or are to be), after `after`, in id order.
pub async fn lock_projected(
    connection: &mut PgConnection,
    from: OffsetDateTime,
    to: OffsetDateTime,
    after: Uuid,
    limit: i64,
) -> Result<Vec<KeptReceipt>, StoreError> {
    let sql = format!(
        "select {KEPT_COLUMNS} from raw_callbacks
         where received_at >= $1 and received_at < $2 and id > $3
           and (outcome in ('received', 'stored', 'duplicate', 'partial')
                or reprocess_outcome in ('stored', 'duplicate', 'partial'))
         order by id limit $4 for update"
    );
    Ok(sqlx::query_as(&sql)
        .bind(from)
        .bind(to)
        .bind(after)
        .bind(limit)
        .fetch_all(connection)
        .await?)
}

/// What projecting a receipt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    pub id: Uuid,
    pub outcome: ReceiptOutcome,
    pub error: Option<Value>,
    pub records: Option<RecordCounts>,
}

/// Where a projection's outcome is written: a receipt that was acknowledged carries it as its
/// `outcome`; a refused one keeps the outcome it was answered with and records reprocessing
/// beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeColumn {
    Original,
    Reprocess,
}

/// Records the outcomes of projected receipts, one statement for all.
pub async fn set_outcomes(
    connection: &mut PgConnection,
    rows: &[(&Projected, OutcomeColumn)],
) -> Result<(), StoreError> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut reprocess = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let (mut total, mut stored, mut duplicate, mut rejected) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (row, column) in rows {
        id.push(row.id);
        reprocess.push(*column == OutcomeColumn::Reprocess);
        outcome.push(row.outcome.as_str());
        error.push(row.error.as_ref().map(Json));
        total.push(row.records.map(|c| c.total));
        stored.push(row.records.map(|c| c.stored));
        duplicate.push(row.records.map(|c| c.duplicate));
        rejected.push(row.records.map(|c| c.rejected));
    }
    sqlx::query!(
        "update raw_callbacks r set
            outcome = case when u.reprocess then r.outcome else u.outcome end,
            error = case when u.reprocess then r.error else u.error end,
            projected_at = case when u.reprocess then r.projected_at else now() end,
            reprocessed_at = case when u.reprocess then now() else r.reprocessed_at end,
            reprocess_outcome = case when u.reprocess then u.outcome else r.reprocess_outcome end,
            reprocess_error = case when u.reprocess then u.error else r.reprocess_error end,
            records_total = case when u.reprocess then r.records_total else u.total end,
            records_stored = case when u.reprocess then r.records_stored else u.stored end,
            records_duplicate = case when u.reprocess then r.records_duplicate else u.duplicate end,
            records_rejected = case when u.reprocess then r.records_rejected else u.rejected end
         from unnest($1::uuid[], $2::bool[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[],
                     $7::int4[], $8::int4[])
              as u(id, reprocess, outcome, error, total, stored, duplicate, rejected)
         where r.id = u.id",
        &id,
        &reprocess,
        &outcome as _,
        &error as _,
        &total as _,
        &stored as _,
        &duplicate as _,
        &rejected as _,
    )
    .execute(connection)
    .await?;
    Ok(())
}

/// Receipts acknowledged but not projected yet (the `raw_callbacks_unprojected_idx` keeps this
/// cheap however large the table).
pub async fn backlog(connection: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "received!" from raw_callbacks where outcome = 'received'"#
    )
    .fetch_one(connection)
    .await?)
}

/// PostgreSQL text cannot hold NUL. The raw row must always be writable (it is where bad input
/// is kept), so its text columns swap NUL for U+FFFD; the body column keeps the exact bytes.
fn pg_text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        value.replace('\0', "\u{FFFD}").into()
    } else {
        value.into()
    }
}
