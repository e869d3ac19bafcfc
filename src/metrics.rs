//! Prometheus metrics: names in one place, the recorder installed once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::kpis::{self, Observations, app_label};

/// Callbacks answered, by `kind` (status, fee, unknown) and `outcome` (stored, duplicate,
/// partial, rejected, unauthorized, unavailable, error).
pub const CALLBACKS_TOTAL: &str = "callhook_callbacks_total";
/// Redelivered status events and CDRs that were recognised and not stored again, by `kind`.
pub const DUPLICATES_TOTAL: &str = "callhook_duplicates_total";
/// Refused requests, by `reason` (the error code of the answer).
pub const REJECTIONS_TOTAL: &str = "callhook_rejections_total";
/// Signature verdicts, by `verdict`.
pub const SIGNATURE_VERDICTS_TOTAL: &str = "callhook_signature_verdicts_total";
/// CDRs seen in fee lists, by `outcome` (stored, duplicate, rejected).
pub const CDR_RECORDS_TOTAL: &str = "callhook_cdr_records_total";
/// Outbound operations, by `operation` and `outcome` (accepted, declined, failed, not_sent), as
/// recorded in `placed_calls` by every process (the CLI's included), read at each scrape.
pub const PLACED_CALLS_TOTAL: &str = "callhook_placed_calls_total";
/// Time from receiving a callback to answering it, by `kind`.
pub const CALLBACK_DURATION_SECONDS: &str = "callhook_callback_duration_seconds";
/// Callbacks waiting for a writer (group commit queue).
pub const INGEST_QUEUE_DEPTH: &str = "callhook_ingest_queue_depth";
/// Receipts kept together with one INSERT (group commit).
pub const INGEST_GROUP_SIZE: &str = "callhook_ingest_group_size";
/// Receipts kept in the local spool because the database could not take them.
pub const SPOOLED_RECEIPTS_TOTAL: &str = "callhook_spooled_receipts_total";
/// Receipts in the spool now, waiting to be drained into the database.
pub const SPOOL_RECORDS: &str = "callhook_spool_records";
/// Bytes the spool holds now.
pub const SPOOL_BYTES: &str = "callhook_spool_bytes";
/// Age of the oldest spooled receipt (0 when empty).
pub const SPOOL_OLDEST_AGE_SECONDS: &str = "callhook_spool_oldest_age_seconds";
/// Bytes of damaged spool tails moved aside at start.
pub const SPOOL_DAMAGED_BYTES_TOTAL: &str = "callhook_spool_damaged_bytes_total";
/// Receipts projected, by the `outcome` the projection gave them.
pub const PROJECTED_TOTAL: &str = "callhook_projected_total";
/// Time from receiving a callback to the commit of its projection.
pub const PROJECTION_LAG_SECONDS: &str = "callhook_projection_lag_seconds";
/// Receipts acknowledged but not projected yet (across replicas), as last counted.
pub const PROJECTION_BACKLOG: &str = "callhook_projection_backlog";
/// Background tasks started again after a panic, by `task`.
pub const TASK_RESTARTS_TOTAL: &str = "callhook_task_restarts_total";
/// Streams of call changes (`GET /v1/stream`) open now, catching up or live.
pub const STREAM_SUBSCRIBERS: &str = "callhook_stream_subscribers";
/// Stream subscribers dropped because they fell `stream.buffer` changes behind.
pub const STREAM_DROPPED_TOTAL: &str = "callhook_stream_dropped_total";
/// Events (`event: call`) sent on streams of call changes.
pub const STREAM_EVENTS_TOTAL: &str = "callhook_stream_events_total";
/// Database pool connections, by `state` (idle, in_use).
pub const DB_POOL_CONNECTIONS: &str = "callhook_db_pool_connections";
/// Configured maximum pool size.
pub const DB_POOL_MAX_CONNECTIONS: &str = "callhook_db_pool_max_connections";

/// Calls that ended, by `app_key`, `scenario` and `outcome`: counted once, when the projection
/// that moves the call's row from in progress to ended commits (`kpis`).
pub const CALLS_ENDED_TOTAL: &str = "callhook_calls_ended_total";
/// Ringing of the party that decides the outcome, of each ended call, by `app_key`,
/// `scenario` and `outcome`.
pub const CALL_RING_SECONDS: &str = "callhook_call_ring_seconds";
/// Talk time of each answered call, by `app_key`, `scenario` and `outcome`.
pub const CALL_TALK_SECONDS: &str = "callhook_call_talk_seconds";
/// Post-dial delay (first leg: first alerting - first callout) of each ended call, by
/// `app_key`, `scenario` and `outcome`.
pub const CALL_PDD_SECONDS: &str = "callhook_call_pdd_seconds";
/// From a status event's platform `timestamp` to its receipt, per event stored, by `app_key`,
/// `scenario` and `event_type`.
pub const CALLBACK_DELAY_SECONDS: &str = "callhook_callback_delay_seconds";

/// Every metric `/metrics` exposes: docs/operations.md's table lists exactly these (a test holds the
/// two together, and checks each one appears).
pub const ALL: &[&str] = &[
    CALLBACKS_TOTAL,
    DUPLICATES_TOTAL,
    REJECTIONS_TOTAL,
    SIGNATURE_VERDICTS_TOTAL,
    CDR_RECORDS_TOTAL,
    PLACED_CALLS_TOTAL,
    CALLBACK_DURATION_SECONDS,
    INGEST_QUEUE_DEPTH,
    INGEST_GROUP_SIZE,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    PROJECTED_TOTAL,
    PROJECTION_LAG_SECONDS,
    PROJECTION_BACKLOG,
    SPOOLED_RECEIPTS_TOTAL,
    SPOOL_RECORDS,
    SPOOL_BYTES,
    SPOOL_OLDEST_AGE_SECONDS,
    SPOOL_DAMAGED_BYTES_TOTAL,
    TASK_RESTARTS_TOTAL,
    CALLS_ENDED_TOTAL,
    CALL_RING_SECONDS,
    CALL_TALK_SECONDS,
    CALL_PDD_SECONDS,
    CALLBACK_DELAY_SECONDS,
    STREAM_SUBSCRIBERS,
    STREAM_DROPPED_TOTAL,
    STREAM_EVENTS_TOTAL,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

const LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process-wide recorder. Installed on first use; later calls (several apps in one test
/// process) share it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(CALLBACK_DURATION_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(PROJECTION_LAG_SECONDS.to_owned()),
                    LAG_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(INGEST_GROUP_SIZE.to_owned()),
                    GROUP_SIZE_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(CALL_RING_SECONDS.to_owned()),
                    kpis::RING_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(CALL_TALK_SECONDS.to_owned()),
                    kpis::TALK_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(CALL_PDD_SECONDS.to_owned()),
                    kpis::PDD_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(CALLBACK_DELAY_SECONDS.to_owned()),
                    kpis::CALLBACK_DELAY_BUCKETS,
                )
                .expect("buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CALLBACKS_TOTAL, "Callbacks answered, by kind and outcome.");
    describe_counter!(
        DUPLICATES_TOTAL,
        "Redelivered status events and CDRs not stored again, by kind."
    );
    describe_counter!(REJECTIONS_TOTAL, "Refused callback requests, by reason.");
    describe_counter!(SIGNATURE_VERDICTS_TOTAL, "Callback signature verdicts.");
    describe_counter!(
        PLACED_CALLS_TOTAL,
        "Outbound platform operations recorded in placed_calls, by operation and outcome."
    );
    describe_counter!(CDR_RECORDS_TOTAL, "CDRs received in fee lists, by outcome.");
    describe_histogram!(
        CALLBACK_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Callback handling time, by kind."
    );
    describe_gauge!(INGEST_QUEUE_DEPTH, "Callbacks waiting for a writer.");
    describe_histogram!(
        INGEST_GROUP_SIZE,
        "Receipts kept together with one INSERT (group commit)."
    );
    describe_counter!(
        SPOOLED_RECEIPTS_TOTAL,
        "Receipts kept in the local spool because the database could not take them."
    );
    describe_gauge!(
        SPOOL_RECORDS,
        "Receipts in the spool, waiting to be drained."
    );
    describe_gauge!(SPOOL_BYTES, metrics::Unit::Bytes, "Bytes the spool holds.");
    describe_gauge!(
        SPOOL_OLDEST_AGE_SECONDS,
        metrics::Unit::Seconds,
        "Age of the oldest spooled receipt (0 when empty)."
    );
    describe_counter!(
        SPOOL_DAMAGED_BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Bytes of damaged spool tails moved aside at start."
    );
    describe_counter!(PROJECTED_TOTAL, "Receipts projected, by outcome.");
    describe_histogram!(
        PROJECTION_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Time from receiving a callback to the commit of its projection."
    );
    describe_gauge!(
        PROJECTION_BACKLOG,
        "Receipts acknowledged but not projected yet, as last counted."
    );
    describe_counter!(
        TASK_RESTARTS_TOTAL,
        "Background tasks started again after a panic, by task."
    );
    describe_counter!(
        CALLS_ENDED_TOTAL,
        "Calls that ended, by app_key, scenario and outcome; counted once, when their row is projected as ended."
    );
    describe_histogram!(
        CALL_RING_SECONDS,
        metrics::Unit::Seconds,
        "Ringing of the deciding party of each ended call, by app_key, scenario and outcome."
    );
    describe_histogram!(
        CALL_TALK_SECONDS,
        metrics::Unit::Seconds,
        "Talk time of each answered call, by app_key, scenario and outcome."
    );
    describe_histogram!(
        CALL_PDD_SECONDS,
        metrics::Unit::Seconds,
        "Post-dial delay (first leg: first alerting - first callout) of each ended call."
    );
    describe_histogram!(
        CALLBACK_DELAY_SECONDS,
        metrics::Unit::Seconds,
        "From a status event's platform timestamp to its receipt, by app_key, scenario and event_type."
    );
    describe_gauge!(
        STREAM_SUBSCRIBERS,
        "Streams of call changes (GET /v1/stream) open now."
    );
    describe_counter!(
        STREAM_DROPPED_TOTAL,
        "Stream subscribers dropped for falling stream.buffer changes behind."
    );
    describe_counter!(STREAM_EVENTS_TOTAL, "Call change events sent on streams.");
    describe_gauge!(DB_POOL_CONNECTIONS, "Database pool connections, by state.");
    describe_gauge!(
        DB_POOL_MAX_CONNECTIONS,
        "Configured maximum database pool size."
    );
}

/// The call metrics are recorded here, beside their names, from what a projection observed.
impl Observations {
    /// Records them; called once the projection's transaction has committed.
    pub fn record(&self) {
        for call in &self.ended {
            let labels = [
                ("app_key", app_label(call.app_key.as_deref())),
                ("scenario", call.scenario.to_owned()),
                ("outcome", call.outcome.to_owned()),
            ];
            metrics::counter!(CALLS_ENDED_TOTAL, &labels).increment(1);
            let observe = |name: &'static str, value: Option<f64>| {
                if let Some(value) = value {
                    metrics::histogram!(name, &labels).record(value);
                }
            };
            observe(CALL_RING_SECONDS, call.ring_seconds);
            observe(CALL_TALK_SECONDS, call.talk_seconds);
            observe(CALL_PDD_SECONDS, call.pdd_seconds);
        }
        for delay in &self.callback_delays {
            let labels = [
                ("app_key", app_label(delay.app_key.as_deref())),
                ("scenario", delay.scenario.to_owned()),
                ("event_type", delay.event_type.to_owned()),
            ];
            metrics::histogram!(CALLBACK_DELAY_SECONDS, &labels).record(delay.seconds);
        }
    }
}
