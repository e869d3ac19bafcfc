//! `GET /v1/calls.csv` and `GET /v1/cdrs.csv`: the filtered list as CSV, streamed.
//!
//! A task reads the rows one by one from the database (`fetch`, not `fetch_all`) and writes
//! them as CSV into chunks of about `CHUNK_BYTES`, which go to the response body through a
//! channel of `CHANNEL_CHUNKS` slots. Memory is bounded by those chunks whatever the row count:
//! no list of rows is ever collected. When the client reads slowly, the channel fills and the
//! task waits, and so does PostgreSQL; when the client goes away, the task stops at its next
//! send and the transaction is rolled back.
//!
//! Bounds: an export is mounted outside the per-request `TimeoutLayer` (`http.request_timeout_ms`
//! would otherwise cut one whose first row takes long on a big table); its one statement runs
//! under `api.export_statement_timeout_ms` instead of `database.statement_timeout_ms`. At most
//! `api.max_concurrent_exports` run at once, since each holds a pooled connection throughout;
//! one more is answered 503 + Retry-After. A failure after the first bytes were sent cannot
//! become an error status any more: the body is cut off (no final chunk), which every HTTP
//! client reports as an incomplete response, never as a complete CSV.

use std::sync::Arc;

use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderValue, Uri, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, Postgres, QueryBuilder, postgres::PgRow};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{
    auth::ApiCaller,
    params::{
        CallsExportParams, CdrsExportParams, check_call_filter, check_cdr_filter, parse_query,
    },
    view::{mask_call, mask_cdr},
};
use crate::{
    config::TokenScope,
    http::AppState,
    http::error::{ApiError, ErrorBody, Unavailable},
    store::{
        StoreError,
        read::{self, CallRow, CdrRow},
    },
};

/// Flush the CSV to the body once this much is written.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the database reader and the client.
const CHANNEL_CHUNKS: usize = 4;

/// The export slots (`api.max_concurrent_exports`), shared by the export routes.
#[derive(Clone)]
pub struct ExportSlots(pub Arc<Semaphore>);

/// The call log as CSV (same filters as `GET /v1/calls`, no paging), newest first.
#[utoipa::path(
    get,
    path = "/v1/calls.csv",
    tag = "call log",
    params(CallsExportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFC 4180 CSV with a header row; columns as the fields of Call", content_type = "text/csv", body = String),
        (status = 400, description = "A parameter cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "A masked token filtered on `number`, or on `user_data` holding a phone number (`filter_not_allowed`)", body = ErrorBody),
        (status = 503, description = "Too many exports running, or the database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn calls_csv(
    State(state): State<AppState>,
    Extension(slots): Extension<ExportSlots>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params: CallsExportParams = parse_query(&uri)?;
    let filter = params.filter();
    check_call_filter(&caller, &filter)?;
    let query = read::calls_query(&filter, None, None);
    let mask = (caller.scope != TokenScope::Full).then_some(mask_call as fn(&mut CallRow));
    export::<CallRow>(&state, &slots, query, CallRow::COLUMNS, mask, "calls.csv").await
}

/// CDRs as CSV (same filters as `GET /v1/cdrs`, no paging), newest call end first.
#[utoipa::path(
    get,
    path = "/v1/cdrs.csv",
    tag = "CDRs",
    params(CdrsExportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFC 4180 CSV with a header row; columns as the fields of Cdr (JSON columns as JSON text)", content_type = "text/csv", body = String),
        (status = 400, description = "A parameter cannot be used", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "A masked token filtered on `number` (`filter_not_allowed`)", body = ErrorBody),
        (status = 503, description = "Too many exports running, or the database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn cdrs_csv(
    State(state): State<AppState>,
    Extension(slots): Extension<ExportSlots>,
    caller: ApiCaller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params: CdrsExportParams = parse_query(&uri)?;
    let filter = params.filter();
    check_cdr_filter(&caller, &filter)?;
    let query = read::cdrs_query(&filter, None, None);
    let mask = (caller.scope != TokenScope::Full).then_some(mask_cdr as fn(&mut CdrRow));
    export::<CdrRow>(&state, &slots, query, CdrRow::COLUMNS, mask, "cdrs.csv").await
}

/// Starts the reader task and answers once it has read the first row (or the end): a query that
/// fails before any byte is sent is still answered with a proper error status.
async fn export<T>(
    state: &AppState,
    slots: &ExportSlots,
    query: QueryBuilder<'static, Postgres>,
    columns: &'static [&'static str],
    mask: Option<fn(&mut T)>,
    filename: &'static str,
) -> Result<Response, ApiError>
where
    T: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin + 'static,
{
    let permit = slots
        .0
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable(Unavailable::ExportsBusy))?;
    let (sender, mut receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let reader = Reader {
        pool: state.pool.clone(),
        statement_timeout_ms: state.config.api.export_statement_timeout_ms,
        columns,
        mask,
        _permit: permit,
        sender,
    };
    tokio::spawn(reader.run(query));

    let first = match receiver.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(error)) => return Err(error.into()),
        None => return Err(ApiError::internal("the export stopped before it began")),
    };
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .map_err(|error: StoreError| {
        tracing::warn!(%error, "export cut off after it began");
        std::io::Error::other("the export failed")
    });
    let body = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The task that reads the rows and writes the CSV.
struct Reader<T> {
    pool: sqlx::PgPool,
    statement_timeout_ms: u64,
    columns: &'static [&'static str],
    mask: Option<fn(&mut T)>,
    /// Held until the export ends; declared (so dropped) before `sender`, whose drop ends the
    /// body, so a client that has read the whole export finds the slot free again.
    _permit: OwnedSemaphorePermit,
    sender: mpsc::Sender<Result<Bytes, StoreError>>,
}

impl<T> Reader<T>
where
    T: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin + 'static,
{
    async fn run(self, mut query: QueryBuilder<'static, Postgres>) {
        if let Err(error) = self.write(&mut query).await {
            // The receiver may be gone (the client left); then there is nobody to tell.
            let _ = self.sender.send(Err(error)).await;
        }
    }

    /// Ok also when the client went away (sending failed): there is nothing left to do.
    async fn write(&self, query: &mut QueryBuilder<'static, Postgres>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select set_config('statement_timeout', $1, true)")
            .bind(self.statement_timeout_ms.to_string())
            .execute(&mut *tx)
            .await?;
        let mut csv = csv_writer();
        csv.write_record(self.columns).map_err(csv_failed)?;
        let mut rows = query.build_query_as::<T>().fetch(&mut *tx);
        let mut record = Vec::with_capacity(self.columns.len());
        let mut sent_any = false;
        while let Some(mut row) = rows.try_next().await? {
            if let Some(mask) = self.mask {
                mask(&mut row);
            }
            fields(&row, self.columns, &mut record);
            csv.write_record(&record).map_err(csv_failed)?;
            // The first row goes out at once, so the answer starts without waiting for a chunk.
            if !sent_any || csv.get_ref().len() >= CHUNK_BYTES {
                sent_any = true;
                if !self.send(&mut csv).await {
                    return Ok(());
                }
            }
        }
        drop(rows);
        self.send(&mut csv).await;
        tx.commit().await?;
        Ok(())
    }

    /// Sends what is written so far; false when the client has gone away.
    async fn send(&self, csv: &mut csv::Writer<Vec<u8>>) -> bool {
        // Writing into a Vec cannot fail, so neither can flushing it out.
        let chunk = std::mem::replace(csv, csv_writer())
            .into_inner()
            .unwrap_or_default();
        if chunk.is_empty() {
            return true;
        }
        self.sender.send(Ok(Bytes::from(chunk))).await.is_ok()
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(CHUNK_BYTES + 4096))
}

fn csv_failed(error: csv::Error) -> StoreError {
    StoreError::Other(sqlx::Error::Encode(Box::new(error)))
}

/// A row's fields as CSV cells, in `columns` order: text as is, numbers and booleans written
/// out, null as an empty cell, JSON (objects, arrays) as JSON text.
fn fields<T: Serialize>(row: &T, columns: &[&str], record: &mut Vec<String>) {
    record.clear();
    let value = serde_json::to_value(row).unwrap_or(Value::Null);
    for column in columns {
        record.push(match value.get(column) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        });
    }
}
