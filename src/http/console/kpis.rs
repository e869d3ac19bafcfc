//! `GET /console/kpis`: the voice KPIs of a range and app, as charts: what `GET /v1/kpis`
//! answers (`store::kpis::compute`, the same filter checks), drawn. Each figure carries its
//! exact value in `data-value` beside the rounded one people read.

use axum::{extract::State, http::Uri};
use maud::{Markup, html};
use serde::Deserialize;
use time::{Duration, OffsetDateTime, macros::format_description};

use super::{
    PageError, PageResult, Viewer,
    layout::{self, Nav},
    live::{outcome_label, parse_time},
    present, show_time,
    svg::{self, Bar},
};
use crate::{
    calls::SCENARIOS,
    http::AppState,
    http::{api::params::parse_query, error::ApiError},
    store::kpis::{self, Bucket, KpiFilter},
};

/// The page's form: empty fields are absent (the range defaults to the last 24 whole hours and
/// the current one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    app_key: String,
    #[serde(default)]
    scenario: String,
}

/// As `<input type=datetime-local>` wants its value (UTC).
fn form_time(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// The start of the hour after `now` (UTC).
fn next_hour(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    now.replace_time(time::Time::from_hms(now.hour(), 0, 0).expect("a valid hour"))
        + Duration::hours(1)
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".into(), |r| format!("{:.1} %", 100.0 * r))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |s| format!("{s:.1} s"))
}

fn exact(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `≤ 5 s`, `> 60 s`.
fn bucket_label(bucket: &Bucket) -> String {
    match (bucket.from, bucket.to) {
        (_, Some(to)) => format!("≤{}", svg::short(to)),
        (Some(from), None) => format!(">{}", svg::short(from)),
        (None, None) => "all".into(),
    }
}

fn distribution(title: &str, buckets: &[Bucket], counted: &str) -> Markup {
    let bars: Vec<Bar> = buckets
        .iter()
        .map(|b| Bar::new(bucket_label(b), b.count as f64, b.count.to_string()))
        .collect();
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    svg::columns(title, &bars, max, &format!("{counted}; buckets in seconds"))
}

/// `GET /console/kpis`.
pub async fn page(State(state): State<AppState>, Viewer(viewer): Viewer, uri: Uri) -> PageResult {
    let fail = |e: ApiError| PageError::from_api(e, &viewer);
    let query: KpiQuery = parse_query(&uri).map_err(fail)?;
    let with_viewer = |mut e: PageError| {
        e.viewer = Some(viewer.clone());
        e
    };
    let to = parse_time("to", &query.to)
        .map_err(with_viewer)?
        .unwrap_or_else(|| next_hour(OffsetDateTime::now_utc()));
    let from = parse_time("from", &query.from)
        .map_err(with_viewer)?
        .unwrap_or(to - Duration::hours(25));
    let filter = KpiFilter {
        from,
        to,
        app_key: present(&query.app_key),
        scenario: present(&query.scenario),
        top_hangup_causes: state.config.kpis.top_hangup_causes,
    };
    filter
        .check(state.config.kpis.max_range_days)
        .map_err(|invalid| fail(ApiError::invalid_parameter(invalid.field, invalid.message)))?;
    let k = kpis::compute(&state.pool, &filter)
        .await
        .map_err(|e| fail(ApiError::from(e)))?;
    let t = &k.totals;
    let tile = |key: &str, what: &str, shown: String, value: String| {
        html! {
            div.tile data-kpi=(key) data-value=(value) {
                span.what { (what) }
                span.figure { (shown) }
            }
        }
    };
    let hourly: Vec<Bar> = k
        .hourly
        .iter()
        .map(|h| {
            let label = format!("{:02}h", h.hour.hour());
            let shown = format!(
                "{} ({} of {} calls)",
                percent(h.figures.asr),
                h.figures.answered,
                h.figures.calls
            );
            Bar::new(label, 100.0 * h.figures.asr.unwrap_or(0.0), shown)
        })
        .collect();
    let outcomes: Vec<Bar> = k
        .outcomes
        .iter()
        .filter(|o| o.calls > 0)
        .map(|o| {
            Bar::new(
                outcome_label(&o.outcome),
                o.calls as f64,
                o.calls.to_string(),
            )
            .class(format!("o-{}", o.outcome))
        })
        .collect();
    let causes: Vec<Bar> = k
        .hangup_causes
        .iter()
        .map(|c| {
            let label = match &c.meaning {
                Some(meaning) => format!("{} {meaning}", c.state_code),
                None => c.state_code.to_string(),
            };
            Bar::new(label, c.calls as f64, c.calls.to_string())
        })
        .collect();
    let body = html! {
        form.filters method="get" action="/console/kpis" {
            label { "From (UTC)" input type="datetime-local" name="from" value=(form_time(from)) step="1"; }
            label { "To (UTC)" input type="datetime-local" name="to" value=(form_time(to)) step="1"; }
            label { "App" input type="text" name="app_key" value=(query.app_key) list="apps"; }
            datalist #apps { @for app in &state.config.apps { option value=(app.key) {} } }
            label { "Scenario"
                select name="scenario" {
                    option value="" { "any" }
                    @for scenario in SCENARIOS {
                        option value=(scenario) selected[query.scenario == scenario] { (scenario) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        p.muted {
            "Calls that started from " (show_time(Some(from))) " to " (show_time(Some(to))) " UTC. "
            "Ratios and means are over the calls that ended; definitions: docs/kpis.md."
        }
        section.tiles {
            (tile("calls", "Calls ended", t.calls.to_string(), t.calls.to_string()))
            (tile("in_progress", "In progress", t.in_progress.to_string(), t.in_progress.to_string()))
            (tile("asr", "ASR (answered)", percent(t.asr), exact(t.asr)))
            (tile("ner", "NER (network effective)", percent(t.ner), exact(t.ner)))
            (tile("acd_seconds", "ACD (mean talk)", seconds(t.acd_seconds), exact(t.acd_seconds)))
            (tile("pdd_seconds", "PDD (post-dial delay)", seconds(t.pdd_seconds), exact(t.pdd_seconds)))
        }
        section {
            h2 { "Answer rate by hour (UTC)" }
            (svg::columns("Answer rate by hour", &hourly, 100.0, "ASR %"))
        }
        section.two {
            div {
                h2 { "Share of outcomes" }
                (svg::share("Share of outcomes", &outcomes))
            }
            div {
                h2 { "Top hang-up causes (stateCode)" }
                (svg::hbars("Top hang-up causes", &causes, None))
            }
        }
        section.two {
            div {
                h2 { "Ring time" }
                (distribution("Ring time", &k.ring_seconds, "calls"))
            }
            div {
                h2 { "Talk time (answered calls)" }
                (distribution("Talk time", &k.talk_seconds, "calls"))
            }
        }
        section {
            h2 { "Callback delay" }
            p.muted { "The platform's timestamp of each status event to our receipt (whole seconds on the platform's side)." }
            (distribution("Callback delay", &k.callback_delay, "status events"))
        }
    };
    Ok(layout::page("KPIs", Some(&viewer), Nav::Kpis, body))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_default_range_ends_at_the_next_hour() {
        assert_eq!(
            next_hour(datetime!(2026-11-20 10:17:03 UTC)),
            datetime!(2026-11-20 11:00 UTC)
        );
        assert_eq!(
            next_hour(datetime!(2026-11-20 18:17:03 +08:00)),
            datetime!(2026-11-20 11:00 UTC)
        );
        assert_eq!(
            form_time(datetime!(2026-11-20 11:00 UTC)),
            "2026-11-20T11:00:00"
        );
        assert_eq!(
            bucket_label(&Bucket {
                from: Some(60.0),
                to: None,
                count: 1
            }),
            ">60"
        );
        assert_eq!(
            bucket_label(&Bucket {
                from: None,
                to: Some(2.0),
                count: 1
            }),
            "≤2"
        );
    }
}
