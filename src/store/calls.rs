//! `calls`: keeps each call's row current. Every writer that adds a fact about a call (a status
//! event, a CDR, a placed call) calls `refresh` in its own transaction, so the row commits with
//! the fact.
//!
//! Change marking (the live stream, `crate::stream`): the upsert stamps each row it writes with
//! its transaction's id (`change_xid = pg_current_xact_id()`) and, in the same statement, queues a
//! NOTIFY on [`CHANGES_CHANNEL`], which PostgreSQL sends exactly when the transaction commits (and
//! never if it rolls back). The stamp is one more 8-byte column in the row version the upsert
//! writes anyway, not a second write. Readers ([`changed_after`]) take the rows stamped below
//! their snapshot's horizon; docs/stream.md shows why that never skips a change.
//!
//! Facts: the caller hands over what it has just stored in its transaction (`Held`), and only
//! the call's other facts are read; a test recomputes every row from the stored facts alone and
//! finds the same rows.
//!
//! Concurrency: the affected calls are locked first, and only then are the facts read. Under
//! READ COMMITTED each statement sees what committed before it, so the writer that waited sees
//! the other's facts and its recomputation includes them. The locks are transaction-scoped
//! advisory locks on a hash of the sessionId, not row locks: a call that has no row yet can be
//! locked too, and locking writes nothing (locking by upsert cost every call a second row
//! version in ten indexes). They are taken in key order, so two writers cannot deadlock, even
//! when two sessionIds share a hash.

use std::{collections::HashMap, sync::LazyLock};

use serde::Serialize;
use sqlx::{Arguments as _, PgConnection, PgExecutor, Row, types::Uuid};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{
    StoreError,
    table::{self, table},
};
use crate::{
    calls::{CallRecord, CdrFact, EventFact, PlacedFact, project},
    kpis,
};

table! {
    /// A `calls` row (column meanings: `\d+ calls`). Phone numbers are as stored; the HTTP layer
    /// masks them for tokens without the `full` scope.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
    #[schema(as = Call)]
    pub struct CallRow {
        pub session_id: String as &'a str = |r| r.session_id.as_str(),
        /// click2call, notify, verify, playback or unknown.
        pub scenario: String as &'static str = |r| r.scenario,
        pub app_key: Option<String> as Option<&'a str> = |r| r.app_key.as_deref(),
        pub caller: Option<String> as Option<&'a str> = |r| r.caller.as_deref(),
        pub callee: Option<String> as Option<&'a str> = |r| r.callee.as_deref(),
        pub display_number: Option<String> as Option<&'a str> = |r| r.display_number.as_deref(),
        pub user_data: Option<String> as Option<&'a str> = |r| r.user_data.as_deref(),
        pub placed_call_id: Option<Uuid> as Option<Uuid> = |r| r.placed_call_id,
        #[serde(with = "time::serde::rfc3339::option")]
        pub a_callout_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.a.callout_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub a_alerting_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.a.alerting_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub a_answer_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.a.answer_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub a_disconnect_at: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |r| r.a.disconnect_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub b_callout_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.b.callout_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub b_alerting_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.b.alerting_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub b_answer_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.b.answer_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub b_disconnect_at: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |r| r.b.disconnect_at,
        pub digits: Option<String> as Option<&'a str> = |r| r.digits.as_deref(),
        #[serde(with = "time::serde::rfc3339::option")]
        pub started_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.started_at,
        #[serde(with = "time::serde::rfc3339::option")]
        pub ended_at: Option<OffsetDateTime> as Option<OffsetDateTime> = |r| r.ended_at,
        pub ring_seconds: Option<i32> as Option<i32> = |r| r.ring_seconds,
        pub talk_seconds: Option<i32> as Option<i32> = |r| r.talk_seconds,
        /// in_progress, answered, no_answer, busy, rejected, caller_hung_up or failed.
        pub outcome: String as &'static str = |r| r.outcome,
        pub state_code: Option<i32> as Option<i32> = |r| r.state_code,
        pub state_meaning: Option<String> as Option<&'static str> = |r| r.state_meaning,
        pub party_type: Option<String> as Option<&'a str> = |r| r.party_type.as_deref(),
        pub q850_cause: Option<i32> as Option<i32> = |r| r.q850_cause,
        pub q850_meaning: Option<String> as Option<&'static str> = |r| r.q850_meaning,
        pub ul_fail_reason: Option<i32> as Option<i32> = |r| r.ul_fail_reason,
        pub ul_fail_meaning: Option<String> as Option<&'static str> = |r| r.ul_fail_meaning,
        pub sip_status_code: Option<i32> as Option<i32> = |r| r.sip_status_code,
        pub record_flag: Option<i32> as Option<i32> = |r| r.record_flag,
        pub record_object_name: Option<String> as Option<&'a str>
            = |r| r.record_object_name.as_deref(),
        pub record_domain: Option<String> as Option<&'a str> = |r| r.record_domain.as_deref(),
        pub record_file_download_url: Option<String> as Option<&'a str>
            = |r| r.record_file_download_url.as_deref(),
        pub has_cdr: bool as bool = |r| r.has_cdr,
        pub events: i32 as i32 = |r| r.events,
        #[serde(with = "time::serde::rfc3339")]
        pub last_callback_at: OffsetDateTime as Option<OffsetDateTime> = |r| r.last_callback_at,
        #[serde(with = "time::serde::rfc3339")]
        pub updated_at: OffsetDateTime,
    }
    written from &'a CallRecord as Arrays<'a> {
        // As array literals (`{0,3,1}`): an array of arrays cannot be unnested row by row.
        callback_delay_counts as Option<String>
            = |r| r.callback_delay_counts.as_ref().map(|counts| {
                let counts: Vec<String> = counts.iter().map(i32::to_string).collect();
                format!("{{{}}}", counts.join(","))
            }),
    }
}

impl CallRow {
    /// This row's position in the list order.
    pub fn sort_key(&self) -> (OffsetDateTime, String) {
        (
            self.started_at.unwrap_or(self.last_callback_at),
            self.session_id.clone(),
        )
    }
}

/// The NOTIFY channel of committed changes to `calls`. A notification carries no payload: it
/// only says "look", and readers look with [`changed_after`].
pub const CHANGES_CHANNEL: &str = "callhook_calls_changed";

/// Everything known about one call, fetched in one statement: its events as parallel arrays,
/// its CDR and its placed call as nullable columns.
#[derive(sqlx::FromRow)]
struct Facts {
    session_id: String,
    event_type: Option<Vec<String>>,
    event_at: Option<Vec<Option<OffsetDateTime>>>,
    event_caller: Option<Vec<Option<String>>>,
    event_called: Option<Vec<Option<String>>>,
    event_user_data: Option<Vec<Option<String>>>,
    party_type: Option<Vec<Option<String>>>,
    state_code: Option<Vec<Option<i32>>>,
    digit_info: Option<Vec<Option<String>>>,
    fingerprint: Option<Vec<Vec<u8>>>,
    event_received_at: Option<Vec<OffsetDateTime>>,
    cdr_id: Option<i64>,
    cdr_received_at: Option<OffsetDateTime>,
    app_key: Option<String>,
    bind_num: Option<String>,
    caller_num: Option<String>,
    callee_num: Option<String>,
    fwd_dst_num: Option<String>,
    cdr_user_data: Option<String>,
    service_type: Option<String>,
    call_out_start_time: Option<OffsetDateTime>,
    call_out_alerting_time: Option<OffsetDateTime>,
    call_out_answer_time: Option<OffsetDateTime>,
    fwd_alerting_time: Option<OffsetDateTime>,
    fwd_answer_time: Option<OffsetDateTime>,
    call_end_time: Option<OffsetDateTime>,
    call_out_unasw_rsn: Option<i32>,
    fwd_unasw_rsn: Option<i32>,
    ul_fail_reason: Option<i32>,
    sip_status_code: Option<i32>,
    record_flag: Option<i32>,
    record_object_name: Option<String>,
    record_domain: Option<String>,
    record_file_download_url: Option<String>,
    placed_id: Option<Uuid>,
    placed_operation: Option<String>,
    placed_app_key: Option<String>,
    placed_caller_nbr: Option<String>,
    placed_callee_nbr: Option<String>,
    placed_display_nbr: Option<String>,
    placed_user_data: Option<String>,
    placed_requested_at: Option<OffsetDateTime>,
    previous_outcome: Option<String>,
}

// One CDR per call (spec §1.4); should a session ever carry more, the latest end wins (and
// `best_cdr` applies the same order to what the projection holds). The rows the projection has
// just stored ($2: events, $3: CDRs) are not read back: it holds them (`Held`).
const FETCH_FACTS: &str = "
select s as session_id,
       e.event_type, e.event_at, e.event_caller, e.event_called, e.event_user_data, e.party_type,
       e.state_code, e.digit_info, e.fingerprint, e.event_received_at,
       c.id as cdr_id, c.received_at as cdr_received_at, c.app_key, c.bind_num, c.caller_num, c.callee_num, c.fwd_dst_num,
       c.user_data as cdr_user_data, c.service_type, c.call_out_start_time, c.call_out_alerting_time,
       c.call_out_answer_time, c.fwd_alerting_time, c.fwd_answer_time, c.call_end_time, c.call_out_unasw_rsn,
       c.fwd_unasw_rsn, c.ul_fail_reason, c.sip_status_code, c.record_flag, c.record_object_name,
       c.record_domain, c.record_file_download_url,
       p.id as placed_id, p.operation as placed_operation, p.app_key as placed_app_key,
       p.request->>'callerNbr' as placed_caller_nbr, p.request->>'calleeNbr' as placed_callee_nbr,
       p.request->>'displayNbr' as placed_display_nbr, p.user_data as placed_user_data,
       p.requested_at as placed_requested_at,
       k.outcome as previous_outcome
from unnest($1::text[]) as s
left join calls k on k.session_id = s
left join lateral (
    select array_agg(event_type) as event_type, array_agg(event_at) as event_at, array_agg(caller) as event_caller,
           array_agg(called) as event_called, array_agg(user_data) as event_user_data,
           array_agg(party_type) as party_type, array_agg(state_code) as state_code,
           array_agg(digit_info) as digit_info, array_agg(fingerprint) as fingerprint,
           array_agg(received_at) as event_received_at
    from call_events where session_id = s and id <> all($2::int8[])
) e on true
left join lateral (
    select * from cdrs where session_id = s and id <> all($3::int8[])
    order by call_end_time desc nulls last, id limit 1
) c on true
left join lateral (
    select * from placed_calls
    where session_id = s and outcome = 'accepted' and operation in ('click2call', 'notify', 'verify')
    order by requested_at limit 1
) p on true";

impl Facts {
    fn events(&mut self) -> Vec<EventFact> {
        let types = self.event_type.take().unwrap_or_default();
        let mut at = self.event_at.take().unwrap_or_default().into_iter();
        let mut caller = self.event_caller.take().unwrap_or_default().into_iter();
        let mut called = self.event_called.take().unwrap_or_default().into_iter();
        let mut user_data = self.event_user_data.take().unwrap_or_default().into_iter();
        let mut party_type = self.party_type.take().unwrap_or_default().into_iter();
        let mut state_code = self.state_code.take().unwrap_or_default().into_iter();
        let mut digit_info = self.digit_info.take().unwrap_or_default().into_iter();
        let mut fingerprint = self.fingerprint.take().unwrap_or_default().into_iter();
        let mut received_at = self
            .event_received_at
            .take()
            .unwrap_or_default()
            .into_iter();
        types
            .into_iter()
            .map(|event_type| EventFact {
                event_type,
                event_at: at.next().flatten(),
                caller: caller.next().flatten(),
                called: called.next().flatten(),
                user_data: user_data.next().flatten(),
                party_type: party_type.next().flatten(),
                state_code: state_code.next().flatten(),
                digit_info: digit_info.next().flatten(),
                fingerprint: fingerprint.next().unwrap_or_default(),
                received_at: received_at.next().unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
            .collect()
    }

    fn cdr(&mut self) -> Option<CdrFact> {
        Some(CdrFact {
            received_at: self.cdr_received_at?,
            app_key: self.app_key.take(),
            bind_num: self.bind_num.take(),
            caller_num: self.caller_num.take(),
            callee_num: self.callee_num.take(),
            fwd_dst_num: self.fwd_dst_num.take(),
            user_data: self.cdr_user_data.take(),
            service_type: self.service_type.take(),
            call_out_start_time: self.call_out_start_time,
            call_out_alerting_time: self.call_out_alerting_time,
            call_out_answer_time: self.call_out_answer_time,
            fwd_alerting_time: self.fwd_alerting_time,
            fwd_answer_time: self.fwd_answer_time,
            call_end_time: self.call_end_time,
            call_out_unasw_rsn: self.call_out_unasw_rsn,
            fwd_unasw_rsn: self.fwd_unasw_rsn,
            ul_fail_reason: self.ul_fail_reason,
            sip_status_code: self.sip_status_code,
            record_flag: self.record_flag,
            record_object_name: self.record_object_name.take(),
            record_domain: self.record_domain.take(),
            record_file_download_url: self.record_file_download_url.take(),
        })
    }

    fn placed(&mut self) -> Option<PlacedFact> {
        Some(PlacedFact {
            id: self.placed_id?,
            operation: self.placed_operation.take()?,
            app_key: self.placed_app_key.take()?,
            caller_nbr: self.placed_caller_nbr.take(),
            callee_nbr: self.placed_callee_nbr.take(),
            display_nbr: self.placed_display_nbr.take(),
            user_data: self.placed_user_data.take(),
            requested_at: self.placed_requested_at?,
        })
    }
}

/// The first key of the advisory locks on calls (`pg_advisory_xact_lock(int, int)`), so they
/// cannot meet locks that other software takes in the same database.
const CALL_LOCK_SPACE: i32 = 0x0ca1_1100;

/// Calls are locked by bucket of their sessionId's hash, not one lock each: a projection batch
/// of fee lists touches thousands of calls, and one advisory lock per call ran PostgreSQL's lock
/// table (max_locks_per_transaction × max_connections) out of shared memory. Two writers of
/// different calls in one bucket wait for each other; that costs little, and is still correct.
const CALL_LOCK_BUCKETS: i32 = 512;

/// A call's row as `refresh` wrote it, with the outcome its row had before (none: it had no
/// row).
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub record: CallRecord,
    pub previous_outcome: Option<String>,
}

/// What the call metrics take from a projection's `refresh`: the calls it ended.
pub fn ended(refreshed: &[Refreshed]) -> kpis::Observations {
    kpis::Observations {
        ended: refreshed
            .iter()
            .filter(|call| call.ended_now())
            .map(|call| call.record.ended_call())
            .collect(),
        callback_delays: Vec::new(),
    }
}

impl Refreshed {
    /// Whether this refresh ended the call: its row went from in progress (or none) to ended.
    /// Read under the call's lock, so of concurrent writers exactly one sees the change.
    pub fn ended_now(&self) -> bool {
        self.record.outcome != kpis::IN_PROGRESS
            && self
                .previous_outcome
                .as_deref()
                .is_none_or(|was| was == kpis::IN_PROGRESS)
    }
}

/// Facts the caller has just stored in this transaction, as they were stored: `refresh` takes
/// them as they are instead of reading them back. Each is `(row id, session_id, fact)`.
#[derive(Debug, Default)]
pub struct Held {
    pub events: Vec<(i64, String, EventFact)>,
    pub cdrs: Vec<(i64, String, CdrFact)>,
}

/// Of a call's CDRs `(row id, fact)`, the one its row is computed from: the latest end (an
/// unknown end last), then the lowest id, the order of `FETCH_FACTS`.
fn best_cdr(cdrs: impl IntoIterator<Item = (i64, CdrFact)>) -> Option<CdrFact> {
    cdrs.into_iter()
        .min_by_key(|(id, cdr)| {
            (
                cdr.call_end_time.is_none(),
                std::cmp::Reverse(cdr.call_end_time),
                *id,
            )
        })
        .map(|(_, cdr)| cdr)
}

/// Recomputes the `calls` rows of `sessions` from everything stored about them, `held` facts
/// included: three statements however many calls. Returns the rows written.
pub async fn refresh(
    connection: &mut PgConnection,
    sessions: &[String],
    held: Held,
) -> Result<Vec<Refreshed>, StoreError> {
    let mut sessions: Vec<&str> = sessions.iter().map(String::as_str).collect();
    sessions.sort_unstable();
    sessions.dedup();
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query!(
        "select pg_advisory_xact_lock($1, k)
         from (select distinct abs(hashtext(s) % $3) as k from unnest($2::text[]) as s) as keys
         order by k",
        CALL_LOCK_SPACE,
        &sessions as &[&str],
        CALL_LOCK_BUCKETS,
    )
    .execute(&mut *connection)
    .await?;
    let held_event_ids: Vec<i64> = held.events.iter().map(|(id, _, _)| *id).collect();
    let held_cdr_ids: Vec<i64> = held.cdrs.iter().map(|(id, _, _)| *id).collect();
    let facts: Vec<Facts> = sqlx::query_as(FETCH_FACTS)
        .bind(&sessions)
        .bind(&held_event_ids)
        .bind(&held_cdr_ids)
        .fetch_all(&mut *connection)
        .await?;
    let mut held_events: HashMap<String, Vec<EventFact>> = HashMap::new();
    for (_, session_id, event) in held.events {
        held_events.entry(session_id).or_default().push(event);
    }
    let mut held_cdrs: HashMap<String, Vec<(i64, CdrFact)>> = HashMap::new();
    for (id, session_id, cdr) in held.cdrs {
        held_cdrs.entry(session_id).or_default().push((id, cdr));
    }
    let refreshed: Vec<Refreshed> = facts
        .into_iter()
        .map(|mut facts| {
            let mut events = facts.events();
            events.extend(held_events.remove(&facts.session_id).unwrap_or_default());
            let stored_cdr = facts.cdr_id.zip(facts.cdr());
            let cdr = best_cdr(
                stored_cdr
                    .into_iter()
                    .chain(held_cdrs.remove(&facts.session_id).unwrap_or_default()),
            );
            let placed = facts.placed();
            Refreshed {
                record: project(&facts.session_id, &events, cdr.as_ref(), placed.as_ref()),
                previous_outcome: facts.previous_outcome.take(),
            }
        })
        .collect();
    write(connection, &refreshed).await?;
    Ok(refreshed)
}

/// The upsert of `calls` rows: one row version per call, whose conflict check is the primary
/// key's index lookup (an UPDATE … FROM unnest() join is planned, and a plan cached while the
/// table was empty scanned the whole table for every group). A call without callbacks yet
/// (placed only) keeps its last_callback_at: the time its row was made. The NOTIFY rides in the
/// same statement (no extra round trip) and is sent when the transaction commits.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let written = Arrays::written();
    let select: Vec<String> = written
        .iter()
        .map(|(name, _)| match *name {
            "last_callback_at" => "coalesce(last_callback_at, now())".to_owned(),
            "callback_delay_counts" => "callback_delay_counts::int4[]".to_owned(),
            name => name.to_owned(),
        })
        .collect();
    let update: Vec<String> = written
        .iter()
        .filter(|(name, _)| *name != "session_id")
        .map(|(name, _)| match *name {
            "last_callback_at" => "last_callback_at = case when excluded.events = 0 and not \
                                   excluded.has_cdr then calls.last_callback_at else \
                                   excluded.last_callback_at end"
                .to_owned(),
            name => format!("{name} = excluded.{name}"),
        })
        .collect();
    format!(
        "with written as (
             insert into calls ({}, updated_at, change_xid)
             select {}, now(), pg_current_xact_id() from {}
             on conflict (session_id) do update set {},
                 updated_at = excluded.updated_at, change_xid = excluded.change_xid
         )
         select pg_notify(${}, '')",
        table::names(&written),
        select.join(", "),
        table::unnest(&written),
        update.join(", "),
        written.len() + 1,
    )
});

async fn write(connection: &mut PgConnection, records: &[Refreshed]) -> Result<(), StoreError> {
    let mut arrays = Arrays::with_capacity(records.len());
    for refreshed in records {
        arrays.push(&&refreshed.record);
    }
    let mut arguments = arrays.into_arguments().map_err(table::encode_failed)?;
    arguments
        .add(CHANGES_CHANNEL)
        .map_err(table::encode_failed)?;
    sqlx::query_with(&UPSERT, arguments)
        .execute(connection)
        .await?;
    Ok(())
}

/// The horizon of the statement's snapshot, as SQL: the lowest id of a transaction still running
/// in this database when the snapshot was taken, or, with none, the id the next transaction will
/// get. Every transaction with a lower id had finished (or runs in another database, where it
/// cannot write `calls`), so the snapshot sees all it committed here; every transaction that
/// commits later has an id at least this high. It is the snapshot's xmin without the
/// transactions of other databases: ids are shared by the whole server, and a long job in another
/// database would hold xmin, and so the stream, back. A running transaction counts as another
/// database's only when `pg_stat_activity` shows its backend there; one it does not show (a
/// prepared transaction, a session of another role without `pg_read_all_stats`) counts as this
/// database's, which can delay changes but never skip one.
macro_rules! horizon_sql {
    () => {
        "coalesce(
             (select min(running) from pg_snapshot_xip(pg_current_snapshot()) as running
              where not exists (
                  select from pg_stat_activity as elsewhere
                  where elsewhere.backend_xid = running::xid
                    and elsewhere.datname is distinct from current_database())),
             pg_snapshot_xmax(pg_current_snapshot()))"
    };
}

/// A `calls` row as a change: the row and the transaction that last wrote it.
#[derive(Debug, Clone)]
pub struct ChangedCall {
    /// `change_xid`: the id of the transaction that wrote this version of the row.
    pub changed_by: u64,
    pub call: CallRow,
}

/// What [`changed_after`] read, in one snapshot.
#[derive(Debug, Clone)]
pub struct ChangePage {
    /// The snapshot's horizon (`horizon_sql`): no change below it can commit any more, and
    /// everything committed below it is in the rows read.
    pub horizon: u64,
    /// Rows stamped after the position and below the horizon, in (change_xid, session_id) byte
    /// order; at most the limit.
    pub rows: Vec<ChangedCall>,
}

/// The rows written after position `(xid, session_id)` and below the horizon of this statement's
/// snapshot, with that horizon. Without a session id, the position is "before everything `xid`
/// wrote"; with one, "after `session_id` among what `xid` wrote" (where a page that was cut
/// by `limit` ended). Rows and horizon come from the same statement, so from one snapshot.
pub async fn changed_after(
    executor: impl PgExecutor<'_>,
    xid: u64,
    session_id: Option<&str>,
    limit: i64,
) -> Result<ChangePage, StoreError> {
    // Two texts rather than one with `$2 is null or …`, so each is planned as the index range
    // scan it is.
    let rows = match session_id {
        None => sqlx::query(concat!(
            // Materialized: computed once, and the same horizon bounds the rows and is returned.
            "with h as materialized (select ",
            horizon_sql!(),
            " as horizon)
             select h.horizon::text as horizon, c.change_xid::text as changed_by, c.*
             from h left join lateral (
                 select * from calls
                 where change_xid >= $1::text::xid8 and change_xid < h.horizon
                 order by change_xid, session_id collate \"C\"
                 limit $2
             ) as c on true",
        ))
        .bind(xid.to_string())
        .bind(limit),
        Some(session_id) => sqlx::query(concat!(
            // Materialized: computed once, and the same horizon bounds the rows and is returned.
            "with h as materialized (select ",
            horizon_sql!(),
            " as horizon)
             select h.horizon::text as horizon, c.change_xid::text as changed_by, c.*
             from h left join lateral (
                 select * from calls
                 where (change_xid, session_id collate \"C\") > ($1::text::xid8, $3::text)
                   and change_xid < h.horizon
                 order by change_xid, session_id collate \"C\"
                 limit $2
             ) as c on true",
        ))
        .bind(xid.to_string())
        .bind(limit)
        .bind(session_id.to_owned()),
    }
    .fetch_all(executor)
    .await?;
    let mut page = ChangePage {
        horizon: 0,
        rows: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        page.horizon = xid_of(row.try_get("horizon")?)?;
        // The left join gives one row of nulls when nothing changed.
        let changed_by: Option<String> = row.try_get("changed_by")?;
        if let Some(changed_by) = changed_by {
            page.rows.push(ChangedCall {
                changed_by: xid_of(changed_by)?,
                call: sqlx::FromRow::from_row(&row)?,
            });
        }
    }
    Ok(page)
}

/// The horizon of a snapshot taken now (`horizon_sql`).
pub async fn horizon(executor: impl PgExecutor<'_>) -> Result<u64, StoreError> {
    let horizon: String = sqlx::query_scalar(concat!("select (", horizon_sql!(), ")::text"))
        .fetch_one(executor)
        .await?;
    xid_of(horizon)
}

/// The id the next transaction will get (`pg_snapshot_xmax`): no row is stamped this high yet.
pub async fn next_xid(executor: impl PgExecutor<'_>) -> Result<u64, StoreError> {
    let next =
        sqlx::query_scalar!(r#"select pg_snapshot_xmax(pg_current_snapshot())::text as "next!""#)
            .fetch_one(executor)
            .await?;
    xid_of(next)
}

/// xid8 travels as text (sqlx has no xid8 type); it is an unsigned 64-bit number.
fn xid_of(text: String) -> Result<u64, StoreError> {
    text.parse().map_err(|_| {
        StoreError::Other(sqlx::Error::Decode(
            format!("not a transaction id: {text}").into(),
        ))
    })
}
