//! The voice KPIs, defined once for every place that shows them: the SQL of `store::kpis`
//! (`GET /v1/kpis`, the console's KPI page) and the call metrics on `/metrics` (recorded by
//! `metrics`, from the `Observations` a projection makes).
//! The definitions, their sources and the PromQL are in docs/kpis.md.
//!
//! Which calls count: a call counts once it has ended (its outcome is no longer
//! `in_progress`). Calls still in progress are reported apart and are in no ratio and no mean,
//! so the figures of a range do not sag while its calls are still ringing, and the metrics,
//! which can only count a call when it ends, agree with the SQL.
//!
//! The metrics count each call once, when a projection commits the change of its row from in
//! progress (or from no row) to ended. That change happens once per call: a call's row is a
//! function of the set of its facts, facts are only ever added (a redelivery adds none), and
//! reprocessing or reprojecting what was projected before leaves an ended row ended. The
//! figures are those of that moment; what arrives later about an ended call (usually its CDR,
//! which may refine its times or outcome) is in the SQL, not in the counters.

use std::{collections::BTreeSet, sync::RwLock};

use time::OffsetDateTime;

use crate::config::Config;

/// The outcome of a call that has not ended.
pub const IN_PROGRESS: &str = "in_progress";

/// Every outcome of an ended call (`calls.outcome` but `in_progress`), in the order answers
/// list them.
pub const ENDED_OUTCOMES: [&str; 6] = [
    "answered",
    "no_answer",
    "busy",
    "rejected",
    "caller_hung_up",
    "failed",
];

/// Outcomes that show the network did its job: the called party answered, was busy, did not
/// answer, or rejected the call (NER, ITU-T E.425 / GSMA IR.42). A caller hanging up first
/// and a failure are not.
pub const NETWORK_EFFECTIVE_OUTCOMES: [&str; 4] = ["answered", "busy", "no_answer", "rejected"];

/// Upper bounds (seconds, inclusive) of the distributions, shared by the SQL answer and the
/// Prometheus histograms so that both cut the same buckets. Ringing: platforms give up after
/// about 60 s.
pub const RING_BUCKETS: &[f64] = &[2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];
/// Talk time of answered calls.
pub const TALK_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];
/// Post-dial delay of the first leg.
pub const PDD_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0];
/// From the platform's `timestamp` of a status event to our receipt. The platform writes whole
/// seconds, so a prompt callback measures 0 to 1 s; 0 and less means the platform's clock is
/// ahead of ours. Each `calls` row keeps its events' counts in these buckets
/// (`callback_delay_counts`, and one column each: `callback_delay_columns`): a change here
/// needs a migration for those columns, and `callhook reproject --all` to recount them.
pub const CALLBACK_DELAY_BUCKETS: &[f64] =
    &[0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// The `calls` columns that hold a call's status events by callback delay, one per bucket of
/// `CALLBACK_DELAY_BUCKETS` (migration 20261202000007 makes them; a test holds the two
/// together): `callback_delays_le_1s`, …, `callback_delays_over_3600s`.
pub fn callback_delay_columns() -> Vec<String> {
    let mut columns: Vec<String> = CALLBACK_DELAY_BUCKETS
        .iter()
        .map(|bound| format!("callback_delays_le_{bound}s"))
        .collect();
    if let Some(last) = CALLBACK_DELAY_BUCKETS.last() {
        columns.push(format!("callback_delays_over_{last}s"));
    }
    columns
}

/// The bucket of `value` among upper bounds `bounds` (inclusive, as Prometheus cuts them): the
/// number of bounds below it, so `bounds.len()` for a value above them all.
pub fn bucket_of(bounds: &[f64], value: f64) -> usize {
    bounds.iter().take_while(|bound| **bound < value).count()
}

/// Post-dial delay (after RFC 6076's session request delay): the first leg's first alerting
/// minus its first callout. Unknown when either is missing or they are out of order.
pub fn pdd_seconds(
    first_callout: Option<OffsetDateTime>,
    first_alerting: Option<OffsetDateTime>,
) -> Option<f64> {
    let (callout, alerting) = (first_callout?, first_alerting?);
    (alerting >= callout).then(|| (alerting - callout).as_seconds_f64())
}

/// The app keys the metrics name; every other key is `other` (see `[kpis]` in config.toml).
/// One set per process, as the metrics recorder is: each application started adds its keys.
static LABELLED_APPS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Label value of a call whose app is not known (yet).
pub const UNKNOWN_APP: &str = "unknown";
/// Label value of an app key that is not configured.
pub const OTHER_APP: &str = "other";

/// Adds the configured app keys (`[[apps]]`, `kpis.metric_app_keys`) to those the metrics name.
pub fn label_apps(config: &Config) {
    let mut apps = LABELLED_APPS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    apps.extend(config.apps.iter().map(|app| app.key.clone()));
    apps.extend(config.kpis.metric_app_keys.iter().cloned());
}

/// The `app_key` label of a call: bounded by the configuration, never taken from the wire
/// unchecked, since anyone who can post a callback could otherwise create series at will.
pub fn app_label(app_key: Option<&str>) -> String {
    let Some(key) = app_key else {
        return UNKNOWN_APP.to_owned();
    };
    let apps = LABELLED_APPS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if apps.contains(key) {
        key.to_owned()
    } else {
        OTHER_APP.to_owned()
    }
}

/// A call whose row a projection moved from in progress to ended, as its row then was.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedCall {
    pub app_key: Option<String>,
    pub scenario: &'static str,
    pub outcome: &'static str,
    pub ring_seconds: Option<f64>,
    /// Answered calls only (ACD).
    pub talk_seconds: Option<f64>,
    pub pdd_seconds: Option<f64>,
}

/// A status event stored for the first time, and how long after its platform time it reached
/// us.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackDelay {
    pub app_key: Option<String>,
    pub scenario: &'static str,
    pub event_type: &'static str,
    pub seconds: f64,
}

/// What one committed projection adds to the call metrics. Recorded only after its
/// transaction commits, so a rolled-back attempt that is tried again counts nothing twice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Observations {
    pub ended: Vec<EndedCall>,
    pub callback_delays: Vec<CallbackDelay>,
}

impl Observations {
    pub fn extend(&mut self, other: Self) {
        self.ended.extend(other.ended);
        self.callback_delays.extend(other.callback_delays);
    }
}
