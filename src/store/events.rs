//! `call_events`: one row per status event.

use serde_json::Map;
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, non_empty, read_time};
use crate::platform::callback::StatusEvent;

/// One event to store, with the request that brought it.
pub struct NewEvent<'a> {
    pub raw_callback_id: Uuid,
    pub received_at: OffsetDateTime,
    pub event: &'a StatusEvent,
}

/// Stores events in one statement; returns the fingerprints that were new. A redelivered event
/// hits the fingerprint's unique constraint and is skipped, so concurrent redeliveries cannot
/// both insert. Rows go in fingerprint order, so two writers never wait on each other in a cycle.
pub async fn insert(
    connection: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut order: Vec<&NewEvent<'_>> = events.iter().collect();
    order.sort_by_key(|new| new.event.fingerprint);
    let n = order.len();
    let (mut raw_id, mut fingerprint, mut event_type, mut session_id, mut event_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut caller, mut called, mut user_data, mut party_type, mut state_code) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (
        mut state_desc,
        mut digit_info,
        mut display_caller_num,
        mut unparsed_times,
        mut extra,
        mut received_at,
    ) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for new in order {
        let info = &new.event.info;
        let mut unparsed = Map::new();
        event_at.push(read_time(
            "timestamp",
            info.timestamp.as_deref(),
            &mut unparsed,
        ));
        unparsed_times.push(non_empty(unparsed));
        raw_id.push(new.raw_callback_id);
        fingerprint.push(&new.event.fingerprint[..]);
        event_type.push(new.event.event_type.as_str());
        session_id.push(new.event.session_id.as_str());
        caller.push(info.caller.as_deref());
        called.push(info.called.as_deref());
        user_data.push(info.user_data.as_deref());
        party_type.push(info.party_type.as_deref());
        state_code.push(info.state_code);
        state_desc.push(info.state_desc.as_deref());
        digit_info.push(info.digit_info.as_deref());
        display_caller_num.push(info.display_caller_num.as_deref());
        extra.push((!info.extra.is_empty()).then_some(Json(&info.extra)));
        received_at.push(new.received_at);
    }
    let inserted = sqlx::query_scalar(
        "insert into call_events (raw_callback_id, fingerprint, event_type, session_id, event_at, caller, called,
             user_data, party_type, state_code, state_desc, digit_info, display_caller_num, unparsed_times, extra,
             received_at)
         select * from unnest($1::uuid[], $2::bytea[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::int4[], $11::text[], $12::text[], $13::text[], $14::jsonb[],
             $15::jsonb[], $16::timestamptz[])
         on conflict (fingerprint) do nothing
         returning fingerprint",
    )
    .bind(raw_id)
    .bind(fingerprint)
    .bind(event_type)
    .bind(session_id)
    .bind(event_at)
    .bind(caller)
    .bind(called)
    .bind(user_data)
    .bind(party_type)
    .bind(state_code)
    .bind(state_desc)
    .bind(digit_info)
    .bind(display_caller_num)
    .bind(unparsed_times)
    .bind(extra)
    .bind(received_at)
    .fetch_all(connection)
    .await?;
    Ok(inserted)
}
