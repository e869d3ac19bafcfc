//! callhook: receives Huawei Cloud VoiceCall status and CDR callbacks and keeps them in
//! PostgreSQL. See ARCHITECTURE.md for the data flow.
//!
//! The stand-in platform, the load generator and the demo are the `callhook-simulator` crate
//! (`crates/simulator`, binary `callhook-sim`), built on top of this one; nothing here depends
//! on it.

/// Startup and graceful shutdown: builds the handlers' state (`http::AppState`), starts the
/// server and the background tasks.
pub mod app;
/// The call log: one row per call, computed from all its facts in a fixed order; no I/O.
pub mod calls;
/// The command line (`serve`, `migrate`, `healthcheck`, and the outbound `call`, `notify`,
/// `verify-code`, `stop`, `recording`).
pub mod cli;
/// The outbound client: places calls through the platform's APIs, signed, validated, recorded,
/// and never dialling twice.
pub mod client;
/// Configuration, loaded once (`config.toml` holds every default).
pub mod config;
/// HTTP handlers and middleware: the callback endpoints, the read API (`http::api`, `/v1`),
/// the web console (`http::console`, `/console`), the state they share (`http::AppState`);
/// errors become responses here.
pub mod http;
/// From callback to rows: the receipt (group commit, or the local spool), then the projector.
pub mod ingest;
/// The voice KPIs (ASR, NER, ACD, PDD, distributions): definitions shared by `store::kpis`
/// and the call metrics (which `metrics` records from a projection's observations).
pub mod kpis;
/// Metric names, the Prometheus recorder, and the recording of the call metrics.
pub mod metrics;
/// Wire formats, signatures and times of the platform: the `callhook-platform` crate
/// (`crates/platform`), which has no I/O and depends on nothing of ours.
pub use callhook_platform as platform;
/// PostgreSQL: pool, migrations, one module per table.
pub mod store;
/// The live stream of call changes (`GET /v1/stream`): one reader per process for every
/// subscriber, woken by NOTIFY, with positions that never skip a change.
pub mod stream;
/// Background tasks that are started again when they panic.
pub mod tasks;
/// Logging setup and phone-number masking.
pub mod telemetry;
