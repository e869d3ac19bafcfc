//! The voice KPIs of a time range, computed in SQL over the `calls` rows whose `started_at`
//! falls in `[from, to)`: what `GET /v1/kpis` answers and the console's KPI page shows. The
//! definitions (shared with the call metrics) are in `crate::kpis`, their sources in
//! docs/kpis.md.
//!
//! One statement, one pass over the calls of the range: they are counted by hour, outcome,
//! hang-up cause, ring bucket and talk bucket at once, and grouping sets over those groups give
//! the whole range, each hour, each outcome, each cause and each bucket. It reads the covering
//! index `calls_kpi_idx` (migration 20261202000007), not the wide `calls` rows. The callback
//! delay is a figure of status events: each call's row keeps its events' counts by delay bucket
//! (`calls.callback_delays_le_*`), so the range's are a sum over its calls, with no join to
//! their events.
//!
//! Buckets are cut as Prometheus cuts them, upper bounds inclusive: a value v is in the bucket
//! `from < v <= to`. `width_bucket` counts lower bounds inclusive instead, so it is given the
//! bounds negated in reverse order: for the `n` bounds `b`, the number of bounds below v is
//! `n - width_bucket(-v, [-b_n, …, -b_1])`, which is v's bucket (0: at most b_1; n: above b_n).

use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::{Duration, OffsetDateTime, UtcOffset};
use utoipa::ToSchema;

use super::StoreError;
use crate::{
    calls::SCENARIOS,
    kpis::{
        CALLBACK_DELAY_BUCKETS, ENDED_OUTCOMES, IN_PROGRESS, NETWORK_EFFECTIVE_OUTCOMES,
        RING_BUCKETS, TALK_BUCKETS, callback_delay_columns,
    },
    platform::codes::state_meaning,
};

/// Which calls: those that started in `[from, to)`, of one app and one scenario if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiFilter {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub app_key: Option<String>,
    /// click2call, notify, verify, playback or unknown (`calls.scenario`).
    pub scenario: Option<String>,
    /// How many hang-up causes to list, most frequent first (`kpis.top_hangup_causes`).
    pub top_hangup_causes: u32,
}

/// A filter that cannot be computed, naming the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidFilter {
    pub field: &'static str,
    pub message: String,
}

impl KpiFilter {
    /// The rules a filter must meet: a range that ends after it begins and spans at most
    /// `max_range_days` (the answer has one entry per hour), a known scenario, no NUL (which
    /// PostgreSQL text cannot hold).
    pub fn check(&self, max_range_days: u32) -> Result<(), InvalidFilter> {
        let invalid = |field, message: String| Err(InvalidFilter { field, message });
        if self.to <= self.from {
            return invalid("to", "to must be later than from".into());
        }
        if self.to - self.from > Duration::days(i64::from(max_range_days)) {
            return invalid(
                "to",
                format!(
                    "the range from..to may span at most {max_range_days} days (kpis.max_range_days)"
                ),
            );
        }
        if let Some(scenario) = &self.scenario
            && !SCENARIOS.contains(&scenario.as_str())
        {
            return invalid(
                "scenario",
                format!("scenario must be one of {}", SCENARIOS.join(", ")),
            );
        }
        if self
            .app_key
            .as_deref()
            .is_some_and(|key| key.contains('\0'))
        {
            return invalid("app_key", "app_key cannot hold a NUL character".into());
        }
        Ok(())
    }
}

/// The figures of a set of calls. Ratios and means are over the calls that ended; they are
/// null when there is nothing to divide by (no ended call; for ACD no answered call, for PDD
/// none whose first leg's callout and alerting are both known).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    /// Calls that started in the range and have ended: the denominator of every ratio.
    pub calls: i64,
    /// Calls that started in the range and have not ended yet; in no ratio or mean.
    pub in_progress: i64,
    pub answered: i64,
    /// Calls whose outcome shows the network did its job: answered, busy, no_answer, rejected.
    pub network_effective: i64,
    /// Answer-seizure ratio (ITU-T E.411): answered / calls.
    pub asr: Option<f64>,
    /// Network effectiveness ratio (ITU-T E.425, GSMA IR.42): network_effective / calls.
    pub ner: Option<f64>,
    /// Average call duration: mean talk time of the answered calls, in seconds.
    pub acd_seconds: Option<f64>,
    /// Post-dial delay (after RFC 6076's session request delay): mean of the first leg's
    /// first alerting minus its first callout, in seconds.
    pub pdd_seconds: Option<f64>,
}

impl Figures {
    fn of(row: &Grouped) -> Self {
        let ratio = |part: i64| (row.calls > 0).then(|| part as f64 / row.calls as f64);
        Self {
            calls: row.calls,
            in_progress: row.in_progress,
            answered: row.answered,
            network_effective: row.network_effective,
            asr: ratio(row.answered),
            ner: ratio(row.network_effective),
            acd_seconds: row.acd_seconds,
            pdd_seconds: row.pdd_seconds,
        }
    }

    const NONE: Self = Self {
        calls: 0,
        in_progress: 0,
        answered: 0,
        network_effective: 0,
        asr: None,
        ner: None,
        acd_seconds: None,
        pdd_seconds: None,
    };
}

/// The figures of the calls that started in one hour (UTC; hours are whole in every zone of
/// a whole-hour offset, Beijing's included).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HourFigures {
    /// The hour's start.
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    #[serde(flatten)]
    pub figures: Figures,
}

/// How many ended calls had one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OutcomeCount {
    /// answered, no_answer, busy, rejected, caller_hung_up or failed.
    pub outcome: String,
    pub calls: i64,
}

/// How many ended calls had one hang-up cause (`stateCode` of their last disconnect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HangupCause {
    pub state_code: i32,
    /// The platform's documented meaning (spec §3.1); null for an undocumented code.
    pub meaning: Option<String>,
    pub calls: i64,
}

/// One bucket of a distribution: `count` values v with `from < v <= to` (seconds). The first
/// bucket has no `from`, the last no `to`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Bucket {
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub count: i64,
}

/// The KPIs of the calls that started in `[from, to)`: what `GET /v1/kpis` answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Kpis {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub app_key: Option<String>,
    pub scenario: Option<String>,
    #[serde(flatten)]
    pub totals: Figures,
    /// Every hour from the one `from` falls in to the one before `to`, empty hours included.
    pub hourly: Vec<HourFigures>,
    /// Every outcome of an ended call, in a fixed order, zeros included.
    pub outcomes: Vec<OutcomeCount>,
    /// The most frequent hang-up causes of the ended calls (at most kpis.top_hangup_causes),
    /// most frequent first; calls without one (no disconnect event) are not in it.
    pub hangup_causes: Vec<HangupCause>,
    /// Ringing of the party that decides the outcome (B for click-to-call), of the ended calls
    /// whose ringing is known.
    pub ring_seconds: Vec<Bucket>,
    /// Talk time of the answered calls.
    pub talk_seconds: Vec<Bucket>,
    /// Of every status event of the ended calls: its receipt minus its platform `timestamp`
    /// (none counted for calls last recomputed before callhook kept these; see
    /// `calls.callback_delay_counts`).
    pub callback_delay: Vec<Bucket>,
}

/// One row of the grouping-sets statement: the group's key and its counts.
#[derive(Debug, sqlx::FromRow)]
struct Grouped {
    grouped_by: String,
    hour: Option<OffsetDateTime>,
    outcome: Option<String>,
    state_code: Option<i32>,
    bucket: Option<i32>,
    calls: i64,
    in_progress: i64,
    answered: i64,
    network_effective: i64,
    acd_seconds: Option<f64>,
    pdd_seconds: Option<f64>,
    callback_delay_counts: Vec<i64>,
}

/// The thresholds that make `n - width_bucket(-v, thresholds)` v's bucket (module docs).
fn thresholds(bounds: &[f64]) -> Vec<f64> {
    bounds.iter().rev().map(|bound| -bound).collect()
}

fn bucket_index(bounds: &[f64]) -> i32 {
    i32::try_from(bounds.len()).expect("a handful of buckets")
}

/// `and …` conditions selecting the filter's calls, on `calls` as `alias`.
fn push_selection(q: &mut QueryBuilder<'static, Postgres>, filter: &KpiFilter, alias: &str) {
    q.push(format_args!(" {alias}.started_at >= "))
        .push_bind(filter.from)
        .push(format_args!(" and {alias}.started_at < "))
        .push_bind(filter.to);
    if let Some(app_key) = &filter.app_key {
        q.push(format_args!(" and {alias}.app_key = "))
            .push_bind(app_key.clone());
    }
    if let Some(scenario) = &filter.scenario {
        q.push(format_args!(" and {alias}.scenario = "))
            .push_bind(scenario.clone());
    }
}

/// `prefix` goes before the statement: empty, or an EXPLAIN.
fn grouped_query(prefix: &'static str, filter: &KpiFilter) -> QueryBuilder<'static, Postgres> {
    let delay_columns = callback_delay_columns();
    let mut q = QueryBuilder::new(prefix);
    // The calls are first counted by every key at once (a few hundred groups an hour), so each
    // row costs one hash lookup and a few sums; the grouping sets then run over those groups.
    q.push(
        "with grouped as (
            select date_bin('1 hour', started_at, timestamptz '2000-01-01 00:00:00+00') as hour,
                   outcome,
                   case when outcome <> ",
    )
    .push_bind(IN_PROGRESS)
    .push(" then state_code end as state_code, case when outcome <> ")
    .push_bind(IN_PROGRESS)
    .push(" then ")
    .push_bind(bucket_index(RING_BUCKETS))
    .push(" - width_bucket(-ring_seconds::float8, ")
    .push_bind(thresholds(RING_BUCKETS))
    .push(") end as ring_bucket, case when outcome = 'answered' then ")
    .push_bind(bucket_index(TALK_BUCKETS))
    .push(" - width_bucket(-talk_seconds::float8, ")
    .push_bind(thresholds(TALK_BUCKETS))
    .push(
        ") end as talk_bucket,
                   count(*) as calls,
                   sum(talk_seconds) filter (where outcome = 'answered') as talk_sum,
                   count(talk_seconds) filter (where outcome = 'answered') as talk_n,
                   sum(date_part('epoch', a_alerting_at - a_callout_at))
                       filter (where a_alerting_at >= a_callout_at) as pdd_sum,
                   count(*) filter (where a_alerting_at >= a_callout_at) as pdd_n",
    );
    for column in &delay_columns {
        q.push(format_args!(", sum({column}) as {column}"));
    }
    q.push(" from calls c where");
    push_selection(&mut q, filter, "c");
    q.push(
        " group by 1, 2, 3, 4, 5
        )
        select case when grouping(hour) = 0 then 'hour'
                    when grouping(outcome) = 0 then 'outcome'
                    when grouping(state_code) = 0 then 'state_code'
                    when grouping(ring_bucket) = 0 then 'ring'
                    when grouping(talk_bucket) = 0 then 'talk'
                    else 'total' end as grouped_by,
               hour, outcome, state_code, coalesce(ring_bucket, talk_bucket) as bucket,
               coalesce(sum(calls) filter (where outcome <> ",
    )
    .push_bind(IN_PROGRESS)
    .push("), 0)::int8 as calls, coalesce(sum(calls) filter (where outcome = ")
    .push_bind(IN_PROGRESS)
    .push(
        "), 0)::int8 as in_progress,
               coalesce(sum(calls) filter (where outcome = 'answered'), 0)::int8 as answered,
               coalesce(sum(calls) filter (where outcome = any(",
    )
    .push_bind(NETWORK_EFFECTIVE_OUTCOMES.to_vec())
    .push(
        ")), 0)::int8 as network_effective,
               (sum(talk_sum) / nullif(sum(talk_n), 0))::float8 as acd_seconds,
               sum(pdd_sum) filter (where outcome <> ",
    )
    .push_bind(IN_PROGRESS)
    .push(") / nullif(sum(pdd_n) filter (where outcome <> ")
    .push_bind(IN_PROGRESS)
    .push("), 0) as pdd_seconds, array[");
    let sums: Vec<String> = delay_columns
        .iter()
        .map(|column| {
            format!("coalesce(sum({column}) filter (where outcome <> '{IN_PROGRESS}'), 0)")
        })
        .collect();
    q.push(sums.join(", ")).push(
        "]::int8[] as callback_delay_counts
        from grouped
        group by grouping sets ((), (hour), (outcome), (state_code), (ring_bucket), (talk_bucket))",
    );
    q
}

/// The buckets of `bounds`, counts from `(index, count)` pairs (indexes outside are ignored).
fn buckets(bounds: &[f64], counts: impl IntoIterator<Item = (Option<i32>, i64)>) -> Vec<Bucket> {
    let mut result: Vec<Bucket> = (0..=bounds.len())
        .map(|i| Bucket {
            from: i.checked_sub(1).map(|below| bounds[below]),
            to: bounds.get(i).copied(),
            count: 0,
        })
        .collect();
    for (index, count) in counts {
        if let Some(bucket) = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| result.get_mut(i))
        {
            bucket.count += count;
        }
    }
    result
}

fn utc_hour(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_time(time::Time::from_hms(at.hour(), 0, 0).expect("a valid hour"))
}

/// Memory for the statement's hash tables, in its own transaction. The planner expects up to
/// some 100,000 groups for a month of calls (it multiplies the keys' distinct values; about
/// 15 MB), and with the default 4 MB it sorts them on disk instead of hashing: measured 2x
/// slower. PostgreSQL gives each parallel worker as much again.
const SET_WORK_MEM: &str = "set local work_mem = '32MB'";

/// Computes the KPIs of the calls `filter` selects. The filter is taken as given: check it
/// first (`KpiFilter::check`) when it comes from outside.
pub async fn compute(pool: &PgPool, filter: &KpiFilter) -> Result<Kpis, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(SET_WORK_MEM).execute(&mut *tx).await?;
    let grouped: Vec<Grouped> = grouped_query("", filter)
        .build_query_as()
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut totals = Figures::NONE;
    let mut delays = Vec::new();
    let mut by_hour = std::collections::HashMap::new();
    let mut outcomes: Vec<OutcomeCount> = ENDED_OUTCOMES
        .iter()
        .map(|outcome| OutcomeCount {
            outcome: (*outcome).to_owned(),
            calls: 0,
        })
        .collect();
    let mut hangup_causes = Vec::new();
    let (mut ring, mut talk) = (Vec::new(), Vec::new());
    for row in &grouped {
        match row.grouped_by.as_str() {
            "total" => {
                totals = Figures::of(row);
                delays = row.callback_delay_counts.clone();
            }
            "hour" => {
                if let Some(hour) = row.hour {
                    by_hour.insert(hour, Figures::of(row));
                }
            }
            "outcome" => {
                if let Some(count) = outcomes
                    .iter_mut()
                    .find(|o| row.outcome.as_deref() == Some(o.outcome.as_str()))
                {
                    count.calls = row.calls;
                }
            }
            "state_code" => {
                if let Some(code) = row.state_code {
                    hangup_causes.push(HangupCause {
                        state_code: code,
                        meaning: state_meaning(code).map(str::to_owned),
                        calls: row.calls,
                    });
                }
            }
            "ring" => ring.push((row.bucket, row.calls)),
            "talk" => talk.push((row.bucket, row.answered)),
            _ => {}
        }
    }
    hangup_causes.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.state_code.cmp(&b.state_code)));
    hangup_causes.truncate(usize::try_from(filter.top_hangup_causes).unwrap_or(usize::MAX));

    let mut hourly = Vec::new();
    let mut hour = utc_hour(filter.from);
    while hour < filter.to {
        hourly.push(HourFigures {
            hour,
            figures: by_hour.remove(&hour).unwrap_or(Figures::NONE),
        });
        hour += Duration::hours(1);
    }

    Ok(Kpis {
        from: filter.from,
        to: filter.to,
        app_key: filter.app_key.clone(),
        scenario: filter.scenario.clone(),
        totals,
        hourly,
        outcomes,
        hangup_causes,
        ring_seconds: buckets(RING_BUCKETS, ring),
        talk_seconds: buckets(TALK_BUCKETS, talk),
        callback_delay: buckets(CALLBACK_DELAY_BUCKETS, (0..).map(Some).zip(delays)),
    })
}

/// The plan of `compute`'s statement as PostgreSQL runs it, with its timings and buffers
/// (`EXPLAIN (ANALYZE, BUFFERS)`; `callhook kpis --explain`).
pub async fn explain(pool: &PgPool, filter: &KpiFilter) -> Result<String, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(SET_WORK_MEM).execute(&mut *tx).await?;
    let lines: Vec<String> = grouped_query("explain (analyze, buffers) ", filter)
        .build_query_scalar()
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn filter() -> KpiFilter {
        KpiFilter {
            from: datetime!(2026-11-20 10:30 UTC),
            to: datetime!(2026-11-20 12:00 UTC),
            app_key: None,
            scenario: None,
            top_hangup_causes: 10,
        }
    }

    #[test]
    fn buckets_are_cut_at_their_upper_bounds() {
        let bounds = [2.0, 5.0];
        let cut = buckets(
            &bounds,
            [(Some(0), 3), (Some(2), 1), (None, 7), (Some(9), 1)],
        );
        assert_eq!(
            cut,
            [
                Bucket {
                    from: None,
                    to: Some(2.0),
                    count: 3
                },
                Bucket {
                    from: Some(2.0),
                    to: Some(5.0),
                    count: 0
                },
                Bucket {
                    from: Some(5.0),
                    to: None,
                    count: 1
                },
            ]
        );
        assert_eq!(thresholds(&bounds), [-5.0, -2.0]);
    }

    #[test]
    fn a_filter_needs_a_short_forward_range_and_a_known_scenario() {
        assert_eq!(filter().check(31), Ok(()));
        let backwards = KpiFilter {
            to: filter().from,
            ..filter()
        };
        assert_eq!(backwards.check(31).unwrap_err().field, "to");
        let long = KpiFilter {
            to: filter().from + Duration::days(32),
            ..filter()
        };
        assert_eq!(long.check(31).unwrap_err().field, "to");
        let scenario = KpiFilter {
            scenario: Some("robocall".into()),
            ..filter()
        };
        assert_eq!(scenario.check(31).unwrap_err().field, "scenario");
        let nul = KpiFilter {
            app_key: Some("a\0".into()),
            ..filter()
        };
        assert_eq!(nul.check(31).unwrap_err().field, "app_key");
    }

    #[test]
    fn hours_are_cut_in_utc() {
        assert_eq!(
            utc_hour(datetime!(2026-11-20 18:45:12.5 +08:00)),
            datetime!(2026-11-20 10:00 UTC)
        );
    }
}
