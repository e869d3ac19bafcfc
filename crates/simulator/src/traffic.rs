//! Platform-like callback bodies for load: status events of calls moving through their stages,
//! and fee lists of 1–`max_batch` CDRs, every one distinct so a receiver really stores it.
//! Bodies are serialized from the platform's own typed structs, so field names cannot drift.
//!
//! The mix: most calls are answered; some ring out, some find the callee busy (with the
//! documented hang-up cause, Q.850 and release point), and some are notifications whose user
//! keys a digit (a `collectInfo` event). Each stage carries its own platform time.

use bytes::Bytes;
use rand::{RngExt, SeedableRng, rngs::StdRng};

use time::{Duration, OffsetDateTime};

use callhook_platform::{
    callback::{CallStatusInfo, EventType, FeeInfo},
    time::format_platform_time,
};

/// One status event of a call: what, how many seconds after the call's start, and its details.
struct Stage {
    event: EventType,
    after_secs: i64,
    state_code: Option<i32>,
    digits: Option<&'static str>,
}

const fn stage(event: EventType, after_secs: i64) -> Stage {
    Stage {
        event,
        after_secs,
        state_code: None,
        digits: None,
    }
}

const fn hang_up(after_secs: i64, state_code: i32) -> Stage {
    Stage {
        state_code: Some(state_code),
        ..stage(EventType::Disconnect, after_secs)
    }
}

const ANSWERED: &[Stage] = &[
    stage(EventType::Callout, 0),
    stage(EventType::Alerting, 2),
    stage(EventType::Answer, 5),
    hang_up(65, 0),
];
const NO_ANSWER: &[Stage] = &[
    stage(EventType::Callout, 0),
    stage(EventType::Alerting, 2),
    hang_up(47, 8101),
];
const BUSY: &[Stage] = &[stage(EventType::Callout, 0), hang_up(1, 8102)];
const NOTIFIED: &[Stage] = &[
    stage(EventType::Callout, 0),
    stage(EventType::Alerting, 3),
    stage(EventType::Answer, 6),
    Stage {
        digits: Some("1"),
        ..stage(EventType::CollectInfo, 20)
    },
    hang_up(21, 0),
];
/// The calls the load plays, with their weights (of 100).
const CALLS: [(u32, &[Stage]); 4] = [(70, ANSWERED), (10, NO_ANSWER), (10, BUSY), (10, NOTIFIED)];

/// What a disconnect's stateCode says (spec §3.1), for the few the load sends.
fn state_desc(code: i32) -> &'static str {
    match code {
        8101 => "The called party did not answer.",
        8102 => "The called party is busy.",
        _ => "The user releases the call.",
    }
}

/// The day the load's calls happen on; each call starts one second after the one before.
const DAY: OffsetDateTime = time::macros::datetime!(2026-11-24 06:00:00 UTC);

const HOST: &str = "callenabler245.huaweicaas.com";

// Serialized directly (not through serde_json::Value): this is the load generator's hot path.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    event_type: &'a str,
    status_info: &'a CallStatusInfo,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FeeBody<'a> {
    event_type: &'a str,
    fee_lst: &'a [FeeInfo],
}

/// What one generated request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Status,
    /// A fee list of this many CDRs.
    Fee(usize),
}

/// A deterministic stream of bodies for one connection: the same seed gives the same kinds and
/// sizes; `run_id` keeps session ids of different runs apart.
pub struct Traffic {
    rng: StdRng,
    prefix: String,
    fee_share: f64,
    min_batch: usize,
    max_batch: usize,
    calls: u64,
    /// The call being played and its next stage.
    call: &'static [Stage],
    stage: usize,
    fees: u64,
}

impl Traffic {
    pub fn new(
        seed: u64,
        run_id: &str,
        connection: usize,
        fee_share: f64,
        batch: (usize, usize),
    ) -> Self {
        let (min_batch, max_batch) = (batch.0.max(1), batch.1.max(batch.0.max(1)));
        Self {
            rng: StdRng::seed_from_u64(
                seed ^ (connection as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            prefix: format!("load-{run_id}-{connection}"),
            fee_share,
            min_batch,
            max_batch,
            calls: 0,
            call: ANSWERED,
            stage: 0,
            fees: 0,
        }
    }

    fn pick_call(&mut self) -> &'static [Stage] {
        let mut draw = self.rng.random_range(0..100);
        for (weight, call) in CALLS {
            if draw < weight {
                return call;
            }
            draw -= weight;
        }
        ANSWERED
    }

    pub fn next_body(&mut self) -> (Kind, Bytes) {
        if self.rng.random_bool(self.fee_share) {
            let size = self.rng.random_range(self.min_batch..=self.max_batch);
            (Kind::Fee(size), self.fee_list(size))
        } else {
            (Kind::Status, self.status_event())
        }
    }

    fn status_event(&mut self) -> Bytes {
        if self.stage == 0 {
            self.call = self.pick_call();
        }
        let stage = &self.call[self.stage];
        let started = DAY + Duration::seconds(self.calls as i64);
        let info = CallStatusInfo {
            session_id: Some(format!("{}-c{}@{HOST}", self.prefix, self.calls)),
            timestamp: Some(format_platform_time(
                started + Duration::seconds(stage.after_secs),
            )),
            caller: Some("+867550000000".into()),
            called: Some("+8613800000002".into()),
            user_data: Some(format!("order-{}", self.calls)),
            state_code: stage.state_code,
            state_desc: stage.state_code.map(|code| state_desc(code).into()),
            digit_info: stage.digits.map(Into::into),
            ..CallStatusInfo::default()
        };
        self.stage += 1;
        if self.stage == self.call.len() {
            self.stage = 0;
            self.calls += 1;
        }
        let body = StatusBody {
            event_type: stage.event.as_str(),
            status_info: &info,
        };
        Bytes::from(serde_json::to_vec(&body).expect("serializable"))
    }

    fn fee_list(&mut self, size: usize) -> Bytes {
        self.fees += 1;
        // The platform puts CDRs of calls that ended in the same second in one push.
        let ended = DAY + Duration::seconds(self.fees as i64);
        let time = |before: i64| Some(format_platform_time(ended - Duration::seconds(before)));
        let records: Vec<FeeInfo> = (0..size)
            .map(|i| {
                let session = format!("{}-f{}-{i}@{HOST}", self.prefix, self.fees);
                let answered = self.rng.random_bool(0.8);
                FeeInfo {
                    direction: Some(0),
                    sp_id: Some("CaaS_Test_01".into()),
                    app_key: Some("loadtest".into()),
                    icid: Some(format!("CAE-{session}")),
                    bind_num: Some("+867550000000".into()),
                    session_id: Some(session),
                    caller_num: Some("+867550000000".into()),
                    callee_num: Some("+8613800000002".into()),
                    call_out_start_time: time(65),
                    call_out_alerting_time: time(63),
                    call_out_answer_time: if answered { time(60) } else { None },
                    call_end_time: time(0),
                    fail_time: if answered { None } else { time(0) },
                    // A callee who does not answer: Q.850 19, ringing timed out (514), SIP 480.
                    call_out_unasw_rsn: Some(if answered { 0 } else { 19 }),
                    ul_fail_reason: Some(if answered { 0 } else { 514 }),
                    sip_status_code: Some(if answered { 0 } else { 480 }),
                    record_flag: Some(0),
                    service_type: Some("001".into()),
                    host_name: Some(HOST.into()),
                    ..FeeInfo::default()
                }
            })
            .collect();
        let body = FeeBody {
            event_type: EventType::Fee.as_str(),
            fee_lst: &records,
        };
        Bytes::from(serde_json::to_vec(&body).expect("serializable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callhook_platform::callback::{Callback, parse_callback};

    #[test]
    fn generated_bodies_parse_as_the_platform_would_send_them() {
        let mut traffic = Traffic::new(7, "t", 0, 0.5, (1, 50));
        for _ in 0..200 {
            let (kind, body) = traffic.next_body();
            match (kind, parse_callback(&body).result) {
                (Kind::Status, Ok(Callback::Status(_))) => {}
                (Kind::Fee(n), Ok(Callback::Fee(batch))) => {
                    assert_eq!(batch.records.len(), n);
                    assert!(batch.rejected.is_empty());
                }
                (kind, other) => panic!("{kind:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn the_mix_has_every_event_type_failures_and_moving_times() {
        let mut traffic = Traffic::new(7, "t", 0, 0.0, (1, 50));
        let mut types = std::collections::BTreeSet::new();
        let mut codes = std::collections::BTreeSet::new();
        let mut times = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let (_, body) = traffic.next_body();
            let Ok(Callback::Status(event)) = parse_callback(&body).result else {
                panic!("a status event");
            };
            types.insert(event.event_type.as_str());
            codes.extend(event.info.state_code);
            times.extend(event.info.timestamp.clone());
        }
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            ["alerting", "answer", "callout", "collectInfo", "disconnect"]
        );
        assert_eq!(codes.into_iter().collect::<Vec<_>>(), [0, 8101, 8102]);
        assert!(times.len() > 100, "{} distinct times", times.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_sessions_never_repeat() {
        let kinds = |seed| {
            let mut traffic = Traffic::new(seed, "t", 3, 0.1, (1, 50));
            (0..100).map(|_| traffic.next_body()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(1), kinds(1));
        let bodies = kinds(1);
        let unique: std::collections::HashSet<_> = bodies.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(unique.len(), bodies.len());
    }
}
