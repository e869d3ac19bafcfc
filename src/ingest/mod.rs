//! From a received callback to its rows, in two steps. First the receipt: the raw request is
//! kept (group commit into `raw_callbacks`, or the local spool when PostgreSQL cannot take it),
//! and only then answered. Then the projection: typed rows, outcomes and the call log are derived
//! from committed receipts in batches, and can be derived again at any time.

pub mod projector;
pub mod receipts;
pub mod retention;
pub mod spool;

pub use self::{
    projector::{NotReprocessable, Reprocessed, Reprojected, reprocess, reprocess_all, reproject},
    receipts::{Durability, KeptIn, NotKept, OnReplay, ReceiptWriter},
};

use serde_json::{Value, json};

use crate::{
    platform::callback::{FeeBatch, RecordError, WireError},
    store::raw::{ReceiptOutcome, RecordCounts},
};

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

/// A fee list's outcome, error and counts once `stored` of its CDRs were new.
fn fee_disposition(
    batch: &FeeBatch,
    stored: u64,
) -> (ReceiptOutcome, Option<Value>, Option<RecordCounts>) {
    let valid = batch.records.len() as u64;
    let counts = RecordCounts {
        total: count(batch.total() as u64),
        stored: count(stored),
        duplicate: count(valid - stored),
        rejected: count(batch.rejected.len() as u64),
    };
    let outcome = if !batch.rejected.is_empty() {
        ReceiptOutcome::Partial
    } else if stored > 0 {
        ReceiptOutcome::Stored
    } else {
        ReceiptOutcome::Duplicate
    };
    let error = (!batch.rejected.is_empty()).then(|| {
        json!({
            "code": "invalid_records",
            "message": format!("{} of {} CDRs could not be read; the others were stored", counts.rejected, counts.total),
            "field": "feeLst",
            "records": record_errors(&batch.rejected),
        })
    });
    (outcome, error, Some(counts))
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
