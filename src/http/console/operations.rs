//! `GET /console/operations`: what `/readyz` and `/metrics` know, drawn. Readiness is computed
//! exactly as `/readyz` does (`ops::readiness`); the figures are read back from the text
//! `/metrics` would answer (`ops::render_metrics`), so the page can show nothing Prometheus
//! would not see. Counters and histograms are this replica's since it started.

use axum::extract::State;
use maud::html;

use super::{
    PageResult, Viewer,
    layout::{self, Nav},
    svg::{self, Bar},
};
use crate::{
    http::AppState,
    http::ops::{self, Accepting, DatabaseStatus, MigrationStatus, ReadyStatus},
    metrics as m,
};

/// One sample of the Prometheus text format: `name{label="value",…} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text exposition (comments and unreadable lines skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""`; values may hold escaped quotes, backslashes and commas.
fn parse_labels(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    // Folded from +0: an empty `sum()` of floats is -0, shown as "-0".
    samples
        .iter()
        .filter(|s| s.name == name)
        .fold(0.0, |total, s| total + s.value)
}

/// A counter summed by one label, largest first.
fn by_label(samples: &[Sample], name: &str, label: &str) -> Vec<(String, f64)> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for sample in samples.iter().filter(|s| s.name == name) {
        let key = sample.label(label).unwrap_or("–").to_owned();
        match totals.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total += sample.value,
            None => totals.push((key, sample.value)),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    totals
}

/// A histogram's cumulative `_bucket` samples as counts per bucket: `(upper bound, count)`.
pub fn buckets(samples: &[Sample], name: &str) -> Vec<(String, f64)> {
    let bucket = format!("{name}_bucket");
    let mut cumulative: Vec<(f64, String, f64)> = samples
        .iter()
        .filter(|s| s.name == bucket)
        .filter_map(|s| {
            let le = s.label("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, le.to_owned(), s.value))
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut below = 0.0;
    cumulative
        .into_iter()
        .map(|(_, le, total)| {
            let count = (total - below).max(0.0);
            below = total;
            (le, count)
        })
        .collect()
}

/// `≤0.1` per bucket, the last (`+Inf`) as `>` the bound before it.
fn lag_bars(buckets: &[(String, f64)]) -> Vec<Bar> {
    let mut below = "0".to_owned();
    buckets
        .iter()
        .map(|(le, count)| {
            let label = if le == "+Inf" {
                format!(">{below}")
            } else {
                format!("≤{le}")
            };
            below.clone_from(le);
            Bar::new(label, *count, format!("{count:.0}"))
        })
        .collect()
}

fn bytes(n: f64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn percent_class(value: f64, max: f64) -> &'static str {
    let share = if max > 0.0 { value / max } else { 0.0 };
    if share >= 0.9 {
        "bad"
    } else if share >= 0.6 {
        "warn"
    } else {
        "ok"
    }
}

/// `GET /console/operations`.
pub async fn page(State(state): State<AppState>, Viewer(viewer): Viewer) -> PageResult {
    let (_, ready) = ops::readiness(&state).await;
    let samples = parse_metrics(&ops::render_metrics(&state).await);
    let config = &state.config;
    let spool_bytes = ready.spool.bytes as f64;
    let spool_age = ready.spool.oldest_age_seconds.unwrap_or(0) as f64;
    let queue = sum(&samples, m::INGEST_QUEUE_DEPTH);
    let in_use = samples
        .iter()
        .filter(|s| s.name == m::DB_POOL_CONNECTIONS && s.label("state") == Some("in_use"))
        .fold(0.0, |total, s| total + s.value);
    let pool_max = f64::from(config.database.max_connections);
    let lag = buckets(&samples, m::PROJECTION_LAG_SECONDS);
    let lag_count = sum(&samples, &format!("{}_count", m::PROJECTION_LAG_SECONDS));
    let lag_sum = sum(&samples, &format!("{}_sum", m::PROJECTION_LAG_SECONDS));
    let lag_max = lag.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    let counted = |name: &str, label: &str| -> Vec<Bar> {
        by_label(&samples, name, label)
            .into_iter()
            .map(|(key, value)| Bar::new(key, value, format!("{value:.0}")))
            .collect()
    };
    let refusals = counted(m::REJECTIONS_TOTAL, "reason");
    let outcomes = counted(m::CALLBACKS_TOTAL, "outcome");
    let verdicts = counted(m::SIGNATURE_VERDICTS_TOTAL, "verdict");
    let flag = |good: bool, text: &str| {
        html! { span class={ "badge " (if good { "ok" } else { "bad" }) } { (text) } }
    };
    let body = html! {
        section.status-strip {
            div { "Readiness " (flag(ready.status == ReadyStatus::Ready, if ready.status == ReadyStatus::Ready { "ready" } else { "not ready" })) }
            div { "Callbacks are kept in " (flag(ready.accepting == Accepting::Database, match ready.accepting {
                Accepting::Database => "the database", Accepting::Spool => "the spool", Accepting::None => "nothing: answered 503" })) }
            div { "Database " (flag(ready.database == DatabaseStatus::Up, if ready.database == DatabaseStatus::Up { "up" } else { "down" })) }
            div { "Migrations " (flag(ready.migrations == MigrationStatus::Applied, if ready.migrations == MigrationStatus::Applied { "applied" } else { "pending" })) }
            div { "Projection backlog " span.big data-metric="backlog" {
                @match ready.projection.backlog { Some(n) => (n), None => "unknown" } } " receipts" }
        }
        section.gauges {
            (svg::gauge("Spool size", spool_bytes, config.spool.max_bytes as f64,
                &format!("{} ({})", bytes(spool_bytes), ready.spool.records), percent_class(spool_bytes, config.spool.max_bytes as f64)))
            (svg::gauge("Oldest spooled", spool_age, config.spool.max_age_secs as f64,
                &format!("{spool_age:.0} s"), percent_class(spool_age, config.spool.max_age_secs as f64)))
            (svg::gauge("Receipt queue", queue, config.ingest.queue_capacity as f64,
                &format!("{queue:.0} / {}", config.ingest.queue_capacity), percent_class(queue, config.ingest.queue_capacity as f64)))
            (svg::gauge("DB connections", in_use, pool_max,
                &format!("{in_use:.0} / {pool_max:.0}"), percent_class(in_use, pool_max)))
        }
        section {
            h2 { "Projection lag" }
            p.muted {
                "From receiving a callback to the commit of its projection; " (format!("{lag_count:.0}")) " receipts"
                @if lag_count > 0.0 { ", mean " (format!("{:.1} ms", 1000.0 * lag_sum / lag_count)) }
                ". Columns: receipts per bucket (upper bound in seconds)."
            }
            (svg::columns("Projection lag", &lag_bars(&lag), lag_max, "receipts"))
        }
        section.two {
            div {
                h2 { "Refusals by reason" }
                (svg::hbars("Refusals by reason", &refusals, None))
            }
            div {
                h2 { "Callbacks by outcome" }
                (svg::hbars("Callbacks by outcome", &outcomes, None))
            }
        }
        section {
            h2 { "Signature verdicts" }
            (svg::hbars("Signature verdicts", &verdicts, None))
        }
        p.muted { "Counters and histograms are this replica's since it started; the backlog and the database state are shared by every replica. The raw figures: " a href="/metrics" { "/metrics" } ", " a href="/readyz" { "/readyz" } "." }
    };
    Ok(layout::page(
        "Operations",
        Some(&viewer),
        Nav::Operations,
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_format_is_read_back() {
        let text = "# TYPE x counter\n\
                    callhook_rejections_total{reason=\"invalid_json\"} 3\n\
                    callhook_rejections_total{reason=\"a \\\"quoted\\\", reason\"} 1\n\
                    callhook_spool_bytes 42\n\
                    lag_bucket{le=\"0.1\"} 2\n\
                    lag_bucket{le=\"0.5\"} 5\n\
                    lag_bucket{le=\"+Inf\"} 6\n\
                    garbage\n";
        let samples = parse_metrics(text);
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[1].label("reason"), Some("a \"quoted\", reason"));
        assert_eq!(sum(&samples, "callhook_spool_bytes"), 42.0);
        assert_eq!(
            by_label(&samples, "callhook_rejections_total", "reason")[0],
            ("invalid_json".to_owned(), 3.0)
        );
        assert_eq!(
            buckets(&samples, "lag"),
            vec![
                ("0.1".to_owned(), 2.0),
                ("0.5".to_owned(), 3.0),
                ("+Inf".to_owned(), 1.0)
            ]
        );
        assert_eq!(bytes(1536.0), "1.5 KiB");
        let labels: Vec<String> = lag_bars(&buckets(&samples, "lag"))
            .into_iter()
            .map(|bar| bar.label)
            .collect();
        assert_eq!(labels, ["≤0.1", "≤0.5", ">0.5"]);
    }
}
