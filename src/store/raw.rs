//! `raw_callbacks`: every request as received, with what became of it.

use bytes::Bytes;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::platform::signature::Verdict;

/// What became of a request. Stored as `raw_callbacks.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Partial => "partial",
            Self::Rejected => "rejected",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct RawCallback {
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
    pub signature_verdict: Verdict,
    pub request_id: Option<String>,
}

/// How the request was answered.
#[derive(Debug, Clone, Default)]
pub struct Disposition {
    pub http_status: u16,
    pub error: Option<Value>,
    pub records: Option<RecordCounts>,
}

/// For fee lists: what happened to its CDRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub total: i32,
    pub stored: i32,
    pub duplicate: i32,
    pub rejected: i32,
}

/// A request to record, with what became of it.
pub struct NewRaw<'a> {
    pub raw: &'a RawCallback,
    /// The signature verdict to record (a replay is only known once the nonce is stored).
    pub verdict: Verdict,
    pub outcome: Outcome,
    pub disposition: &'a Disposition,
}

/// Records requests in one statement.
pub async fn insert(connection: &mut PgConnection, rows: &[NewRaw<'_>]) -> Result<(), StoreError> {
    let n = rows.len();
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
    let mut verdict = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut http_status = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let (mut total, mut stored, mut duplicate, mut rejected) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut request_id = Vec::with_capacity(n);
    for row in rows {
        let raw = row.raw;
        let counts = row.disposition.records;
        id.push(raw.id);
        received_at.push(raw.received_at);
        endpoint.push(raw.endpoint);
        method.push(raw.method.as_str());
        path.push(pg_text(&raw.path));
        peer_addr.push(raw.peer_addr.as_deref());
        headers.push(Json(&raw.headers));
        body.push(raw.body.as_ref());
        body_truncated.push(raw.body_truncated);
        event_type.push(raw.event_type.as_deref().map(pg_text));
        app_key.push(raw.app_key.as_deref().map(pg_text));
        verdict.push(row.verdict.as_str());
        outcome.push(row.outcome.as_str());
        http_status.push(i16::try_from(row.disposition.http_status).unwrap_or(i16::MAX));
        error.push(row.disposition.error.as_ref().map(Json));
        total.push(counts.map(|c| c.total));
        stored.push(counts.map(|c| c.stored));
        duplicate.push(counts.map(|c| c.duplicate));
        rejected.push(counts.map(|c| c.rejected));
        request_id.push(raw.request_id.as_deref());
    }
    sqlx::query(
        "insert into raw_callbacks (id, received_at, endpoint, method, path, peer_addr, headers, body,
             body_truncated, event_type, app_key, signature_verdict, outcome, http_status, error,
             records_total, records_stored, records_duplicate, records_rejected, request_id)
         select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::jsonb[], $8::bytea[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int2[],
             $15::jsonb[], $16::int4[], $17::int4[], $18::int4[], $19::int4[], $20::text[])",
    )
    .bind(id)
    .bind(received_at)
    .bind(endpoint)
    .bind(method)
    .bind(path)
    .bind(peer_addr)
    .bind(headers)
    .bind(body)
    .bind(body_truncated)
    .bind(event_type)
    .bind(app_key)
    .bind(verdict)
    .bind(outcome)
    .bind(http_status)
    .bind(error)
    .bind(total)
    .bind(stored)
    .bind(duplicate)
    .bind(rejected)
    .bind(request_id)
    .execute(connection)
    .await?;
    Ok(())
}

/// PostgreSQL text cannot hold NUL. The raw row must always be writable (it is where bad input
/// is kept), so its text columns swap NUL for U+FFFD; the body column keeps the exact bytes.
fn pg_text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}
