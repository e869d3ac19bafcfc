//! Starting the app, talking to it, and the tools to break things on purpose.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use callhook::{
    app::Application,
    config::Config,
    platform::{
        signature::{AKSK_AUTHORIZATION, DigestVariant, sign_callback},
        time::format_created,
    },
};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{broadcast, oneshot},
    task::JoinHandle,
};

pub const CALLOUT_SAMPLE: &str = include_str!("../fixtures/status-callout.json");
pub const FEE_SAMPLE: &str = include_str!("../fixtures/fee-click2call.json");

pub const APP_KEY: &str = "ka4kTestAppKey01";
pub const APP_SECRET: &str = "test-app-secret-value";

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    /// This app's spool directory; removed when the app is dropped unless the test chose it.
    pub spool_dir: PathBuf,
    owns_spool_dir: bool,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// The app with default configuration (signature mode observe, no apps).
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |_| {}).await
}

/// The app with the configuration adjusted by `configure`; it always listens on a random port.
pub async fn spawn_app_with(pool: PgPool, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::defaults();
    let own_spool_dir = temp_spool_dir();
    config.spool.dir = own_spool_dir.clone();
    configure(&mut config);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let spool_dir = config.spool.dir.clone();
    let owns_spool_dir = spool_dir == own_spool_dir;
    if std::env::var_os("TEST_LOG").is_some() {
        callhook::telemetry::init(&config.log);
    }
    let app = Application::with_pool(config, pool.clone())
        .await
        .expect("app starts");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        pool,
        client: reqwest::Client::new(),
        spool_dir,
        owns_spool_dir,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Adds one app with one secret, the usual signing setup of these tests.
pub fn with_test_app(config: &mut Config) {
    config.apps =
        serde_json::from_value(serde_json::json!([{"key": APP_KEY, "secrets": [APP_SECRET]}]))
            .unwrap();
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a callback and returns once what it was answered has been projected (see
    /// `projected`), so the test can read the derived rows at once.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json;charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("request is sent");
        self.projected_if_kept_in_database(&response).await;
        response
    }

    /// Waits for projection when the answer says the receipt went to the database (one kept in
    /// the spool waits for the database to come back).
    async fn projected_if_kept_in_database(&self, response: &reqwest::Response) {
        if response
            .headers()
            .get("x-callhook-kept-in")
            .is_some_and(|v| v == "database")
        {
            self.projected().await;
        }
    }

    /// Waits (polling, at most 20 s) until nothing this app kept waits for projection: its spool
    /// is empty and no receipt in the database is still `received`.
    pub async fn projected(&self) {
        wait_for_projection(&self.pool, Some(&self.spool_dir)).await;
    }

    /// Posts with `Authorization: AKSK …` and `X-AKSK` signed over `signed_url`.
    pub async fn post_signed(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        signature: &Signature,
    ) -> reqwest::Response {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json;charset=UTF-8")
            .header("authorization", AKSK_AUTHORIZATION)
            .header("x-aksk", signature.header())
            .body(body)
            .send()
            .await
            .expect("request is sent");
        self.projected_if_kept_in_database(&response).await;
        response
    }

    /// The Prometheus exposition of `/metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request is sent")
            .text()
            .await
            .expect("a text body")
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    /// What projection made of an acknowledged callback: the `raw_callbacks.outcome` of the
    /// receipt its answer names (`x-callhook-callback-id`). Read it once projected (`post` and
    /// `post_signed` wait for that; after `client` requests, call `projected` first).
    pub async fn kept_outcome(&self, response: &reqwest::Response) -> String {
        kept_outcome(&self.pool, response).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("select count(*) from {table}");
        sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.owns_spool_dir {
            let _ = std::fs::remove_dir_all(&self.spool_dir);
        }
    }
}

/// A spool directory of its own for one app or binary of a test, under cargo's scratch
/// directory for integration tests (inside target/, so what a killed binary leaves behind goes
/// with `cargo clean`).
pub fn temp_spool_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("callhook-test-spool-{}", uuid::Uuid::new_v4()))
}

/// Whether a spool directory holds segments still to drain.
pub fn spool_has_segments(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".seg"))
    })
}

/// Polls (at most 20 s) until no receipt in the database waits for projection and the spool
/// directory, if given, holds nothing to drain.
///
/// The spool is looked at first: the drainer removes a segment only once its receipts are in
/// the database, so a receipt that was in the spool before an empty look is in the database
/// (`received` or projected) by the look that follows. The other order can miss a receipt
/// drained between the two looks.
pub async fn wait_for_projection(pool: &PgPool, spool_dir: Option<&std::path::Path>) {
    for _ in 0..2000 {
        let spooled = spool_dir.is_some_and(spool_has_segments);
        let waiting: i64 =
            sqlx::query_scalar("select count(*) from raw_callbacks where outcome = 'received'")
                .fetch_one(pool)
                .await
                .unwrap_or(1);
        if !spooled && waiting == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("receipts still waiting for projection after 20 s");
}

/// The receipt an acknowledged callback was kept as, from its `x-callhook-callback-id` header.
pub fn callback_id(response: &reqwest::Response) -> uuid::Uuid {
    response
        .headers()
        .get("x-callhook-callback-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("an acknowledged callback names its receipt in x-callhook-callback-id")
}

/// The `x-callhook-outcome` header of an answer, if any.
pub fn answered_outcome(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-callhook-outcome")
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
}

/// The `raw_callbacks.outcome` of the receipt an acknowledged callback was kept as.
pub async fn kept_outcome(pool: &PgPool, response: &reqwest::Response) -> String {
    sqlx::query_scalar("select outcome from raw_callbacks where id = $1")
        .bind(callback_id(response))
        .fetch_one(pool)
        .await
        .expect("the acknowledged receipt is in raw_callbacks")
}

/// What a signer controls in an X-AKSK header.
#[derive(Clone)]
pub struct Signature {
    pub app_key: String,
    pub secret: String,
    pub signed_url: String,
    pub nonce: String,
    pub created: String,
    pub variant: DigestVariant,
}

impl Signature {
    /// A fresh, correct signature of the test app over `signed_url`.
    pub fn new(signed_url: impl Into<String>) -> Self {
        Self {
            app_key: APP_KEY.into(),
            secret: APP_SECRET.into(),
            signed_url: signed_url.into(),
            nonce: uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
            created: format_created(OffsetDateTime::now_utc()),
            variant: DigestVariant::Newline,
        }
    }

    pub fn header(&self) -> String {
        sign_callback(
            &self.app_key,
            &self.secret,
            &self.signed_url,
            self.nonce.clone(),
            self.created.clone(),
            self.variant,
        )
        .x_aksk
    }
}

pub fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// A status event body.
pub fn status_body(event_type: &str, session_id: &str, extra: Value) -> String {
    let mut info = serde_json::json!({
        "sessionId": session_id,
        "timestamp": "2026-11-24 06:00:00",
        "caller": "+8613800000001",
        "called": "+8613800000002",
    });
    if let (Some(info), Value::Object(extra)) = (info.as_object_mut(), extra) {
        info.extend(extra);
    }
    serde_json::json!({"eventType": event_type, "statusInfo": info}).to_string()
}

/// A fee list of `n` distinct CDRs of session `session_prefix-i` (each with its own icid).
pub fn fee_body(session_prefix: &str, n: usize) -> String {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "direction": 0, "spId": "CaaS_Test_01", "appKey": APP_KEY,
                "icid": format!("CAE-{session_prefix}-{i}"), "bindNum": "+867550000000",
                "sessionId": format!("{session_prefix}-{i}"),
                "callerNum": "+8613800000001", "calleeNum": "+8613800000002",
                "callOutStartTime": "2026-11-24 06:00:00", "callOutAnswerTime": "2026-11-24 06:00:05",
                "callEndTime": "2026-11-24 06:01:00", "fwdUnaswRsn": 0, "ulFailReason": 0,
                "serviceType": "002", "hostName": "callenabler245.huaweicaas.com", "userData": ""
            })
        })
        .collect();
    serde_json::json!({"eventType": "fee", "feeLst": records}).to_string()
}

/// The newest raw_callbacks row: (outcome, http_status, error, signature_verdict).
pub async fn last_raw(pool: &PgPool) -> (String, i16, Option<Value>, String) {
    sqlx::query_as("select outcome, http_status, error, signature_verdict from raw_callbacks order by id desc limit 1")
        .fetch_one(pool)
        .await
        .expect("a raw_callbacks row")
}

/// A TCP proxy in front of PostgreSQL that can be cut: while down it drops every open
/// connection and refuses new ones, as a database outage looks to the app.
pub struct ChaosProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl ChaosProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = broadcast::channel(1);
        let (down_flag, cut_sender) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if down_flag.load(Ordering::SeqCst) {
                    continue; // dropping the socket refuses the connection
                }
                let mut cut = cut_sender.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Self { addr, down, cut }
    }

    /// A proxy in front of the test database's server, and a pool to the test database through
    /// it (connecting lazily, so it can be made while the proxy is down). Its
    /// `acquire_timeout_ms` is short, so an outage shows quickly.
    pub async fn in_front_of(pool: &PgPool, acquire_timeout_ms: u64) -> (Self, PgPool) {
        let options = (*pool.connect_options()).clone();
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let proxy = Self::start(
            tokio::net::lookup_host(upstream)
                .await
                .unwrap()
                .next()
                .unwrap(),
        )
        .await;
        let mut database = callhook::config::Config::defaults().database;
        database.acquire_timeout_ms = acquire_timeout_ms;
        let through = callhook::store::pool_options(&database)
            .connect_lazy_with(options.host("127.0.0.1").port(proxy.addr.port()));
        (proxy, through)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let _ = self.cut.send(());
        }
    }
}

/// The URL of the test's own database (the one `#[sqlx::test]` made), for a callhook process:
/// the server of `DATABASE_URL` with the test database's name.
pub fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for these tests");
    let mut url = reqwest::Url::parse(&server).expect("DATABASE_URL is a URL");
    url.set_path(
        pool.connect_options()
            .get_database()
            .expect("sqlx::test names the database"),
    );
    url.to_string()
}

/// The real binary, `callhook serve` on a free port against the test's database, logging errors
/// only and killed when dropped; `configure` adds to its command. Returns it with its base URL,
/// without waiting for it (see `wait_until_healthy`).
pub fn spawn_binary(
    pool: &PgPool,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url(pool))
        .env("CALLHOOK_LOG__FILTER", "error")
        .env("CALLHOOK_SPOOL__DIR", temp_spool_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    configure(&mut command);
    let server = command.spawn().expect("the callhook binary starts");
    (server, format!("http://127.0.0.1:{port}"))
}

/// Waits (at most 10 s) until the server at `base` answers /healthz.
pub async fn wait_until_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
