//! Load mode: drives any receiver with platform-like callback traffic over keep-alive HTTP/1.1
//! connections and reports throughput, CDR rows, latency percentiles and errors by kind.
//!
//! Built on hyper's connection-level client (one task per connection, no pool, no redirects)
//! so the generator stays far cheaper than the receiver it measures.

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::net::TcpStream;

use super::traffic::{Kind, Traffic};
use callhook_platform::{
    signature::{DigestVariant, sign_callback},
    time::format_created,
};

/// How to sign callbacks (spec §1.2), or `None` in `LoadOptions` for unsigned traffic.
#[derive(Clone)]
pub struct Signer {
    pub app_key: String,
    pub secret: SecretString,
    pub variant: DigestVariant,
    /// The URLs the receiver checks digests against (its public URLs) for status events and
    /// for fee lists.
    pub signed_status_url: String,
    pub signed_fee_url: String,
}

#[derive(Clone)]
pub struct LoadOptions {
    /// Where status events go (and fee lists, unless `fee_url` is set).
    pub url: Uri,
    pub fee_url: Option<Uri>,
    pub connections: usize,
    pub duration: Duration,
    /// Stop after this many requests in all (`None`: run for `duration`).
    pub max_requests: Option<u64>,
    /// Share of requests that are fee lists (0.0–1.0).
    pub fee_share: f64,
    /// Fee list sizes are drawn from `min_batch..=max_batch`.
    pub min_batch: usize,
    pub max_batch: usize,
    pub seed: u64,
    pub signer: Option<Signer>,
    pub request_timeout: Duration,
}

/// What a run measured. Serialised as the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub succeeded: u64,
    pub status_events: u64,
    pub fee_lists: u64,
    pub cdr_rows: u64,
    pub requests_per_sec: f64,
    pub cdr_rows_per_sec: f64,
    pub latency_ms: Latency,
    /// Failed requests by kind: `http_<status>`, `connect`, `timeout`, `connection_lost`.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

struct ConnectionStats {
    histogram: Histogram<u64>,
    requests: u64,
    succeeded: u64,
    status_events: u64,
    fee_lists: u64,
    cdr_rows: u64,
    errors: BTreeMap<String, u64>,
}

impl ConnectionStats {
    fn new() -> Self {
        Self {
            // Microseconds, 1 µs to 60 s, 3 significant figures.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            requests: 0,
            succeeded: 0,
            status_events: 0,
            fee_lists: 0,
            cdr_rows: 0,
            errors: BTreeMap::new(),
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
}

/// Runs the load and returns what it measured.
pub async fn run(options: LoadOptions) -> LoadReport {
    let options = Arc::new(options);
    let run_id = format!(
        "{:x}",
        OffsetDateTime::now_utc().unix_timestamp_nanos() & 0xffff_ffff_ffff
    );
    let budget = Arc::new(options.max_requests.map(std::sync::atomic::AtomicU64::new));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut connections = tokio::task::JoinSet::new();
    for connection in 0..options.connections {
        let (options, budget, run_id) = (options.clone(), budget.clone(), run_id.clone());
        connections
            .spawn(async move { drive(connection, &options, &run_id, deadline, &budget).await });
    }
    let stats = connections.join_all().await;
    report(&options, started.elapsed(), stats)
}

/// One connection: reconnects after a failure, sends requests back to back until the deadline.
async fn drive(
    connection: usize,
    options: &LoadOptions,
    run_id: &str,
    deadline: Instant,
    budget: &Option<std::sync::atomic::AtomicU64>,
) -> ConnectionStats {
    let mut stats = ConnectionStats::new();
    let mut traffic = Traffic::new(
        options.seed,
        run_id,
        connection,
        options.fee_share,
        (options.min_batch, options.max_batch),
    );
    let mut nonce_counter = 0u64;
    let take = || match budget {
        None => true,
        Some(left) => left
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            )
            .is_ok(),
    };
    'connect: while Instant::now() < deadline {
        let Ok(mut sender) = connect(&options.url).await else {
            stats.error("connect");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while Instant::now() < deadline {
            if !take() {
                break 'connect;
            }
            let (kind, body) = traffic.next_body();
            let uri = match (kind, &options.fee_url) {
                (Kind::Fee(_), Some(fee_url)) => fee_url,
                _ => &options.url,
            };
            nonce_counter += 1;
            let request = build_request(
                uri,
                kind,
                body,
                options.signer.as_ref(),
                run_id,
                connection,
                nonce_counter,
            );
            let sent = Instant::now();
            stats.requests += 1;
            let answer = tokio::time::timeout(options.request_timeout, async {
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|_| "connection_lost")?;
                let status = response.status();
                // The body must be read to the end for the connection to be reused.
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|_| "connection_lost")?;
                Ok::<_, &'static str>(status)
            })
            .await;
            let elapsed = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            match answer {
                Ok(Ok(status)) if status.is_success() => {
                    stats.succeeded += 1;
                    let _ = stats.histogram.record(elapsed.max(1));
                    match kind {
                        Kind::Status => stats.status_events += 1,
                        Kind::Fee(rows) => {
                            stats.fee_lists += 1;
                            stats.cdr_rows += rows as u64;
                        }
                    }
                }
                Ok(Ok(status)) => {
                    let _ = stats.histogram.record(elapsed.max(1));
                    stats.error(format!("http_{}", status.as_u16()));
                }
                Ok(Err(kind)) => {
                    stats.error(kind);
                    continue 'connect;
                }
                Err(_) => {
                    stats.error("timeout");
                    continue 'connect;
                }
            }
        }
        break;
    }
    stats
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(uri: &Uri) -> Result<Sender, ()> {
    let host = uri.host().ok_or(())?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await.map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    tokio::spawn(connection);
    Ok(sender)
}

fn build_request(
    uri: &Uri,
    kind: Kind,
    body: Bytes,
    signer: Option<&Signer>,
    run_id: &str,
    connection: usize,
    counter: u64,
) -> Request<Full<Bytes>> {
    let authority = uri.authority().map_or("localhost", |a| a.as_str());
    let mut request = Request::post(uri.path_and_query().map_or("/", |pq| pq.as_str()))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json;charset=UTF-8");
    if let Some(signer) = signer {
        // Unique per request: the run, the connection and a counter, as letters and digits only.
        let nonce = format!("{run_id}{connection:04x}{counter:016x}").to_uppercase();
        let created = format_created(OffsetDateTime::now_utc());
        let signed_url = match kind {
            Kind::Status => &signer.signed_status_url,
            Kind::Fee(_) => &signer.signed_fee_url,
        };
        let headers = sign_callback(
            &signer.app_key,
            signer.secret.expose_secret(),
            signed_url,
            nonce,
            created,
            signer.variant,
        );
        request = request
            .header(header::AUTHORIZATION, headers.authorization)
            .header("x-aksk", headers.x_aksk);
    }
    request.body(Full::new(body)).expect("a valid request")
}

fn report(options: &LoadOptions, elapsed: Duration, stats: Vec<ConnectionStats>) -> LoadReport {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut total = ConnectionStats::new();
    for s in stats {
        let _ = histogram.add(&s.histogram);
        total.requests += s.requests;
        total.succeeded += s.succeeded;
        total.status_events += s.status_events;
        total.fee_lists += s.fee_lists;
        total.cdr_rows += s.cdr_rows;
        for (kind, n) in s.errors {
            *total.errors.entry(kind).or_default() += n;
        }
    }
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    LoadReport {
        connections: options.connections,
        duration_secs: secs,
        requests: total.requests,
        succeeded: total.succeeded,
        status_events: total.status_events,
        fee_lists: total.fee_lists,
        cdr_rows: total.cdr_rows,
        requests_per_sec: total.succeeded as f64 / secs,
        cdr_rows_per_sec: total.cdr_rows as f64 / secs,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: histogram.max() as f64 / 1000.0,
        },
        errors: total.errors,
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} connections, {:.1} s",
            self.connections, self.duration_secs
        )?;
        writeln!(
            f,
            "requests   {:>10} ok of {} sent   {:>10.0} req/s",
            self.succeeded, self.requests, self.requests_per_sec
        )?;
        writeln!(f, "  status   {:>10}", self.status_events)?;
        writeln!(
            f,
            "  fee      {:>10} lists, {} CDR rows   {:.0} rows/s",
            self.fee_lists, self.cdr_rows, self.cdr_rows_per_sec
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.max
        )?;
        if self.errors.is_empty() {
            write!(f, "errors     none")
        } else {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            write!(f, "errors     {}", errors.join(" "))
        }
    }
}
