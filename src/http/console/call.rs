//! `GET /console/calls/{session_id}`: one call. Its legs' stages on a time axis (SVG), the
//! decoded hang-up cause, its events and CDRs, and the requests that brought them with their
//! signature verdicts: what `GET /v1/calls/{session_id}` answers, drawn.

use axum::extract::{Path, State, rejection::PathRejection};
use maud::{Markup, html};
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    PageError, PageResult, Viewer,
    layout::{self, Nav},
    live::{hangup_cause, outcome_badge},
    show_seconds, show_time,
};
use crate::{
    http::AppState,
    http::{
        api::view::{CallDetailView, RawCallbackView},
        error::ApiError,
    },
    store::read::{self, CallRow},
};

/// `GET /console/calls/{session_id}`.
pub async fn page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    session_id: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(session_id) = session_id.map_err(|e| {
        PageError::from_api(
            ApiError::invalid_parameter("session_id", e.body_text()),
            &viewer,
        )
    })?;
    let detail = read::call_detail(&state.pool, &session_id)
        .await
        .map_err(|e| PageError::from_api(ApiError::from(e), &viewer))?
        .ok_or_else(|| {
            PageError::from_api(
                ApiError::not_found("call_not_found", "no call with this sessionId"),
                &viewer,
            )
        })?;
    let detail = CallDetailView::new(detail, viewer.scope);
    let call = &detail.call;
    let body = html! {
        section.summary {
            dl {
                dt { "Session" } dd.mono { (call.session_id) }
                dt { "Scenario" } dd { (call.scenario) }
                dt { "App" } dd { (call.app_key.as_deref().unwrap_or("–")) }
                dt { "Caller (A)" } dd.numbers { (call.caller.as_deref().unwrap_or("–")) }
                dt { "Callee (B)" } dd.numbers { (call.callee.as_deref().unwrap_or("–")) }
                dt { "Display number" } dd.numbers { (call.display_number.as_deref().unwrap_or("–")) }
                dt { "Outcome" } dd { (outcome_badge(&call.outcome)) }
                dt { "Started" } dd { (show_time(call.started_at)) }
                dt { "Ended" } dd { (show_time(call.ended_at)) }
                dt { "Ring" } dd { (show_seconds(call.ring_seconds)) }
                dt { "Talk" } dd { (show_seconds(call.talk_seconds)) }
                dt { "Hang-up cause" } dd { (hangup_cause(call)) }
                dt { "CDR" } dd { @if call.has_cdr { "arrived" } @else { "not yet" } }
                @if let Some(user_data) = &call.user_data { dt { "userData" } dd.mono { (user_data) } }
                @if let Some(digits) = &call.digits { dt { "Digits" } dd.mono { (digits) } }
            }
        }
        section {
            h2 { "Timeline" }
            (timeline(call))
        }
        section {
            h2 { "Why it ended" }
            table.kv {
                tr { th { "stateCode" } td { (code(call.state_code)) } td { (call.state_meaning.as_deref().unwrap_or("")) } }
                tr { th { "partyType" } td { (call.party_type.as_deref().unwrap_or("–")) } td.muted { "as sent (its values are not documented)" } }
                tr { th { "Q.850 cause" } td { (code(call.q850_cause)) } td { (call.q850_meaning.as_deref().unwrap_or("")) } }
                tr { th { "ulFailReason" } td { (code(call.ul_fail_reason)) } td { (call.ul_fail_meaning.as_deref().unwrap_or("")) } }
                tr { th { "SIP status" } td { (code(call.sip_status_code)) } td {} }
            }
        }
        section {
            h2 { "Status events (" (detail.events.len()) ")" }
            table.events {
                thead { tr { th { "Time (UTC)" } th { "Event" } th { "Caller" } th { "Called" } th { "stateCode" } th { "stateDesc" } th { "partyType" } th { "Digits" } } }
                tbody {
                    @for event in &detail.events {
                        tr {
                            td { (show_time(event.event_at)) }
                            td { (event.event_type) }
                            td.numbers { (event.caller.as_deref().unwrap_or("–")) }
                            td.numbers { (event.called.as_deref().unwrap_or("–")) }
                            td { (code(event.state_code)) }
                            td { (event.state_desc.as_deref().unwrap_or("")) }
                            td { (event.party_type.as_deref().unwrap_or("")) }
                            td { (event.digit_info.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "CDR" }
            @if detail.cdrs.is_empty() { p.muted { "No CDR has arrived for this call yet." } }
            @for cdr in &detail.cdrs {
                (fields(&serde_json::to_value(cdr).unwrap_or_default()))
            }
        }
        @if let Some(placed) = &detail.placed_call {
            section {
                h2 { "Placed by callhook" }
                table.kv {
                    tr { th { "Operation" } td { (placed.operation) } }
                    tr { th { "Outcome" } td { (placed.outcome) } }
                    tr { th { "resultcode" } td { (placed.result_code.as_deref().unwrap_or("–")) " " (placed.result_desc.as_deref().unwrap_or("")) } }
                    tr { th { "Requested" } td { (show_time(Some(placed.requested_at))) } }
                }
            }
        }
        section {
            h2 { "Callbacks received (" (detail.raw_callbacks.len()) ")" }
            (callbacks(&detail.raw_callbacks))
        }
    };
    Ok(layout::page("Call", Some(&viewer), Nav::None, body))
}

fn code(code: Option<i32>) -> String {
    code.map_or_else(|| "–".into(), |c| c.to_string())
}

/// Every field of a row that has a value, as stored (already masked by scope).
fn fields(row: &Value) -> Markup {
    html! {
        table.kv.fields {
            @if let Value::Object(map) = row {
                @for (key, value) in map {
                    @if !value.is_null() {
                        tr {
                            th { (key) }
                            td.mono { @match value { Value::String(text) => (text), other => (other.to_string()) } }
                        }
                    }
                }
            }
        }
    }
}

/// The requests that brought this call's facts, with their signature verdicts.
pub fn callbacks(raws: &[RawCallbackView]) -> Markup {
    html! {
        table.callbacks {
            thead { tr { th { "Received (UTC)" } th { "Endpoint" } th { "eventType" } th { "Signature" } th { "Outcome" } th { "HTTP" } th { "Body" } } }
            tbody {
                @for raw in raws {
                    tr {
                        td { (show_time(Some(raw.received_at))) }
                        td { (raw.endpoint) }
                        td { (raw.event_type.as_deref().unwrap_or("–")) }
                        td { (verdict(&raw.signature_verdict)) }
                        td { (raw.outcome) }
                        td { (raw.http_status) }
                        td { (raw_body(raw)) }
                    }
                }
            }
        }
    }
}

pub fn verdict(verdict: &str) -> Markup {
    let class = match verdict {
        "valid" => "ok",
        "not_checked" => "neutral",
        _ => "bad",
    };
    html! { span class={ "badge verdict " (class) } { (verdict.replace('_', " ")) } }
}

pub fn raw_body(raw: &RawCallbackView) -> Markup {
    html! {
        details {
            summary { "show" }
            p.muted { "Headers" }
            pre { (serde_json::to_string_pretty(&raw.headers).unwrap_or_default()) }
            p.muted { "Body (" (format!("{:?}", raw.body_encoding).to_lowercase()) @if raw.body_truncated { ", truncated" } ")" }
            pre { (pretty(raw.body.as_deref())) }
        }
    }
}

/// JSON bodies indented; anything else as it is.
fn pretty(body: Option<&str>) -> String {
    match body {
        None => "(not shown)".into(),
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|json| serde_json::to_string_pretty(&json).ok())
            .unwrap_or_else(|| text.to_owned()),
    }
}

/// One leg's stage times: callout, alerting, answer, disconnect.
struct Leg {
    name: &'static str,
    stages: [(&'static str, Option<OffsetDateTime>); 4],
}

impl Leg {
    fn of(call: &CallRow) -> [Self; 2] {
        [
            Self {
                name: "A",
                stages: [
                    ("callout", call.a_callout_at),
                    ("alerting", call.a_alerting_at),
                    ("answer", call.a_answer_at),
                    ("disconnect", call.a_disconnect_at),
                ],
            },
            Self {
                name: "B",
                stages: [
                    ("callout", call.b_callout_at),
                    ("alerting", call.b_alerting_at),
                    ("answer", call.b_answer_at),
                    ("disconnect", call.b_disconnect_at),
                ],
            },
        ]
    }

    fn known(&self) -> bool {
        self.stages.iter().any(|(_, at)| at.is_some())
    }

    /// The spans between stages: dialling (callout → alerting), ringing (→ answer), talking
    /// (→ disconnect), each ending at the next stage that is known, or at `end` while the
    /// call goes on.
    fn spans(&self, end: OffsetDateTime) -> Vec<(&'static str, OffsetDateTime, OffsetDateTime)> {
        let kinds = ["dialling", "ringing", "talking"];
        let mut spans = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let Some(start) = self.stages[i].1 else {
                continue;
            };
            let stop = self.stages[i + 1..].iter().find_map(|(_, at)| *at);
            let disconnected = self.stages[3].1;
            let stop = match (stop, disconnected) {
                (Some(stop), _) => stop,
                (None, None) => end,
                (None, Some(_)) => continue,
            };
            if stop >= start {
                spans.push((*kind, start, stop));
            }
        }
        spans
    }
}

/// The tick step, in seconds, that puts about six ticks on `span` seconds.
fn tick_step(span: f64) -> f64 {
    const STEPS: &[f64] = &[
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|step| span / step <= 8.0)
        .unwrap_or(7200.0)
}

/// Both legs' stages on one time axis.
pub fn timeline(call: &CallRow) -> Markup {
    let legs: Vec<Leg> = Leg::of(call).into_iter().filter(Leg::known).collect();
    let times: Vec<OffsetDateTime> = legs
        .iter()
        .flat_map(|leg| leg.stages.iter().filter_map(|(_, at)| *at))
        .collect();
    let (Some(start), Some(last)) = (times.iter().min().copied(), times.iter().max().copied())
    else {
        return html! { p.muted { "No stage of this call has a readable time yet." } };
    };
    let in_progress = call.outcome == "in_progress";
    let end = if in_progress {
        last.max(call.last_callback_at)
    } else {
        last
    };
    let span = ((end - start).as_seconds_f64()).max(1.0);
    const WIDTH: f64 = 1100.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 40.0;
    const LANE: f64 = 78.0;
    const TOP: f64 = 64.0;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |at: OffsetDateTime| LEFT + plot * ((at - start).as_seconds_f64() / span);
    let height = TOP + LANE * legs.len() as f64;
    let axis_y = height - 24.0;
    let step = tick_step(span);
    let ticks: Vec<f64> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= span + 0.001)
        .collect();
    html! {
        svg.chart.timeline viewBox={ "0 0 " (WIDTH) " " (height) } role="img"
            aria-label="The legs' stages on a time axis" {
            title { "Stages of leg A and leg B, seconds after the first callout" }
            g.legend {
                @for (i, kind) in ["dialling", "ringing", "talking"].iter().enumerate() {
                    rect class={ "span " (kind) } x=(LEFT + 100.0 * i as f64) y="4" width="12" height="10" rx="2" {}
                    text.tick x=(LEFT + 100.0 * i as f64 + 16.0) y="13" { (kind) }
                }
                @if in_progress {
                    text.tick x=(LEFT + 320.0) y="13" { "in progress: spans end at the last callback" }
                }
            }
            @for t in &ticks {
                @let tx = LEFT + plot * (t / span);
                line.grid x1=(tx) y1="24" x2=(tx) y2=(axis_y) {}
                text.tick x=(tx) y=(axis_y + 16.0) text-anchor="middle" { "+" (t) " s" }
            }
            @for (i, leg) in legs.iter().enumerate() {
                @let y = TOP - 8.0 + LANE * i as f64;
                @let labels = label_rows(&leg.stages.map(|(_, at)| at.map(x)));
                g.leg data-leg=(leg.name) {
                    text.leg-name x="8" y=(y + 5.0) { "leg " (leg.name) }
                    line.lane x1=(LEFT) y1=(y) x2=(LEFT + plot) y2=(y) {}
                    @for (kind, from, to) in leg.spans(end) {
                        rect class={ "span " (kind) } x=(x(from)) y=(y - 9.0) width=((x(to) - x(from)).max(2.0)) height="18" rx="3" {
                            title { "leg " (leg.name) " " (kind) ": " ((to - from).whole_seconds()) " s" }
                        }
                    }
                    @for ((stage, at), above) in leg.stages.iter().zip(labels) {
                        @if let Some(at) = at {
                            g.stage data-stage=(stage) {
                                title { "leg " (leg.name) " " (stage) " at " (show_time(Some(*at))) }
                                circle class={ "mark " (stage) } cx=(x(*at)) cy=(y) r="6" {}
                                text.stage-label x=(x(*at)) y=(if above { y - 15.0 } else { y + 25.0 }) text-anchor="middle" { (stage) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether each stage's label goes above its mark (else below), so that labels of stages
/// close together do not overlap: a label goes below when the last one above is too near.
fn label_rows(xs: &[Option<f64>; 4]) -> [bool; 4] {
    const ROOM: f64 = 64.0;
    let mut rows = [true; 4];
    let (mut last_above, mut last_below) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (i, x) in xs.iter().enumerate() {
        let Some(x) = *x else { continue };
        let above = x - last_above >= ROOM || x - last_below < ROOM && last_above <= last_below;
        rows[i] = above;
        if above {
            last_above = x;
        } else {
            last_below = x;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn labels_of_close_stages_alternate() {
        assert_eq!(
            label_rows(&[Some(0.0), Some(20.0), Some(40.0), Some(900.0)]),
            [true, false, true, true]
        );
        assert_eq!(
            label_rows(&[Some(0.0), None, Some(200.0), Some(230.0)]),
            [true, true, true, false]
        );
    }

    #[test]
    fn ticks_are_few_and_round() {
        assert_eq!(tick_step(5.0), 1.0);
        assert_eq!(tick_step(70.0), 10.0);
        assert_eq!(tick_step(400.0), 60.0);
        assert_eq!(tick_step(100_000.0), 7200.0);
    }

    #[test]
    fn spans_run_from_stage_to_stage_and_skip_what_is_unknown() {
        let t = |s: i64| datetime!(2026-11-20 10:00 UTC) + time::Duration::seconds(s);
        let leg = Leg {
            name: "B",
            stages: [
                ("callout", Some(t(6))),
                ("alerting", None),
                ("answer", Some(t(10))),
                ("disconnect", Some(t(70))),
            ],
        };
        assert_eq!(
            leg.spans(t(70)),
            vec![("dialling", t(6), t(10)), ("talking", t(10), t(70))]
        );
        let ringing = Leg {
            name: "A",
            stages: [
                ("callout", Some(t(0))),
                ("alerting", Some(t(2))),
                ("answer", None),
                ("disconnect", None),
            ],
        };
        // Still ringing: the span runs to the end of the axis.
        assert_eq!(
            ringing.spans(t(9)),
            vec![("dialling", t(0), t(2)), ("ringing", t(2), t(9))]
        );
    }
}
