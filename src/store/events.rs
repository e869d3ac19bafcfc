//! `call_events`: one row per status event, its columns defined once ([`EventRow`]).

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    StoreError, TimeReader,
    table::{self, table},
};
use crate::platform::callback::StatusEvent;

table! {
    /// A `call_events` row, without the fingerprint (an internal dedup key).
    #[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
    #[schema(as = CallEvent)]
    pub struct EventRow {
        pub id: i64,
        pub raw_callback_id: Uuid as Uuid = |e| e.new.raw_callback_id,
        /// callout, alerting, answer, collectInfo or disconnect.
        pub event_type: String as &'a str = |e| e.new.event.event_type.as_str(),
        pub session_id: String as &'a str = |e| e.new.event.session_id.as_str(),
        #[serde(with = "time::serde::rfc3339::option")]
        pub event_at: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |e| e.times.read("timestamp", &e.new.event.info.timestamp),
        pub caller: Option<String> as Option<&'a str> = |e| e.new.event.info.caller.as_deref(),
        pub called: Option<String> as Option<&'a str> = |e| e.new.event.info.called.as_deref(),
        pub user_data: Option<String> as Option<&'a str>
            = |e| e.new.event.info.user_data.as_deref(),
        pub party_type: Option<String> as Option<&'a str>
            = |e| e.new.event.info.party_type.as_deref(),
        pub state_code: Option<i32> as Option<i32> = |e| e.new.event.info.state_code,
        pub state_desc: Option<String> as Option<&'a str>
            = |e| e.new.event.info.state_desc.as_deref(),
        pub digit_info: Option<String> as Option<&'a str>
            = |e| e.new.event.info.digit_info.as_deref(),
        pub display_caller_num: Option<String> as Option<&'a str>
            = |e| e.new.event.info.display_caller_num.as_deref(),
        /// Time fields that were present but unreadable, `{"<wire name>": "<raw>"}`. Taken
        /// after the time fields above, which gather them.
        pub unparsed_times: Option<Value> as Option<Json<Map<String, Value>>>
            = |e| e.times.unparsed(),
        /// Fields the spec does not list, as received.
        pub extra: Option<Value> as Option<Json<&'a Map<String, Value>>>
            = |e| (!e.new.event.info.extra.is_empty()).then_some(Json(&e.new.event.info.extra)),
        #[serde(with = "time::serde::rfc3339")]
        pub received_at: OffsetDateTime as OffsetDateTime = |e| e.new.received_at,
    }
    written from Prepared<'a> as Arrays<'a> {
        fingerprint as &'a [u8] = |e| &e.new.event.fingerprint[..],
    }
}

/// An event on its way into the arrays; its unreadable time is gathered for `unparsed_times`.
struct Prepared<'a> {
    new: &'a NewEvent<'a>,
    times: TimeReader,
}

/// `insert into call_events (…) select … from unnest(…)`, skipping redelivered events.
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    let written = Arrays::written();
    format!(
        "insert into call_events ({}) select {} from {}
         on conflict (fingerprint) do nothing
         returning id, fingerprint",
        table::names(&written),
        table::names(&written),
        table::unnest(&written),
    )
});

/// One event to store, with the request that brought it.
pub struct NewEvent<'a> {
    pub raw_callback_id: Uuid,
    pub received_at: OffsetDateTime,
    pub event: &'a StatusEvent,
}

/// Stores events in one statement; returns the (id, fingerprint) of those that were new. A
/// redelivered event hits the fingerprint's unique constraint and is skipped, so concurrent
/// redeliveries cannot both insert. Rows go in fingerprint order, so two writers never wait on
/// each other in a cycle; of two equal events in `events`, the first is the one stored.
pub async fn insert(
    connection: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let mut order: Vec<&NewEvent<'_>> = events.iter().collect();
    order.sort_by_key(|new| new.event.fingerprint);
    let mut arrays = Arrays::with_capacity(order.len());
    for new in order {
        arrays.push(&Prepared {
            new,
            times: TimeReader::default(),
        });
    }
    let arguments = arrays.into_arguments().map_err(table::encode_failed)?;
    let inserted = sqlx::query_as_with(&INSERT_EVENTS, arguments)
        .fetch_all(connection)
        .await?;
    Ok(inserted)
}
