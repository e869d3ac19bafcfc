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
//! Concurrency: the affected calls are locked first, and only then are the facts read. Under
//! READ COMMITTED each statement sees what committed before it, so the writer that waited sees
//! the other's facts and its recomputation includes them. The locks are transaction-scoped
//! advisory locks on a hash of the sessionId, not row locks: a call that has no row yet can be
//! locked too, and locking writes nothing (locking by upsert cost every call a second row
//! version in ten indexes). They are taken in key order, so two writers cannot deadlock, even
//! when two sessionIds share a hash.

use sqlx::{PgConnection, PgExecutor, Row, types::Uuid};
use time::OffsetDateTime;

use super::{StoreError, read::CallRow};
use crate::{
    calls::{CallRecord, CdrFact, EventFact, PlacedFact, project},
    kpis,
};

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

// One CDR per call (spec §1.4); should a session ever carry more, the latest end wins.
const FETCH_FACTS: &str = "
select s as session_id,
       e.event_type, e.event_at, e.event_caller, e.event_called, e.event_user_data, e.party_type,
       e.state_code, e.digit_info, e.fingerprint, e.event_received_at,
       c.received_at as cdr_received_at, c.app_key, c.bind_num, c.caller_num, c.callee_num, c.fwd_dst_num,
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
    from call_events where session_id = s
) e on true
left join lateral (
    select * from cdrs where session_id = s order by call_end_time desc nulls last, id limit 1
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

/// Recomputes the `calls` rows of `sessions` from everything stored about them: three
/// statements however many calls. Returns the rows written.
pub async fn refresh(
    connection: &mut PgConnection,
    sessions: &[String],
) -> Result<Vec<Refreshed>, StoreError> {
    let mut sessions: Vec<&str> = sessions.iter().map(String::as_str).collect();
    sessions.sort_unstable();
    sessions.dedup();
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(
        "select pg_advisory_xact_lock($1, k)
         from (select distinct abs(hashtext(s) % $3) as k from unnest($2::text[]) as s) as keys
         order by k",
    )
    .bind(CALL_LOCK_SPACE)
    .bind(&sessions)
    .bind(CALL_LOCK_BUCKETS)
    .execute(&mut *connection)
    .await?;
    let facts: Vec<Facts> = sqlx::query_as(FETCH_FACTS)
        .bind(&sessions)
        .fetch_all(&mut *connection)
        .await?;
    let refreshed: Vec<Refreshed> = facts
        .into_iter()
        .map(|mut facts| {
            let (events, cdr, placed) = (facts.events(), facts.cdr(), facts.placed());
            Refreshed {
                record: project(&facts.session_id, &events, cdr.as_ref(), placed.as_ref()),
                previous_outcome: facts.previous_outcome.take(),
            }
        })
        .collect();
    write(connection, &refreshed).await?;
    Ok(refreshed)
}

type Text = Vec<Option<String>>;
type Int = Vec<Option<i32>>;
type Time = Vec<Option<OffsetDateTime>>;

/// The records as one array per column, in the order of the UPSERT below.
#[derive(Default)]
struct Columns {
    session_id: Vec<String>,
    scenario: Vec<&'static str>,
    app_key: Text,
    caller: Text,
    callee: Text,
    display_number: Text,
    user_data: Text,
    placed_call_id: Vec<Option<Uuid>>,
    a_callout_at: Time,
    a_alerting_at: Time,
    a_answer_at: Time,
    a_disconnect_at: Time,
    b_callout_at: Time,
    b_alerting_at: Time,
    b_answer_at: Time,
    b_disconnect_at: Time,
    digits: Text,
    started_at: Time,
    ended_at: Time,
    ring_seconds: Int,
    talk_seconds: Int,
    outcome: Vec<&'static str>,
    state_code: Int,
    state_meaning: Vec<Option<&'static str>>,
    party_type: Text,
    q850_cause: Int,
    q850_meaning: Vec<Option<&'static str>>,
    ul_fail_reason: Int,
    ul_fail_meaning: Vec<Option<&'static str>>,
    sip_status_code: Int,
    record_flag: Int,
    record_object_name: Text,
    record_domain: Text,
    record_file_download_url: Text,
    has_cdr: Vec<bool>,
    events: Vec<i32>,
    last_callback_at: Time,
    /// As array literals (`{0,3,1}`): an array of arrays cannot be unnested row by row.
    callback_delay_counts: Text,
}

async fn write(connection: &mut PgConnection, records: &[Refreshed]) -> Result<(), StoreError> {
    let mut c = Columns::default();
    for r in records.iter().map(|refreshed| &refreshed.record) {
        c.session_id.push(r.session_id.clone());
        c.scenario.push(r.scenario);
        c.app_key.push(r.app_key.clone());
        c.caller.push(r.caller.clone());
        c.callee.push(r.callee.clone());
        c.display_number.push(r.display_number.clone());
        c.user_data.push(r.user_data.clone());
        c.placed_call_id.push(r.placed_call_id);
        c.a_callout_at.push(r.a.callout_at);
        c.a_alerting_at.push(r.a.alerting_at);
        c.a_answer_at.push(r.a.answer_at);
        c.a_disconnect_at.push(r.a.disconnect_at);
        c.b_callout_at.push(r.b.callout_at);
        c.b_alerting_at.push(r.b.alerting_at);
        c.b_answer_at.push(r.b.answer_at);
        c.b_disconnect_at.push(r.b.disconnect_at);
        c.digits.push(r.digits.clone());
        c.started_at.push(r.started_at);
        c.ended_at.push(r.ended_at);
        c.ring_seconds.push(r.ring_seconds);
        c.talk_seconds.push(r.talk_seconds);
        c.outcome.push(r.outcome);
        c.state_code.push(r.state_code);
        c.state_meaning.push(r.state_meaning);
        c.party_type.push(r.party_type.clone());
        c.q850_cause.push(r.q850_cause);
        c.q850_meaning.push(r.q850_meaning);
        c.ul_fail_reason.push(r.ul_fail_reason);
        c.ul_fail_meaning.push(r.ul_fail_meaning);
        c.sip_status_code.push(r.sip_status_code);
        c.record_flag.push(r.record_flag);
        c.record_object_name.push(r.record_object_name.clone());
        c.record_domain.push(r.record_domain.clone());
        c.record_file_download_url
            .push(r.record_file_download_url.clone());
        c.has_cdr.push(r.has_cdr);
        c.events.push(r.events);
        c.last_callback_at.push(r.last_callback_at);
        c.callback_delay_counts
            .push(r.callback_delay_counts.as_ref().map(|counts| {
                let counts: Vec<String> = counts.iter().map(i32::to_string).collect();
                format!("{{{}}}", counts.join(","))
            }));
    }
    sqlx::query(
        // One row version per call: an upsert, whose conflict check is the primary key's index
        // lookup (an UPDATE … FROM unnest() join is planned, and a plan cached while the table was
        // empty scanned the whole table for every group). A call without callbacks yet (placed
        // only) keeps its last_callback_at: the time its row was made. The NOTIFY rides in the
        // same statement (no extra round trip) and is sent when the transaction commits.
        "with written as (
         insert into calls (
            session_id, scenario, app_key, caller, callee, display_number, user_data,
            placed_call_id, a_callout_at, a_alerting_at, a_answer_at, a_disconnect_at,
            b_callout_at, b_alerting_at, b_answer_at, b_disconnect_at, digits, started_at,
            ended_at, ring_seconds, talk_seconds, outcome, state_code, state_meaning, party_type,
            q850_cause, q850_meaning, ul_fail_reason, ul_fail_meaning, sip_status_code,
            record_flag, record_object_name, record_domain, record_file_download_url, has_cdr,
            events, last_callback_at, updated_at, callback_delay_counts, change_xid)
         select
            session_id, scenario, app_key, caller, callee, display_number, user_data,
            placed_call_id, a_callout_at, a_alerting_at, a_answer_at, a_disconnect_at,
            b_callout_at, b_alerting_at, b_answer_at, b_disconnect_at, digits, started_at,
            ended_at, ring_seconds, talk_seconds, outcome, state_code, state_meaning, party_type,
            q850_cause, q850_meaning, ul_fail_reason, ul_fail_meaning, sip_status_code,
            record_flag, record_object_name, record_domain, record_file_download_url, has_cdr,
            events, coalesce(last_callback_at, now()), now(), callback_delay_counts::int4[],
            pg_current_xact_id()
         from unnest(
            $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::uuid[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
            $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[],
            $16::timestamptz[], $17::text[], $18::timestamptz[], $19::timestamptz[], $20::int4[],
            $21::int4[], $22::text[], $23::int4[], $24::text[], $25::text[], $26::int4[],
            $27::text[], $28::int4[], $29::text[], $30::int4[], $31::int4[], $32::text[],
            $33::text[], $34::text[], $35::bool[], $36::int4[], $37::timestamptz[], $38::text[]
         ) as u(session_id, scenario, app_key, caller, callee, display_number, user_data,
             placed_call_id, a_callout_at, a_alerting_at, a_answer_at, a_disconnect_at,
             b_callout_at, b_alerting_at, b_answer_at, b_disconnect_at, digits, started_at,
             ended_at, ring_seconds, talk_seconds, outcome, state_code, state_meaning, party_type,
             q850_cause, q850_meaning, ul_fail_reason, ul_fail_meaning, sip_status_code,
             record_flag, record_object_name, record_domain, record_file_download_url, has_cdr,
             events, last_callback_at, callback_delay_counts)
         on conflict (session_id) do update set
            scenario = excluded.scenario, app_key = excluded.app_key, caller = excluded.caller,
            callee = excluded.callee, display_number = excluded.display_number,
            user_data = excluded.user_data, placed_call_id = excluded.placed_call_id,
            a_callout_at = excluded.a_callout_at, a_alerting_at = excluded.a_alerting_at,
            a_answer_at = excluded.a_answer_at, a_disconnect_at = excluded.a_disconnect_at,
            b_callout_at = excluded.b_callout_at, b_alerting_at = excluded.b_alerting_at,
            b_answer_at = excluded.b_answer_at, b_disconnect_at = excluded.b_disconnect_at,
            digits = excluded.digits, started_at = excluded.started_at,
            ended_at = excluded.ended_at, ring_seconds = excluded.ring_seconds,
            talk_seconds = excluded.talk_seconds, outcome = excluded.outcome,
            state_code = excluded.state_code, state_meaning = excluded.state_meaning,
            party_type = excluded.party_type, q850_cause = excluded.q850_cause,
            q850_meaning = excluded.q850_meaning, ul_fail_reason = excluded.ul_fail_reason,
            ul_fail_meaning = excluded.ul_fail_meaning, sip_status_code = excluded.sip_status_code,
            record_flag = excluded.record_flag, record_object_name = excluded.record_object_name,
            record_domain = excluded.record_domain,
            record_file_download_url = excluded.record_file_download_url,
            has_cdr = excluded.has_cdr, events = excluded.events,
            last_callback_at = case when excluded.events = 0 and not excluded.has_cdr
                then calls.last_callback_at else excluded.last_callback_at end,
            updated_at = excluded.updated_at,
            callback_delay_counts = excluded.callback_delay_counts, change_xid = excluded.change_xid
         )
         select pg_notify($39, '')",
    )
    .bind(c.session_id)
    .bind(c.scenario)
    .bind(c.app_key)
    .bind(c.caller)
    .bind(c.callee)
    .bind(c.display_number)
    .bind(c.user_data)
    .bind(c.placed_call_id)
    .bind(c.a_callout_at)
    .bind(c.a_alerting_at)
    .bind(c.a_answer_at)
    .bind(c.a_disconnect_at)
    .bind(c.b_callout_at)
    .bind(c.b_alerting_at)
    .bind(c.b_answer_at)
    .bind(c.b_disconnect_at)
    .bind(c.digits)
    .bind(c.started_at)
    .bind(c.ended_at)
    .bind(c.ring_seconds)
    .bind(c.talk_seconds)
    .bind(c.outcome)
    .bind(c.state_code)
    .bind(c.state_meaning)
    .bind(c.party_type)
    .bind(c.q850_cause)
    .bind(c.q850_meaning)
    .bind(c.ul_fail_reason)
    .bind(c.ul_fail_meaning)
    .bind(c.sip_status_code)
    .bind(c.record_flag)
    .bind(c.record_object_name)
    .bind(c.record_domain)
    .bind(c.record_file_download_url)
    .bind(c.has_cdr)
    .bind(c.events)
    .bind(c.last_callback_at)
    .bind(c.callback_delay_counts)
    .bind(CHANGES_CHANNEL)
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
    let next: String = sqlx::query_scalar("select pg_snapshot_xmax(pg_current_snapshot())::text")
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
