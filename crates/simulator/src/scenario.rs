//! How a simulated call plays out: the status events the platform would push, in order and with
//! their (simulated) times, and the CDR that closes it. Values follow spec §1.5/§1.6 and the code
//! tables of §3; where the spec is silent (partyType values) the choice is ours and documented.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use callhook_platform::{
    callback::{CallStatusInfo, EventType, FeeInfo},
    time::format_platform_time,
};

/// How a call ends. Chosen per request (`userData` containing `sim-outcome=<name>`) or drawn
/// from the configured weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioOutcome {
    /// Answered, talked, the caller side releases normally.
    Answered,
    /// The called party never answers; ringing times out.
    NoAnswer,
    /// The called party is busy.
    Busy,
    /// The called party rejects the call while it rings.
    Rejected,
    /// Click-to-call: A hangs up while B is still ringing.
    CallerHangsUpFirst,
    /// Answered, talked, and the called party hangs up first.
    CalleeHangsUpFirst,
    /// The platform fails the call.
    PlatformFailure,
}

impl ScenarioOutcome {
    pub const ALL: [Self; 7] = [
        Self::Answered,
        Self::NoAnswer,
        Self::Busy,
        Self::Rejected,
        Self::CallerHangsUpFirst,
        Self::CalleeHangsUpFirst,
        Self::PlatformFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Rejected => "rejected",
            Self::CallerHangsUpFirst => "caller_hangs_up_first",
            Self::CalleeHangsUpFirst => "callee_hangs_up_first",
            Self::PlatformFailure => "platform_failure",
        }
    }

    /// `sim-outcome=<name>` anywhere in `userData` picks the outcome.
    pub fn requested_in(user_data: Option<&str>) -> Option<Self> {
        let rest = user_data?.split("sim-outcome=").nth(1)?;
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Failure fields of the failed leg: (stateCode, Q.850 cause, ulFailReason, SIP status).
    fn failure(self) -> Option<(i32, i32, i32, i32)> {
        match self {
            Self::NoAnswer => Some((8101, 19, 514, 480)),
            Self::Busy => Some((8102, 17, 518, 486)),
            Self::Rejected => Some((8004, 21, 515, 603)),
            Self::CallerHangsUpFirst => Some((8009, 16, 552, 487)),
            Self::PlatformFailure => Some((8000, 41, 517, 500)),
            Self::Answered | Self::CalleeHangsUpFirst => None,
        }
    }
}

/// Which API placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Two legs: the platform calls A, then B.
    ClickToCall,
    /// One leg; `collect` when a segment collects digits (then a `collectInfo` event).
    Notification {
        collect: bool,
    },
    Verification,
}

/// A call accepted by the simulated platform.
#[derive(Debug, Clone)]
pub struct CallPlan {
    pub session_id: String,
    pub app_key: String,
    pub service: Service,
    /// The number the platform shows (displayNbr).
    pub display: String,
    /// Click-to-call: the number shown to B (displayCalleeNbr).
    pub display_callee: Option<String>,
    /// Click-to-call: A (callerNbr); notification and verification: the user called.
    pub first_party: String,
    /// Click-to-call: B (calleeNbr).
    pub second_party: Option<String>,
    pub user_data: Option<String>,
    pub outcome: ScenarioOutcome,
    pub record: bool,
    pub started: OffsetDateTime,
}

/// One status push: when (simulated seconds after the start) and what.
#[derive(Debug, Clone)]
pub struct Step {
    pub after: Duration,
    pub event_type: EventType,
    pub info: CallStatusInfo,
}

/// partyType values are ⚠ UNKNOWN in the spec; the simulator uses "1" for the A side and "2" for
/// the B side.
const PARTY_A: &str = "1";
const PARTY_B: &str = "2";

/// The events and the CDR of a call, consistent with each other.
pub fn play(plan: &CallPlan) -> (Vec<Step>, FeeInfo) {
    let mut steps = Vec::new();
    let at = |secs: u64| plan.started + Duration::from_secs(secs);
    let time = |secs: u64| format_platform_time(at(secs));
    let mut push =
        |secs: u64, event_type: EventType, caller: &str, called: &str, extra: CallStatusInfo| {
            steps.push(Step {
                after: Duration::from_secs(secs),
                event_type,
                info: CallStatusInfo {
                    session_id: Some(plan.session_id.clone()),
                    timestamp: Some(time(secs)),
                    caller: Some(caller.to_owned()),
                    called: Some(called.to_owned()),
                    user_data: plan.user_data.clone(),
                    ..extra
                },
            });
        };
    let disconnect = |code: i32, party: Option<&str>| CallStatusInfo {
        state_code: Some(code),
        state_desc: Some(
            if code == 0 {
                "The user releases the call."
            } else {
                "The call failed."
            }
            .into(),
        ),
        party_type: party.map(str::to_owned),
        ..CallStatusInfo::default()
    };
    let mut cdr = FeeInfo {
        direction: Some(if plan.service == Service::ClickToCall {
            1
        } else {
            0
        }),
        sp_id: Some("CaaS_Simulator".into()),
        app_key: Some(plan.app_key.clone()),
        icid: Some(format!(
            "SIM-{}",
            plan.session_id
                .split('@')
                .next()
                .unwrap_or(&plan.session_id)
        )),
        bind_num: Some(plan.display.clone()),
        session_id: Some(plan.session_id.clone()),
        caller_num: Some(plan.display.clone()),
        callee_num: Some(plan.first_party.clone()),
        call_out_start_time: Some(time(0)),
        call_out_unasw_rsn: Some(0),
        ul_fail_reason: Some(0),
        sip_status_code: Some(0),
        record_flag: Some(0),
        tts_play_times: Some(0),
        tts_trans_duration: Some(0),
        service_type: Some(
            if plan.service == Service::ClickToCall {
                "002"
            } else {
                "001"
            }
            .into(),
        ),
        host_name: Some("callenabler.simulator".into()),
        user_data: plan.user_data.clone(),
        ..FeeInfo::default()
    };
    let display = plan.display.as_str();
    let a = plan.first_party.as_str();
    let failure = plan.outcome.failure();

    // Leg A (the only leg of notifications and verifications): callout, alerting at +2 s,
    // answered at +5 s unless the failure is on this leg.
    push(0, EventType::Callout, display, a, CallStatusInfo::default());
    push(
        2,
        EventType::Alerting,
        display,
        a,
        CallStatusInfo::default(),
    );
    cdr.call_out_alerting_time = Some(time(2));
    let two_legs =
        plan.service == Service::ClickToCall && plan.outcome != ScenarioOutcome::PlatformFailure;
    if !two_legs && let Some((state, q850, reason, sip)) = failure {
        push(
            20,
            EventType::Disconnect,
            display,
            a,
            disconnect(state, None),
        );
        cdr.call_out_unasw_rsn = Some(q850);
        cdr.ul_fail_reason = Some(reason);
        cdr.sip_status_code = Some(sip);
        cdr.fail_time = Some(time(20));
        cdr.call_end_time = Some(time(20));
        return (steps, cdr);
    }
    push(5, EventType::Answer, display, a, CallStatusInfo::default());
    cdr.call_out_answer_time = Some(time(5));

    match plan.service {
        Service::Notification { collect } => {
            if collect {
                push(
                    12,
                    EventType::CollectInfo,
                    display,
                    a,
                    CallStatusInfo {
                        digit_info: Some("1".into()),
                        ..Default::default()
                    },
                );
                cdr.dyn_ivr_start_time = Some(time(6));
                cdr.dyn_ivr_path = Some("1".into());
            }
            cdr.tts_play_times = Some(1);
            cdr.tts_trans_duration = Some(1);
            push(15, EventType::Disconnect, display, a, disconnect(0, None));
            cdr.call_end_time = Some(time(15));
        }
        Service::Verification => {
            cdr.tts_play_times = Some(3);
            push(15, EventType::Disconnect, display, a, disconnect(0, None));
            cdr.call_end_time = Some(time(15));
        }
        Service::ClickToCall => {
            let b = plan.second_party.as_deref().unwrap_or_default();
            let shown_to_b = plan.display_callee.as_deref().unwrap_or(display);
            cdr.fwd_display_num = Some(shown_to_b.to_owned());
            cdr.fwd_dst_num = Some(b.to_owned());
            cdr.fwd_start_time = Some(time(6));
            push(
                6,
                EventType::Callout,
                shown_to_b,
                b,
                CallStatusInfo::default(),
            );
            push(
                8,
                EventType::Alerting,
                shown_to_b,
                b,
                CallStatusInfo::default(),
            );
            cdr.fwd_alerting_time = Some(time(8));
            if let Some((state, q850, reason, sip)) = failure {
                // B's leg fails; A is released with the same cause.
                let end = if plan.outcome == ScenarioOutcome::CallerHangsUpFirst {
                    12
                } else {
                    30
                };
                let party = if plan.outcome == ScenarioOutcome::CallerHangsUpFirst {
                    PARTY_A
                } else {
                    PARTY_B
                };
                push(
                    end,
                    EventType::Disconnect,
                    shown_to_b,
                    b,
                    disconnect(state, Some(party)),
                );
                push(
                    end,
                    EventType::Disconnect,
                    display,
                    a,
                    disconnect(state, Some(party)),
                );
                cdr.fwd_unasw_rsn = Some(q850);
                cdr.ul_fail_reason = Some(reason);
                cdr.sip_status_code = Some(sip);
                cdr.fail_time = Some(time(end));
                cdr.call_end_time = Some(time(end));
            } else {
                push(
                    10,
                    EventType::Answer,
                    shown_to_b,
                    b,
                    CallStatusInfo::default(),
                );
                cdr.fwd_answer_time = Some(time(10));
                let party = if plan.outcome == ScenarioOutcome::CalleeHangsUpFirst {
                    PARTY_B
                } else {
                    PARTY_A
                };
                let (first, second) = if party == PARTY_B {
                    ((shown_to_b, b), (display, a))
                } else {
                    ((display, a), (shown_to_b, b))
                };
                push(
                    70,
                    EventType::Disconnect,
                    first.0,
                    first.1,
                    disconnect(0, Some(party)),
                );
                push(
                    70,
                    EventType::Disconnect,
                    second.0,
                    second.1,
                    disconnect(0, Some(party)),
                );
                cdr.call_end_time = Some(time(70));
                if plan.record {
                    cdr.record_flag = Some(1);
                    cdr.record_start_time = Some(time(10));
                    cdr.record_object_name =
                        Some(format!("{}.wav", cdr.icid.clone().unwrap_or_default()));
                    cdr.record_bucket_name = Some("sim-recordings".into());
                    cdr.record_domain = Some("recordings.simulator".into());
                }
            }
        }
    }
    (steps, cdr)
}

/// The CDR of a call stopped (callStop) at `at`: what had not happened by then did not happen.
/// Platform times (`yyyy-MM-dd HH:mm:ss`) sort as text.
pub fn stop_cdr_at(cdr: &mut FeeInfo, at: &str) {
    for time in [
        &mut cdr.call_out_start_time,
        &mut cdr.call_out_alerting_time,
        &mut cdr.call_out_answer_time,
        &mut cdr.fwd_start_time,
        &mut cdr.fwd_alerting_time,
        &mut cdr.fwd_answer_time,
        &mut cdr.fail_time,
        &mut cdr.record_start_time,
    ] {
        if time.as_deref().is_some_and(|t| t > at) {
            *time = None;
        }
    }
    if cdr.fail_time.is_none() {
        // The failure came after the stop: it did not happen.
        cdr.fwd_unasw_rsn = Some(0);
        cdr.call_out_unasw_rsn = Some(0);
        cdr.sip_status_code = Some(0);
        cdr.ul_fail_reason = None;
    }
    if cdr.dyn_ivr_start_time.as_deref().is_none_or(|t| t > at) {
        cdr.dyn_ivr_start_time = None;
        cdr.dyn_ivr_path = None;
    }
    if cdr.fwd_start_time.is_none() {
        cdr.fwd_display_num = None;
        cdr.fwd_dst_num = None;
    }
    if cdr.record_start_time.is_none() {
        cdr.record_flag = Some(0);
        cdr.record_object_name = None;
        cdr.record_bucket_name = None;
        cdr.record_domain = None;
        cdr.record_file_download_url = None;
    }
    cdr.call_end_time = Some(at.to_owned());
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn plan(service: Service, outcome: ScenarioOutcome) -> CallPlan {
        CallPlan {
            session_id: "1_2_3_20261124060000@callenabler.simulator".into(),
            app_key: "app".into(),
            service,
            display: "+867550000000".into(),
            display_callee: None,
            first_party: "+8613800000001".into(),
            second_party: Some("+8613800000002".into()),
            user_data: Some("u".into()),
            outcome,
            record: false,
            started: datetime!(2026-11-24 06:00:00 UTC),
        }
    }

    #[test]
    fn an_answered_click_to_call_has_both_legs_and_a_matching_cdr() {
        let (steps, cdr) = play(&plan(Service::ClickToCall, ScenarioOutcome::Answered));
        let types: Vec<&str> = steps.iter().map(|s| s.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "callout",
                "alerting",
                "answer",
                "callout",
                "alerting",
                "answer",
                "disconnect",
                "disconnect"
            ]
        );
        assert_eq!(cdr.fwd_answer_time.as_deref(), Some("2026-11-24 06:00:10"));
        assert_eq!(cdr.call_end_time, steps.last().unwrap().info.timestamp);
        assert_eq!(steps.last().unwrap().info.state_code, Some(0));
    }

    #[test]
    fn a_call_stopped_while_a_answers_has_a_cdr_without_what_came_after() {
        let mut planned = plan(Service::ClickToCall, ScenarioOutcome::Answered);
        planned.record = true;
        let (_, mut cdr) = play(&planned);
        assert!(cdr.fwd_answer_time.is_some() && cdr.record_start_time.is_some());

        stop_cdr_at(&mut cdr, "2026-11-24 06:00:05");

        assert_eq!(
            cdr.call_out_start_time.as_deref(),
            Some("2026-11-24 06:00:00")
        );
        assert_eq!(
            cdr.call_out_answer_time.as_deref(),
            Some("2026-11-24 06:00:05")
        );
        assert_eq!(
            (&cdr.fwd_start_time, &cdr.fwd_answer_time, &cdr.fwd_dst_num),
            (&None, &None, &None)
        );
        assert_eq!((cdr.record_flag, &cdr.record_object_name), (Some(0), &None));
        assert_eq!(cdr.call_end_time.as_deref(), Some("2026-11-24 06:00:05"));
    }

    #[test]
    fn a_call_stopped_before_its_failure_carries_no_failure_codes() {
        let (_, mut cdr) = play(&plan(Service::ClickToCall, ScenarioOutcome::Busy));
        assert_eq!(
            (cdr.fwd_unasw_rsn, cdr.sip_status_code),
            (Some(17), Some(486))
        );

        stop_cdr_at(&mut cdr, "2026-11-24 06:00:05");

        assert_eq!(
            (
                cdr.fwd_unasw_rsn,
                cdr.sip_status_code,
                cdr.ul_fail_reason,
                &cdr.fail_time
            ),
            (Some(0), Some(0), None, &None)
        );
    }

    #[test]
    fn a_busy_callee_fails_the_second_leg_with_the_documented_codes() {
        let (steps, cdr) = play(&plan(Service::ClickToCall, ScenarioOutcome::Busy));
        assert!(steps.iter().all(|s| s.event_type != EventType::Answer
            || s.info.called.as_deref() != Some("+8613800000002")));
        assert_eq!(
            (cdr.fwd_unasw_rsn, cdr.sip_status_code),
            (Some(17), Some(486))
        );
        assert_eq!(steps.last().unwrap().info.state_code, Some(8102));
    }

    #[test]
    fn a_notification_with_collection_reports_the_digits() {
        let (steps, _) = play(&plan(
            Service::Notification { collect: true },
            ScenarioOutcome::Answered,
        ));
        assert!(
            steps.iter().any(|s| s.event_type == EventType::CollectInfo
                && s.info.digit_info.as_deref() == Some("1"))
        );
    }

    #[test]
    fn the_outcome_can_be_requested_through_user_data() {
        assert_eq!(
            ScenarioOutcome::requested_in(Some("order-7;sim-outcome=busy")),
            Some(ScenarioOutcome::Busy)
        );
        assert_eq!(
            ScenarioOutcome::requested_in(Some("sim-outcome=callee_hangs_up_first")),
            Some(ScenarioOutcome::CalleeHangsUpFirst)
        );
        assert_eq!(
            ScenarioOutcome::requested_in(Some("sim-outcome=nonsense")),
            None
        );
    }
}
