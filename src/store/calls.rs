//! `calls`: keeps each call's row current. Every writer that adds a fact about a call (a status
//! event, a CDR, a placed call) calls `refresh` in its own transaction, so the row commits with
//! the fact.
//!
//! Concurrency: the rows of the affected calls are locked first (in sessionId order, so two
//! writers cannot deadlock on each other), and only then are the facts read. Under READ
//! COMMITTED each statement sees what committed before it, so the writer that waited sees the
//! other's facts and its recomputation includes them.

use sqlx::{PgConnection, types::Uuid};
use time::OffsetDateTime;

use super::StoreError;
use crate::calls::{CallRecord, CdrFact, EventFact, PlacedFact, project};

#[derive(sqlx::FromRow)]
struct SessionEvent {
    session_id: String,
    #[sqlx(flatten)]
    fact: EventFact,
}

#[derive(sqlx::FromRow)]
struct SessionCdr {
    session_id: String,
    #[sqlx(flatten)]
    fact: CdrFact,
}

#[derive(sqlx::FromRow)]
struct SessionPlaced {
    session_id: String,
    id: Uuid,
    operation: String,
    app_key: String,
    caller_nbr: Option<String>,
    callee_nbr: Option<String>,
    display_nbr: Option<String>,
    user_data: Option<String>,
    requested_at: OffsetDateTime,
}

/// Recomputes the `calls` rows of `sessions` from everything stored about them.
pub async fn refresh(connection: &mut PgConnection, sessions: &[String]) -> Result<(), StoreError> {
    let mut sessions: Vec<String> = sessions.to_vec();
    sessions.sort_unstable();
    sessions.dedup();
    if sessions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into calls (session_id, scenario, outcome, has_cdr, events, last_callback_at, updated_at)
         select s, 'unknown', 'in_progress', false, 0, now(), now() from unnest($1::text[]) as s
         on conflict do nothing",
    )
    .bind(&sessions)
    .execute(&mut *connection)
    .await?;
    sqlx::query("select 1 from calls where session_id = any($1) order by session_id for update")
        .bind(&sessions)
        .execute(&mut *connection)
        .await?;

    let events: Vec<SessionEvent> = sqlx::query_as(
        "select session_id, event_type, event_at, caller, called, user_data, party_type, state_code, digit_info,
                fingerprint, received_at
         from call_events where session_id = any($1)",
    )
    .bind(&sessions)
    .fetch_all(&mut *connection)
    .await?;
    // One CDR per call (spec §1.4); should a session ever carry more, the latest end wins.
    let cdrs: Vec<SessionCdr> = sqlx::query_as(
        "select distinct on (session_id) session_id, app_key, bind_num, caller_num, callee_num, fwd_dst_num, user_data,
                service_type, call_out_start_time, call_out_alerting_time, call_out_answer_time, fwd_alerting_time,
                fwd_answer_time, call_end_time, call_out_unasw_rsn, fwd_unasw_rsn, ul_fail_reason, sip_status_code,
                record_flag, record_object_name, record_domain, record_file_download_url, received_at
         from cdrs where session_id = any($1)
         order by session_id, call_end_time desc nulls last, id",
    )
    .bind(&sessions)
    .fetch_all(&mut *connection)
    .await?;
    let placed: Vec<SessionPlaced> = sqlx::query_as(
        "select distinct on (session_id) session_id, id, operation, app_key,
                request->>'callerNbr' as caller_nbr, request->>'calleeNbr' as callee_nbr,
                request->>'displayNbr' as display_nbr, user_data, requested_at
         from placed_calls
         where session_id = any($1) and outcome = 'accepted' and operation in ('click2call', 'notify', 'verify')
         order by session_id, requested_at",
    )
    .bind(&sessions)
    .fetch_all(&mut *connection)
    .await?;

    let records: Vec<CallRecord> = sessions
        .iter()
        .map(|session| {
            let facts: Vec<EventFact> = events
                .iter()
                .filter(|e| &e.session_id == session)
                .map(|e| e.fact.clone())
                .collect();
            let cdr = cdrs
                .iter()
                .find(|c| &c.session_id == session)
                .map(|c| &c.fact);
            let placed = placed
                .iter()
                .find(|p| &p.session_id == session)
                .map(|p| PlacedFact {
                    id: p.id,
                    operation: p.operation.clone(),
                    app_key: p.app_key.clone(),
                    caller_nbr: p.caller_nbr.clone(),
                    callee_nbr: p.callee_nbr.clone(),
                    display_nbr: p.display_nbr.clone(),
                    user_data: p.user_data.clone(),
                    requested_at: p.requested_at,
                });
            project(session, &facts, cdr, placed.as_ref())
        })
        .collect();
    write(connection, &records).await
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
}

async fn write(connection: &mut PgConnection, records: &[CallRecord]) -> Result<(), StoreError> {
    let mut c = Columns::default();
    for r in records {
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
    }
    sqlx::query(
        "update calls set
            scenario = u.scenario, app_key = u.app_key, caller = u.caller, callee = u.callee,
            display_number = u.display_number, user_data = u.user_data, placed_call_id = u.placed_call_id,
            a_callout_at = u.a_callout_at, a_alerting_at = u.a_alerting_at, a_answer_at = u.a_answer_at,
            a_disconnect_at = u.a_disconnect_at, b_callout_at = u.b_callout_at, b_alerting_at = u.b_alerting_at,
            b_answer_at = u.b_answer_at, b_disconnect_at = u.b_disconnect_at, digits = u.digits,
            started_at = u.started_at, ended_at = u.ended_at, ring_seconds = u.ring_seconds,
            talk_seconds = u.talk_seconds, outcome = u.outcome, state_code = u.state_code,
            state_meaning = u.state_meaning, party_type = u.party_type, q850_cause = u.q850_cause,
            q850_meaning = u.q850_meaning, ul_fail_reason = u.ul_fail_reason, ul_fail_meaning = u.ul_fail_meaning,
            sip_status_code = u.sip_status_code, record_flag = u.record_flag,
            record_object_name = u.record_object_name, record_domain = u.record_domain,
            record_file_download_url = u.record_file_download_url, has_cdr = u.has_cdr, events = u.events,
            last_callback_at = coalesce(u.last_callback_at, calls.last_callback_at), updated_at = now()
         from unnest(
            $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[],
            $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
            $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::timestamptz[],
            $19::timestamptz[], $20::int4[], $21::int4[], $22::text[], $23::int4[], $24::text[], $25::text[],
            $26::int4[], $27::text[], $28::int4[], $29::text[], $30::int4[], $31::int4[], $32::text[], $33::text[],
            $34::text[], $35::bool[], $36::int4[], $37::timestamptz[]
         ) as u(session_id, scenario, app_key, caller, callee, display_number, user_data, placed_call_id,
                a_callout_at, a_alerting_at, a_answer_at, a_disconnect_at, b_callout_at, b_alerting_at,
                b_answer_at, b_disconnect_at, digits, started_at, ended_at, ring_seconds, talk_seconds, outcome,
                state_code, state_meaning, party_type, q850_cause, q850_meaning, ul_fail_reason, ul_fail_meaning,
                sip_status_code, record_flag, record_object_name, record_domain, record_file_download_url,
                has_cdr, events, last_callback_at)
         where calls.session_id = u.session_id",
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
    .execute(connection)
    .await?;
    Ok(())
}
