//! `GET /console`: the newest calls, kept current without a reload.
//!
//! The page subscribes to `/v1/stream` (EventSource, with the session cookie). An event is
//! only a nudge: the script then fetches `/console/live/rows` with the page's filters, and the
//! server renders the rows again with the same template, filters and masking as the first
//! render. So a filter, a format or a mask exists once, and a missed or out-of-order event
//! costs nothing (the next fetch shows the current state).

use axum::{
    extract::State,
    http::{StatusCode, Uri},
};
use maud::{Markup, html};
use serde::Deserialize;
use time::{OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339};

use super::{
    PageError, PageResult, Viewer, encode_segment,
    layout::{self, Nav},
    present, show_seconds, show_time,
};
use crate::{
    http::AppState,
    http::api::{
        ApiCaller,
        params::{CallOutcome, check_call_filter, parse_query},
        view::{mask_call, scoped},
    },
    store::read::{self, CallFilter, CallRow},
};

/// The filters of the page, as its form sends them (empty fields are absent filters).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// UTC, as `<input type=datetime-local>` writes it, or RFC 3339.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    app_key: String,
    #[serde(default)]
    outcome: String,
    /// Full scope only.
    #[serde(default)]
    number: String,
}

/// A time of the form: `2026-11-20T10:00`, `2026-11-20T10:00:05` (UTC) or RFC 3339.
pub fn parse_time(field: &str, value: &str) -> Result<Option<OffsetDateTime>, PageError> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    if let Ok(at) = OffsetDateTime::parse(&value, &Rfc3339) {
        return Ok(Some(at));
    }
    let minutes = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(&value, &minutes)
        .or_else(|_| PrimitiveDateTime::parse(&value, &seconds))
        .map(|at| Some(at.assume_utc()))
        .map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("{field} must be a time like 2026-11-20T10:00 (UTC) or RFC 3339"),
            )
        })
}

impl LiveQuery {
    fn filter(&self) -> Result<CallFilter, PageError> {
        let outcome = match present(&self.outcome) {
            Some(outcome) => Some(
                CallOutcome::ALL
                    .into_iter()
                    .find(|o| o.as_str() == outcome)
                    .ok_or_else(|| {
                        PageError::new(
                            StatusCode::BAD_REQUEST,
                            format!("outcome {outcome:?} is not one of the outcomes of a call"),
                        )
                    })?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(CallFilter {
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            number: present(&self.number),
            outcome,
            app_key: present(&self.app_key),
            ..CallFilter::default()
        })
    }
}

/// The newest calls matching the query, masked for the viewer.
async fn newest(
    state: &AppState,
    viewer: &ApiCaller,
    uri: &Uri,
) -> Result<(LiveQuery, Vec<CallRow>), PageError> {
    let query: LiveQuery = parse_query(uri).map_err(|e| PageError::from_api(e, viewer))?;
    let filter = query.filter().map_err(|mut e| {
        e.viewer = Some(viewer.clone());
        e
    })?;
    check_call_filter(viewer, &filter).map_err(|e| PageError::from_api(e, viewer))?;
    let rows = read::calls(
        &state.pool,
        &filter,
        None,
        i64::from(state.config.console.rows),
    )
    .await
    .map_err(|e| PageError::from_api(crate::http::error::ApiError::from(e), viewer))?;
    let rows = rows
        .into_iter()
        .map(|call| scoped(viewer.scope, call, mask_call))
        .collect();
    Ok((query, rows))
}

/// `GET /console`.
pub async fn page(State(state): State<AppState>, Viewer(viewer): Viewer, uri: Uri) -> PageResult {
    let (query, rows) = newest(&state, &viewer, &uri).await?;
    let rows_url = format!("/console/live/rows?{}", uri.query().unwrap_or(""));
    let stream_url = match present(&query.app_key) {
        Some(app) => format!(
            "/v1/stream?app_key={}",
            form_urlencoded::byte_serialize(app.as_bytes()).collect::<String>()
        ),
        None => "/v1/stream".to_owned(),
    };
    let apps: Vec<&str> = state.config.apps.iter().map(|a| a.key.as_str()).collect();
    let body = html! {
        form.filters method="get" action="/console" {
            label { "From (UTC)" input type="datetime-local" name="from" value=(query.from) step="1"; }
            label { "To (UTC)" input type="datetime-local" name="to" value=(query.to) step="1"; }
            label { "App" input type="text" name="app_key" value=(query.app_key) list="apps"; }
            datalist #apps { @for app in &apps { option value=(app) {} } }
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any" }
                    @for outcome in CallOutcome::ALL {
                        option value=(outcome.as_str()) selected[query.outcome == outcome.as_str()] {
                            (outcome_label(outcome.as_str()))
                        }
                    }
                }
            }
            @if viewer.full() {
                label { "Number" input type="text" name="number" value=(query.number) placeholder="+8613800000001"; }
            }
            button type="submit" { "Filter" }
            a href="/console" { "clear" }
        }
        p.live-state #live-state { "Connecting to the live stream…" }
        table.calls {
            thead { tr {
                th { "Started (UTC)" } th { "Scenario" } th { "App" } th { "Caller → callee" }
                th { "Outcome" } th.num { "Ring" } th.num { "Talk" } th { "Hang-up cause" } th { "CDR" }
            } }
            tbody #live-rows data-rows-url=(rows_url) data-stream-url=(stream_url) {
                (render_rows(&rows))
            }
        }
    };
    Ok(layout::page("Live calls", Some(&viewer), Nav::Live, body))
}

/// `GET /console/live/rows`: the table's rows alone, for the page's script.
pub async fn rows(State(state): State<AppState>, Viewer(viewer): Viewer, uri: Uri) -> PageResult {
    let (_, rows) = newest(&state, &viewer, &uri).await?;
    Ok(render_rows(&rows))
}

fn render_rows(rows: &[CallRow]) -> Markup {
    html! {
        @if rows.is_empty() {
            tr.empty { td colspan="9" { "No calls yet. New ones appear here as they happen." } }
        }
        @for call in rows {
            @let href = format!("/console/calls/{}", encode_segment(&call.session_id));
            tr data-session=(call.session_id) data-updated=(call.updated_at.unix_timestamp_nanos()) {
                td { a href=(href) { (show_time(Some(call.started_at.unwrap_or(call.last_callback_at)))) } }
                td { (call.scenario) }
                td { (call.app_key.as_deref().unwrap_or("–")) }
                td.numbers { (call.caller.as_deref().unwrap_or("–")) " → " (call.callee.as_deref().unwrap_or("–")) }
                td { (outcome_badge(&call.outcome)) }
                td.num { (show_seconds(call.ring_seconds)) }
                td.num { (show_seconds(call.talk_seconds)) }
                td { (hangup_cause(call)) }
                td { @if call.has_cdr { "✓" } @else { "–" } }
            }
        }
    }
}

/// How an outcome is written for people.
pub fn outcome_label(outcome: &str) -> &str {
    match outcome {
        "in_progress" => "in progress",
        "answered" => "answered",
        "no_answer" => "no answer",
        "busy" => "busy",
        "rejected" => "rejected",
        "caller_hung_up" => "caller hung up",
        "failed" => "failed",
        other => other,
    }
}

pub fn outcome_badge(outcome: &str) -> Markup {
    html! { span class={ "badge o-" (outcome) } { (outcome_label(outcome)) } }
}

/// The decoded hang-up cause: the platform's stateCode, else the Q.850 cause.
pub fn hangup_cause(call: &CallRow) -> Markup {
    html! {
        @if let Some(code) = call.state_code {
            span.code { (code) } " " (call.state_meaning.as_deref().unwrap_or(""))
        } @else if let Some(cause) = call.q850_cause {
            span.code { "Q.850 " (cause) } " " (call.q850_meaning.as_deref().unwrap_or(""))
        } @else {
            "–"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc_and_bad_ones_are_named() {
        assert_eq!(
            parse_time("from", "2026-11-20T10:00").unwrap(),
            Some(time::macros::datetime!(2026-11-20 10:00 UTC))
        );
        assert_eq!(
            parse_time("from", "2026-11-20T10:00:05").unwrap(),
            Some(time::macros::datetime!(2026-11-20 10:00:05 UTC))
        );
        assert_eq!(
            parse_time("to", "2026-11-20T18:00:00+08:00").unwrap(),
            Some(time::macros::datetime!(2026-11-20 10:00 UTC))
        );
        assert_eq!(parse_time("to", " ").unwrap(), None);
        let error = parse_time("to", "yesterday").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("to "), "{}", error.message);
    }
}
