//! Prometheus metrics: names in one place, the recorder installed once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
/// Outbound operations, by `operation` and `outcome` (accepted, refused, failed, not_sent), as
/// recorded in `placed_calls` by every process (the CLI's included), read at each scrape.
pub const PLACED_CALLS_TOTAL: &str = "callhook_placed_calls_total";
/// Time from receiving a callback to answering it, by `kind`.
pub const CALLBACK_DURATION_SECONDS: &str = "callhook_callback_duration_seconds";
/// Callbacks waiting for a writer (group commit queue).
pub const INGEST_QUEUE_DEPTH: &str = "callhook_ingest_queue_depth";
/// Requests committed together in one transaction.
pub const INGEST_GROUP_SIZE: &str = "callhook_ingest_group_size";
/// Database pool connections, by `state` (idle, in_use).
pub const DB_POOL_CONNECTIONS: &str = "callhook_db_pool_connections";
/// Configured maximum pool size.
pub const DB_POOL_MAX_CONNECTIONS: &str = "callhook_db_pool_max_connections";

/// Every metric `/metrics` exposes: the README's table lists exactly these (a test holds the
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
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
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
                    Matcher::Full(INGEST_GROUP_SIZE.to_owned()),
                    GROUP_SIZE_BUCKETS,
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
        "Requests committed together in one transaction."
    );
    describe_gauge!(DB_POOL_CONNECTIONS, "Database pool connections, by state.");
    describe_gauge!(
        DB_POOL_MAX_CONNECTIONS,
        "Configured maximum database pool size."
    );
}
