//! `raw_callbacks`: the receipts. Every request that reached a callback endpoint, exactly as
//! received, with what became of it. A receipt is what callhook acknowledges; the typed rows and
//! the call log are projected from it later (see `ingest::projector`).

use std::{borrow::Cow, sync::LazyLock};

use bytes::Bytes;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    StoreError,
    table::{self, columns, table},
};
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

table! {
    /// A `raw_callbacks` row as stored, body bytes included: the receipt as it was written, then
    /// what became of it (the outcome columns the projector and reprocessing set).
    #[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
    pub struct RawRow {
        pub id: Uuid as Uuid = |r| r.id,
        pub received_at: OffsetDateTime as OffsetDateTime = |r| r.received_at,
        pub endpoint: String as &'static str = |r| r.endpoint,
        pub method: String as Cow<'a, str> = |r| pg_text(&r.method),
        pub path: String as Cow<'a, str> = |r| pg_text(&r.path),
        pub peer_addr: Option<String> as Option<&'a str> = |r| r.peer_addr.as_deref(),
        pub headers: Value as Json<&'a Value> = |r| Json(&r.headers),
        pub body: Vec<u8> as &'a [u8] = |r| r.body.as_ref(),
        pub body_truncated: bool as bool = |r| r.body_truncated,
        pub event_type: Option<String> as Option<Cow<'a, str>>
            = |r| r.event_type.as_deref().map(pg_text),
        pub app_key: Option<String> as Option<Cow<'a, str>>
            = |r| r.app_key.as_deref().map(pg_text),
        pub signature_verdict: String as &'static str = |r| r.signature_verdict.as_str(),
        pub outcome: String as &'static str = |r| r.outcome.as_str(),
        pub http_status: i16 as i16 = |r| i16::try_from(r.http_status).unwrap_or(i16::MAX),
        pub error: Option<Value> as Option<Json<&'a Value>> = |r| r.error.as_ref().map(Json),
        pub records_total: Option<i32>,
        pub records_stored: Option<i32>,
        pub records_duplicate: Option<i32>,
        pub records_rejected: Option<i32>,
        pub request_id: Option<String> as Option<&'a str> = |r| r.request_id.as_deref(),
        pub reprocessed_at: Option<OffsetDateTime>,
        pub reprocess_outcome: Option<String>,
        pub reprocess_error: Option<Value>,
    }
    written from &'a Receipt as Arrays<'a> {
        nonce as Option<Cow<'a, str>> = |r| r.nonce.as_deref().map(pg_text),
    }
}

impl RawRow {
    pub fn sort_key(&self) -> (OffsetDateTime, Uuid) {
        (self.received_at, self.id)
    }
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
    let mut arrays = Arrays::with_capacity(receipts.len());
    for receipt in receipts {
        arrays.push(receipt);
    }
    let arguments = arrays.into_arguments().map_err(table::encode_failed)?;
    Ok(sqlx::query_scalar_with(&INSERT, arguments)
        .fetch_all(connection)
        .await?)
}

/// `insert into raw_callbacks (…) select … from unnest(…)`; a receipt kept already (same id) or
/// replaying a nonce is skipped.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let written = Arrays::written();
    format!(
        "insert into raw_callbacks ({}) select {} from {} on conflict do nothing returning id",
        table::names(&written),
        table::names(&written),
        table::unnest(&written),
    )
});

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

columns! {
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
}

static KEPT_COLUMNS: LazyLock<String> = LazyLock::new(|| KeptReceipt::COLUMNS.join(", "));

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
        "select {} from raw_callbacks
         where outcome = 'received' and id in (
             select id from (
                 select id, coalesce(sum(octet_length(body)) over (
                     order by id rows between unbounded preceding and 1 preceding), 0) as before
                 from raw_callbacks where outcome = 'received' order by id limit $1
             ) as queued
             where before < $2)
         order by id for update skip locked",
        *KEPT_COLUMNS
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
    let sql = format!(
        "select {} from raw_callbacks where id = $1 for update",
        *KEPT_COLUMNS
    );
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
        "select {} from raw_callbacks
         where received_at >= $1 and received_at < $2 and id > $3
           and (outcome in ('received', 'stored', 'duplicate', 'partial')
                or reprocess_outcome in ('stored', 'duplicate', 'partial'))
         order by id limit $4 for update",
        *KEPT_COLUMNS
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
fn pg_text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        value.replace('\0', "\u{FFFD}").into()
    } else {
        value.into()
    }
}
