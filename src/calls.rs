//! The call log's projection: everything stored about one sessionId (its status events, its CDR,
//! the placed call) → one `calls` row. A pure function of the *set* of facts: events are put in
//! a fixed order first, so the row is the same whatever order the callbacks arrived in, and a
//! late or repeated callback can never replace a later fact with an earlier one.
//!
//! Order of events: platform time (`timestamp`; events without one last), then stage (callout <
//! alerting < answer < collectInfo < disconnect), then fingerprint (content), so even ties are
//! broken by what the events say, never by when they arrived.

use std::cmp::Ordering;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    kpis::{CALLBACK_DELAY_BUCKETS, CallbackDelay, EndedCall, bucket_of, pdd_seconds},
    platform::{
        callback::{FeeRecord, StatusEvent},
        codes::{q850_meaning, state_meaning, ul_fail_meaning},
        time::parse_platform_time,
    },
};

/// Every `calls.scenario` (the column's CHECK constraint lists the same).
pub const SCENARIOS: [&str; 5] = ["click2call", "notify", "verify", "playback", "unknown"];

/// A stored status event (call_events).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventFact {
    pub event_type: String,
    pub event_at: Option<OffsetDateTime>,
    pub caller: Option<String>,
    pub called: Option<String>,
    pub user_data: Option<String>,
    pub party_type: Option<String>,
    pub state_code: Option<i32>,
    pub digit_info: Option<String>,
    pub fingerprint: Vec<u8>,
    pub received_at: OffsetDateTime,
}

/// The stored CDR of the call (cdrs), the fields the log needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CdrFact {
    pub app_key: Option<String>,
    pub bind_num: Option<String>,
    pub caller_num: Option<String>,
    pub callee_num: Option<String>,
    pub fwd_dst_num: Option<String>,
    pub user_data: Option<String>,
    pub service_type: Option<String>,
    pub call_out_start_time: Option<OffsetDateTime>,
    pub call_out_alerting_time: Option<OffsetDateTime>,
    pub call_out_answer_time: Option<OffsetDateTime>,
    pub fwd_alerting_time: Option<OffsetDateTime>,
    pub fwd_answer_time: Option<OffsetDateTime>,
    pub call_end_time: Option<OffsetDateTime>,
    pub call_out_unasw_rsn: Option<i32>,
    pub fwd_unasw_rsn: Option<i32>,
    pub ul_fail_reason: Option<i32>,
    pub sip_status_code: Option<i32>,
    pub record_flag: Option<i32>,
    pub record_object_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub received_at: OffsetDateTime,
}

impl EventFact {
    /// The fact of an event as `call_events` stores it (its time read as the insert reads it),
    /// for the projector, which holds the events it has just stored and need not read them back.
    pub fn stored_from(event: &StatusEvent, received_at: OffsetDateTime) -> Self {
        let info = &event.info;
        Self {
            event_type: event.event_type.as_str().to_owned(),
            event_at: info.timestamp.as_deref().and_then(parse_platform_time),
            caller: info.caller.clone(),
            called: info.called.clone(),
            user_data: info.user_data.clone(),
            party_type: info.party_type.clone(),
            state_code: info.state_code,
            digit_info: info.digit_info.clone(),
            fingerprint: event.fingerprint.to_vec(),
            received_at,
        }
    }
}

impl CdrFact {
    /// The fact of a CDR as `cdrs` stores it, for the projector (as `EventFact::stored_from`).
    pub fn stored_from(record: &FeeRecord, received_at: OffsetDateTime) -> Self {
        let info = &record.info;
        let time = |raw: &Option<String>| raw.as_deref().and_then(parse_platform_time);
        Self {
            app_key: info.app_key.clone(),
            bind_num: info.bind_num.clone(),
            caller_num: info.caller_num.clone(),
            callee_num: info.callee_num.clone(),
            fwd_dst_num: info.fwd_dst_num.clone(),
            user_data: info.user_data.clone(),
            service_type: info.service_type.clone(),
            call_out_start_time: time(&info.call_out_start_time),
            call_out_alerting_time: time(&info.call_out_alerting_time),
            call_out_answer_time: time(&info.call_out_answer_time),
            fwd_alerting_time: time(&info.fwd_alerting_time),
            fwd_answer_time: time(&info.fwd_answer_time),
            call_end_time: time(&info.call_end_time),
            call_out_unasw_rsn: info.call_out_unasw_rsn,
            fwd_unasw_rsn: info.fwd_unasw_rsn,
            ul_fail_reason: info.ul_fail_reason,
            sip_status_code: info.sip_status_code,
            record_flag: info.record_flag,
            record_object_name: info.record_object_name.clone(),
            record_domain: info.record_domain.clone(),
            record_file_download_url: info.record_file_download_url.clone(),
            received_at,
        }
    }
}

/// An accepted call we placed (placed_calls), with the numbers it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFact {
    pub id: Uuid,
    /// click2call, notify or verify.
    pub operation: String,
    pub app_key: String,
    pub caller_nbr: Option<String>,
    pub callee_nbr: Option<String>,
    pub display_nbr: Option<String>,
    pub user_data: Option<String>,
    pub requested_at: OffsetDateTime,
}

/// One `calls` row (column meanings: the migration's COMMENTs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallRecord {
    pub session_id: String,
    pub scenario: &'static str,
    pub app_key: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub display_number: Option<String>,
    pub user_data: Option<String>,
    pub placed_call_id: Option<Uuid>,
    pub a: Leg,
    pub b: Leg,
    pub digits: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
    pub ring_seconds: Option<i32>,
    pub talk_seconds: Option<i32>,
    pub outcome: &'static str,
    pub state_code: Option<i32>,
    pub state_meaning: Option<&'static str>,
    pub party_type: Option<String>,
    pub q850_cause: Option<i32>,
    pub q850_meaning: Option<&'static str>,
    pub ul_fail_reason: Option<i32>,
    pub ul_fail_meaning: Option<&'static str>,
    pub sip_status_code: Option<i32>,
    pub record_flag: Option<i32>,
    pub record_object_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub has_cdr: bool,
    pub events: i32,
    pub last_callback_at: Option<OffsetDateTime>,
    /// The call's status events by callback delay: counts per bucket of
    /// `kpis::CALLBACK_DELAY_BUCKETS`; none when no event has a readable time.
    pub callback_delay_counts: Option<Vec<i32>>,
}

impl CallRecord {
    /// This call as the call metrics count it when it has ended (`kpis`).
    pub fn ended_call(&self) -> EndedCall {
        EndedCall {
            app_key: self.app_key.clone(),
            scenario: self.scenario,
            outcome: self.outcome,
            ring_seconds: self.ring_seconds.map(f64::from),
            talk_seconds: self
                .talk_seconds
                .filter(|_| self.outcome == "answered")
                .map(f64::from),
            pdd_seconds: pdd_seconds(self.a.callout_at, self.a.alerting_at),
        }
    }

    /// A status event of this call that reached us at `received_at`, `event_at` being its
    /// platform time.
    pub fn callback_delay(
        &self,
        event_type: &'static str,
        event_at: OffsetDateTime,
        received_at: OffsetDateTime,
    ) -> CallbackDelay {
        CallbackDelay {
            app_key: self.app_key.clone(),
            scenario: self.scenario,
            event_type,
            seconds: (received_at - event_at).as_seconds_f64(),
        }
    }
}

/// Stage times of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leg {
    pub callout_at: Option<OffsetDateTime>,
    pub alerting_at: Option<OffsetDateTime>,
    pub answer_at: Option<OffsetDateTime>,
    pub disconnect_at: Option<OffsetDateTime>,
}

fn stage_rank(event_type: &str) -> u8 {
    match event_type {
        "callout" => 0,
        "alerting" => 1,
        "answer" => 2,
        "collectInfo" => 3,
        "disconnect" => 4,
        _ => 5,
    }
}

/// The documented order of events (module docs).
fn platform_order(a: &EventFact, b: &EventFact) -> Ordering {
    let time = match (a.event_at, b.event_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    time.then_with(|| stage_rank(&a.event_type).cmp(&stage_rank(&b.event_type)))
        .then_with(|| a.fingerprint.cmp(&b.fingerprint))
}

/// Computes the call's row from all that is known about it.
pub fn project(
    session_id: &str,
    events: &[EventFact],
    cdr: Option<&CdrFact>,
    placed: Option<&PlacedFact>,
) -> CallRecord {
    let mut events: Vec<&EventFact> = events.iter().collect();
    events.sort_by(|a, b| platform_order(a, b));

    let two_numbers_called = {
        let mut called: Vec<&str> = events.iter().filter_map(|e| e.called.as_deref()).collect();
        called.sort_unstable();
        called.dedup();
        called.len() > 1
    };
    let scenario = match (
        placed.map(|p| p.operation.as_str()),
        cdr.and_then(|c| c.service_type.as_deref()),
    ) {
        (Some("click2call"), _) => "click2call",
        (Some("notify"), _) => "notify",
        (Some("verify"), _) => "verify",
        (_, Some("002")) => "click2call",
        (_, Some("001")) => "playback",
        _ if two_numbers_called => "click2call",
        _ => "unknown",
    };
    let click_to_call = scenario == "click2call";

    // Leg B is the known B number, else the second distinct number the platform called.
    let known_b = placed
        .filter(|_| click_to_call)
        .and_then(|p| p.callee_nbr.clone())
        .or_else(|| {
            cdr.filter(|_| click_to_call)
                .and_then(|c| c.fwd_dst_num.clone())
        });
    let first_called = events.iter().find_map(|e| e.called.clone());
    let is_leg_b = |e: &EventFact| {
        click_to_call
            && match (&known_b, &e.called) {
                (Some(b), Some(called)) => called == b,
                (None, Some(called)) => first_called.as_ref() != Some(called),
                (_, None) => false,
            }
    };
    let (mut a, mut b) = (Leg::default(), Leg::default());
    let mut digits = None;
    let mut last_disconnect: Option<&EventFact> = None;
    for event in &events {
        let leg = if is_leg_b(event) { &mut b } else { &mut a };
        let first = |slot: &mut Option<OffsetDateTime>| {
            if slot.is_none() {
                *slot = event.event_at;
            }
        };
        match event.event_type.as_str() {
            "callout" => first(&mut leg.callout_at),
            "alerting" => first(&mut leg.alerting_at),
            "answer" => first(&mut leg.answer_at),
            "collectInfo" => digits = event.digit_info.clone().or(digits),
            "disconnect" => {
                leg.disconnect_at = event.event_at.or(leg.disconnect_at);
                last_disconnect = Some(event);
            }
            _ => {}
        }
    }

    // The party whose answer makes the call: B for click-to-call, the user called otherwise.
    let (decisive, cdr_alerting, cdr_answer) = if click_to_call {
        (
            b,
            cdr.and_then(|c| c.fwd_alerting_time),
            cdr.and_then(|c| c.fwd_answer_time),
        )
    } else {
        (
            a,
            cdr.and_then(|c| c.call_out_alerting_time),
            cdr.and_then(|c| c.call_out_answer_time),
        )
    };
    let answered_at = cdr_answer.or(decisive.answer_at);
    let alerting_at = cdr_alerting.or(decisive.alerting_at);
    let ended_at = cdr
        .and_then(|c| c.call_end_time)
        .or(last_disconnect.and_then(|e| e.event_at));
    let ended = cdr.is_some() || last_disconnect.is_some();

    let state_code = last_disconnect.and_then(|e| e.state_code);
    let a_failed = click_to_call
        && a.answer_at
            .or(cdr.and_then(|c| c.call_out_answer_time))
            .is_none();
    let q850_cause = cdr.and_then(|c| {
        if click_to_call && !a_failed {
            c.fwd_unasw_rsn
        } else {
            c.call_out_unasw_rsn
        }
    });
    let ul_fail_reason = cdr.and_then(|c| c.ul_fail_reason);
    let sip_status_code = cdr.and_then(|c| c.sip_status_code);
    let outcome = if !ended {
        "in_progress"
    } else if answered_at.is_some() {
        "answered"
    } else {
        classify_failure(state_code, q850_cause, ul_fail_reason, sip_status_code)
    };

    let seconds = |from: Option<OffsetDateTime>, to: Option<OffsetDateTime>| match (from, to) {
        (Some(from), Some(to)) if to >= from => i32::try_from((to - from).whole_seconds()).ok(),
        _ => None,
    };
    let ring_seconds = seconds(alerting_at, answered_at.or(ended_at));
    let talk_seconds = match (answered_at, ended) {
        (Some(_), true) => seconds(answered_at, ended_at),
        (None, true) => Some(0),
        (_, false) => None,
    };

    let placed_numbers = placed.map(|p| match p.operation.as_str() {
        "click2call" => (p.caller_nbr.clone(), p.callee_nbr.clone()),
        _ => (p.callee_nbr.clone(), None),
    });
    let leg_a_called = events
        .iter()
        .find(|e| !is_leg_b(e))
        .and_then(|e| e.called.clone());
    let leg_b_called = events
        .iter()
        .find(|e| is_leg_b(e))
        .and_then(|e| e.called.clone());
    let caller = placed_numbers
        .as_ref()
        .and_then(|(a, _)| a.clone())
        .or(leg_a_called)
        .or_else(|| {
            cdr.filter(|_| !click_to_call)
                .and_then(|c| c.callee_num.clone())
        });
    let callee = placed_numbers
        .and_then(|(_, b)| b)
        .or_else(|| {
            cdr.filter(|_| click_to_call)
                .and_then(|c| c.fwd_dst_num.clone())
        })
        .or(leg_b_called);
    let display_number = placed
        .and_then(|p| p.display_nbr.clone())
        .or_else(|| cdr.and_then(|c| c.caller_num.clone().or_else(|| c.bind_num.clone())))
        .or_else(|| {
            events
                .iter()
                .find(|e| !is_leg_b(e))
                .and_then(|e| e.caller.clone())
        });

    let started_at = a
        .callout_at
        .or(cdr.and_then(|c| c.call_out_start_time))
        .or(events.first().and_then(|e| e.event_at))
        .or(placed.map(|p| p.requested_at));
    let last_callback_at = events
        .iter()
        .map(|e| e.received_at)
        .chain(cdr.map(|c| c.received_at))
        .max();

    CallRecord {
        session_id: session_id.to_owned(),
        scenario,
        app_key: placed
            .map(|p| p.app_key.clone())
            .or_else(|| cdr.and_then(|c| c.app_key.clone())),
        caller,
        callee,
        display_number,
        user_data: placed
            .and_then(|p| p.user_data.clone())
            .or_else(|| cdr.and_then(|c| c.user_data.clone()))
            .or_else(|| events.iter().find_map(|e| e.user_data.clone())),
        placed_call_id: placed.map(|p| p.id),
        a,
        b,
        digits,
        started_at,
        ended_at,
        ring_seconds,
        talk_seconds,
        outcome,
        state_code,
        state_meaning: state_code.and_then(state_meaning),
        party_type: last_disconnect.and_then(|e| e.party_type.clone()),
        q850_cause,
        q850_meaning: q850_cause.and_then(q850_meaning),
        ul_fail_reason,
        ul_fail_meaning: ul_fail_reason.and_then(ul_fail_meaning),
        sip_status_code,
        record_flag: cdr.and_then(|c| c.record_flag),
        record_object_name: cdr.and_then(|c| c.record_object_name.clone()),
        record_domain: cdr.and_then(|c| c.record_domain.clone()),
        record_file_download_url: cdr.and_then(|c| c.record_file_download_url.clone()),
        has_cdr: cdr.is_some(),
        events: i32::try_from(events.len()).unwrap_or(i32::MAX),
        last_callback_at,
        callback_delay_counts: callback_delay_counts(&events),
    }
}

/// Kept with the row so that the KPIs of a range sum one array per call instead of joining
/// every event of the range.
fn callback_delay_counts(events: &[&EventFact]) -> Option<Vec<i32>> {
    let mut counts = vec![0; CALLBACK_DELAY_BUCKETS.len() + 1];
    let mut any = false;
    for event in events {
        if let Some(at) = event.event_at {
            let delay = (event.received_at - at).as_seconds_f64();
            counts[bucket_of(CALLBACK_DELAY_BUCKETS, delay)] += 1;
            any = true;
        }
    }
    any.then_some(counts)
}

/// Why a call that ended unanswered did not connect, from the most specific code available.
fn classify_failure(
    state_code: Option<i32>,
    q850: Option<i32>,
    ul_fail_reason: Option<i32>,
    sip: Option<i32>,
) -> &'static str {
    let any = |codes: &[i32], value: Option<i32>| value.is_some_and(|v| codes.contains(&v));
    if any(&[8102, 8108], state_code) || any(&[17], q850) || any(&[486, 600], sip) {
        "busy"
    } else if any(&[8009, 8107], state_code) || any(&[530, 552, 553], ul_fail_reason) {
        "caller_hung_up"
    } else if any(&[8004], state_code)
        || any(&[21], q850)
        || any(&[603], sip)
        || any(&[515], ul_fail_reason)
    {
        "rejected"
    } else if any(&[8003, 8101], state_code)
        || any(&[18, 19], q850)
        || any(&[514], ul_fail_reason)
        || any(&[408, 480], sip)
    {
        "no_answer"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn event(event_type: &str, secs: i64, called: &str) -> EventFact {
        EventFact {
            event_type: event_type.into(),
            event_at: Some(datetime!(2026-11-24 06:00:00 UTC) + time::Duration::seconds(secs)),
            caller: Some("+867550000001".into()),
            called: Some(called.into()),
            user_data: None,
            party_type: None,
            state_code: (event_type == "disconnect").then_some(0),
            digit_info: None,
            fingerprint: vec![stage_rank(event_type), u8::try_from(secs).unwrap()],
            received_at: datetime!(2026-11-24 07:00:00 UTC),
        }
    }

    const A: &str = "+8613800000001";
    const B: &str = "+8613800000002";

    #[test]
    fn a_click_to_call_from_events_alone_tells_the_legs_apart() {
        let events = [
            event("callout", 0, A),
            event("answer", 5, A),
            event("callout", 6, B),
            event("alerting", 8, B),
            event("answer", 10, B),
            event("disconnect", 70, A),
        ];
        let call = project("s", &events, None, None);
        assert_eq!(call.scenario, "click2call");
        assert_eq!(
            (call.caller.as_deref(), call.callee.as_deref()),
            (Some(A), Some(B))
        );
        assert_eq!(
            (call.ring_seconds, call.talk_seconds, call.outcome),
            (Some(2), Some(60), "answered")
        );
    }

    #[test]
    fn the_order_of_the_facts_does_not_matter() {
        let mut events = vec![
            event("callout", 0, A),
            event("alerting", 8, B),
            event("disconnect", 30, B),
            event("callout", 6, B),
        ];
        let expected = project("s", &events, None, None);
        events.reverse();
        assert_eq!(project("s", &events, None, None), expected);
        events.swap(0, 2);
        assert_eq!(project("s", &events, None, None), expected);
    }

    /// Every one of the 40,320 orders of a whole click-to-call's eight events gives one row, with
    /// ties the arrival order must not break: both legs hang up in the same second (with
    /// different causes), and A's answer shares its second with B's callout.
    #[test]
    fn every_order_of_a_whole_click_to_call_gives_one_row() {
        let mut disconnect_a = event("disconnect", 70, A);
        disconnect_a.state_code = Some(8017);
        disconnect_a.fingerprint = vec![4, 70, 1];
        let mut disconnect_b = event("disconnect", 70, B);
        disconnect_b.state_code = Some(0);
        disconnect_b.party_type = Some("1".to_owned());
        disconnect_b.fingerprint = vec![4, 70, 2];
        let mut events = vec![
            event("callout", 0, A),
            event("alerting", 2, A),
            event("answer", 6, A),
            event("callout", 6, B),
            event("alerting", 8, B),
            event("answer", 10, B),
            disconnect_a,
            disconnect_b,
        ];
        let expected = project("s", &events, None, None);
        assert_eq!(
            (expected.outcome, expected.talk_seconds),
            ("answered", Some(60))
        );

        // Heap's algorithm: each step swaps two events, so every order is visited once.
        let n = events.len();
        let mut counters = vec![0; n];
        let (mut orders, mut i) = (1, 0);
        while i < n {
            if counters[i] < i {
                let j = if i % 2 == 0 { 0 } else { counters[i] };
                events.swap(j, i);
                assert_eq!(
                    project("s", &events, None, None),
                    expected,
                    "order {orders}"
                );
                orders += 1;
                counters[i] += 1;
                i = 0;
            } else {
                counters[i] = 0;
                i += 1;
            }
        }
        assert_eq!(orders, 40_320);
    }

    #[test]
    fn failures_are_classified_from_the_most_specific_code() {
        assert_eq!(classify_failure(Some(8102), None, None, None), "busy");
        assert_eq!(
            classify_failure(None, Some(19), Some(518), None),
            "no_answer"
        );
        assert_eq!(
            classify_failure(Some(8004), Some(21), Some(515), Some(603)),
            "rejected"
        );
        assert_eq!(
            classify_failure(Some(8009), None, Some(552), None),
            "caller_hung_up"
        );
        assert_eq!(
            classify_failure(Some(8000), Some(41), Some(517), Some(500)),
            "failed"
        );
    }

    #[test]
    fn a_call_without_an_end_is_in_progress() {
        let call = project(
            "s",
            &[event("callout", 0, A), event("answer", 5, A)],
            None,
            None,
        );
        assert_eq!((call.outcome, call.talk_seconds), ("in_progress", None));
    }
}
