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

pub async fn insert(
    connection: &mut PgConnection,
    raw: &RawCallback,
    outcome: Outcome,
    disposition: &Disposition,
) -> Result<(), StoreError> {
    let counts = disposition.records;
    sqlx::query(
        "insert into raw_callbacks (id, received_at, endpoint, method, path, peer_addr, headers, body,
             body_truncated, event_type, app_key, signature_verdict, outcome, http_status, error,
             records_total, records_stored, records_duplicate, records_rejected, request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(raw.id)
    .bind(raw.received_at)
    .bind(raw.endpoint)
    .bind(&raw.method)
    .bind(pg_text(&raw.path))
    .bind(&raw.peer_addr)
    .bind(Json(&raw.headers))
    .bind(raw.body.as_ref())
    .bind(raw.body_truncated)
    .bind(raw.event_type.as_deref().map(pg_text))
    .bind(raw.app_key.as_deref().map(pg_text))
    .bind(raw.signature_verdict.as_str())
    .bind(outcome.as_str())
    .bind(i16::try_from(disposition.http_status).unwrap_or(i16::MAX))
    .bind(disposition.error.as_ref().map(Json))
    .bind(counts.map(|c| c.total))
    .bind(counts.map(|c| c.stored))
    .bind(counts.map(|c| c.duplicate))
    .bind(counts.map(|c| c.rejected))
    .bind(&raw.request_id)
    .execute(connection)
    .await?;
    Ok(())
}

/// PostgreSQL text cannot hold NUL. The raw row must always be writable (it is where bad input
/// is kept), so its text columns swap NUL for U+FFFD; the body column keeps the exact bytes.
fn pg_text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}
