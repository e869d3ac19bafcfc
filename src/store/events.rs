//! `call_events`: one row per status event.

use serde_json::Map;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, non_empty, read_time};
use crate::platform::callback::StatusEvent;

/// Stores a status event; `false` when the same event was already stored (dedup on the
/// fingerprint's unique constraint, so concurrent redeliveries cannot both insert).
pub async fn insert(
    connection: &mut PgConnection,
    raw_callback_id: Uuid,
    received_at: OffsetDateTime,
    event: &StatusEvent,
) -> Result<bool, StoreError> {
    let info = &event.info;
    let mut unparsed = Map::new();
    let event_at = read_time("timestamp", info.timestamp.as_deref(), &mut unparsed);
    let result = sqlx::query(
        "insert into call_events (raw_callback_id, fingerprint, event_type, session_id, event_at, caller, called,
             user_data, party_type, state_code, state_desc, digit_info, display_caller_num, unparsed_times, extra,
             received_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         on conflict (fingerprint) do nothing",
    )
    .bind(raw_callback_id)
    .bind(&event.fingerprint[..])
    .bind(event.event_type.as_str())
    .bind(&event.session_id)
    .bind(event_at)
    .bind(&info.caller)
    .bind(&info.called)
    .bind(&info.user_data)
    .bind(&info.party_type)
    .bind(info.state_code)
    .bind(&info.state_desc)
    .bind(&info.digit_info)
    .bind(&info.display_caller_num)
    .bind(non_empty(unparsed))
    .bind(non_empty(info.extra.clone()))
    .bind(received_at)
    .execute(connection)
    .await?;
    Ok(result.rows_affected() == 1)
}
