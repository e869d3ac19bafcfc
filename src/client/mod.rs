//! The outbound client: places calls through the platform's APIs (spec §2), signed, validated,
//! recorded in `placed_calls`, and never dialling twice.
//!
//! ```no_run
//! # async fn example(config: callhook::config::Config, pool: sqlx::PgPool) -> Result<(), callhook::client::Error> {
//! use callhook::client::{ClickToCall, PlatformClient};
//!
//! let client = PlatformClient::new(&config, pool)?;
//! let app_key = client.app_key(None)?.to_owned(); // platform.default_app, or the only app
//! let placed = client
//!     .click_to_call(
//!         &app_key,
//!         ClickToCall {
//!             display_nbr: "+867550000001".into(),
//!             caller_nbr: "+8613800000001".into(),
//!             display_callee_nbr: "+867550000001".into(),
//!             callee_nbr: "+8613800000002".into(),
//!             user_data: Some("order-42".into()),
//!             ..ClickToCall::default()
//!         },
//!     )
//!     .await?;
//! println!("sessionId {}", placed.session_id);
//! # Ok(()) }
//! ```
//!
//! What "never dialling twice" means here. A request that may have reached the platform is never
//! sent again: not after a timeout once connected, not after the connection broke off, not after
//! an HTTP error or any result code. Two failures are retried, at most `platform.max_attempts`
//! times in all: no connection could be made (refused, DNS, connect timeout: nothing was sent),
//! with a doubling `retry_backoff_ms`; and the flow-control answer 1010010 (the platform declined
//! the request), after `flow_control_backoff_ms`.
//!
//! Circuit breaker, shared by all clones of one client: the IP-blacklist answer 1020176, or
//! `auth_failures_before_cooldown` authentication failures in a row (codes marked in
//! `platform::result_codes`), stop all requests for `cooldown_secs`: they fail at once with
//! [`Error::CircuitOpen`]. A success resets the count; after the cooldown a single further
//! authentication failure opens the breaker again. A new client (each CLI command is a new
//! process, and so is every replica) first restores the breaker from the answers recorded in
//! `placed_calls` within the cooldown, so it does not call a platform that has just blacklisted
//! this machine.

pub mod commands;
mod error;
mod operations;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use self::operations::Operation;
pub use self::{
    error::{Error, ValidationError},
    operations::{
        CallAccepted, CallStopped, CalleeMedia, ClickToCall, LastMinToUe, PlayContentInfo,
        RecordingFile, RecordingLink, StopCall, StopSignal, VerificationCode, VoiceNotification,
        encode_callback_url,
    },
};
use crate::{
    config::{Config, PlatformConfig},
    platform::{
        outbound::{AuthScheme, auth_headers},
        result_codes::{self, Class},
        signature::is_valid_nonce,
        time::format_created,
    },
    store::placed_calls::{self, PlacedCall, PlacedOutcome},
    telemetry::mask_numbers,
};

/// The `Content-Type` of every request (spec §2.1).
pub const CONTENT_TYPE: &str = "application/json;charset=UTF-8";
/// The flow-control result code: the one answer after which a request is sent again.
const FLOW_CONTROL: &str = "1010010";
/// How much of an unreadable answer an error quotes.
const EXCERPT_CHARS: usize = 200;

/// A client for the platform's APIs. Cheap to clone; clones share the circuit breaker.
#[derive(Clone)]
pub struct PlatformClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `public_base_url`: where the callbacks of calls placed without URLs go. Empty: nowhere.
    public_base_url: String,
    apps: Vec<App>,
    settings: PlatformConfig,
    breaker: Breaker,
    /// Set once the breaker has been restored from `placed_calls`.
    breaker_restored: tokio::sync::OnceCell<()>,
    pool: PgPool,
}

struct App {
    key: String,
    /// The first configured secret: the one requests are signed with.
    secret: SecretString,
    scheme: AuthScheme,
}

impl std::fmt::Debug for PlatformClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps: Vec<_> = self.inner.apps.iter().map(|app| &app.key).collect();
        f.debug_struct("PlatformClient")
            .field("base_url", &self.inner.settings.base_url)
            .field("apps", &apps)
            .finish_non_exhaustive()
    }
}

impl PlatformClient {
    /// A client for the `[platform]` and `[[apps]]` of `config`, recording into `pool` (which
    /// must be migrated).
    pub fn new(config: &Config, pool: PgPool) -> Result<Self, Error> {
        let settings = config.platform.clone();
        Url::parse(&settings.base_url)
            .map_err(|e| Error::Config(format!("platform.base_url: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .timeout(settings.timeout())
            // The recording link is the Location of a 301; following it would fetch the file.
            .redirect(reqwest::redirect::Policy::none())
            // The platform closes connections itself (spec §2); a pooled connection it has
            // closed could fail after sending, an error that cannot be retried. So: one
            // connection per request.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("callhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let apps = config
            .apps
            .iter()
            .filter_map(|app| {
                Some(App {
                    key: app.key.clone(),
                    secret: app.secrets.first()?.clone(),
                    scheme: app.auth,
                })
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                public_base_url: config.public_base_url.clone(),
                apps,
                breaker: Breaker::new(settings.auth_failures_before_cooldown, settings.cooldown()),
                breaker_restored: tokio::sync::OnceCell::new(),
                settings,
                pool,
            }),
        })
    }

    /// The app to act for: `requested` if given (it must be configured), else
    /// `platform.default_app`, else the only configured app.
    pub fn app_key<'a>(&'a self, requested: Option<&'a str>) -> Result<&'a str, Error> {
        let default = &self.inner.settings.default_app;
        if let Some(key) = requested.or((!default.is_empty()).then_some(default.as_str())) {
            return self.app(key).map(|app| app.key.as_str());
        }
        match self.inner.apps.as_slice() {
            [only] => Ok(&only.key),
            [] => Err(Error::NoDefaultApp(
                "no app is configured: add an [[apps]] entry (key and secrets)".into(),
            )),
            _ => Err(Error::NoDefaultApp(
                "several apps are configured: name one (--app KEY) or set platform.default_app"
                    .into(),
            )),
        }
    }

    /// Click-to-call: the platform calls `caller_nbr`, then connects `callee_nbr`.
    pub async fn click_to_call(
        &self,
        app_key: &str,
        request: ClickToCall,
    ) -> Result<CallAccepted, Error> {
        self.place_call(app_key, request).await
    }

    /// Voice notification: calls `callee_nbr` and plays the segments.
    pub async fn notify(
        &self,
        app_key: &str,
        request: VoiceNotification,
    ) -> Result<CallAccepted, Error> {
        self.place_call(app_key, request).await
    }

    /// Voice verification code: calls `callee_nbr` and speaks the code.
    pub async fn verify_code(
        &self,
        app_key: &str,
        request: VerificationCode,
    ) -> Result<CallAccepted, Error> {
        self.place_call(app_key, request).await
    }

    /// Ends a call in progress (both parties). Fails if the call has already ended.
    pub async fn stop_call(&self, app_key: &str, request: StopCall) -> Result<CallStopped, Error> {
        let session_id = request.session_id.clone();
        let (accepted, placed_call_id) = self
            .perform(app_key, request, Some(session_id.clone()))
            .await?;
        Ok(CallStopped {
            session_id,
            result_desc: accepted.result_desc(),
            placed_call_id,
        })
    }

    /// The download link of a click-to-call recording (the platform answers 301 + Location).
    pub async fn recording_link(
        &self,
        app_key: &str,
        request: RecordingFile,
    ) -> Result<RecordingLink, Error> {
        let (accepted, placed_call_id) = self.perform(app_key, request, None).await?;
        Ok(RecordingLink {
            url: accepted.location.unwrap_or_default(),
            placed_call_id,
        })
    }

    async fn place_call<O: Operation>(
        &self,
        app_key: &str,
        mut request: O,
    ) -> Result<CallAccepted, Error> {
        self.fill_callback_urls(&mut request);
        let (accepted, placed_call_id) = self.perform(app_key, request, None).await?;
        Ok(CallAccepted {
            session_id: accepted.session_id().unwrap_or_default(),
            result_desc: accepted.result_desc(),
            idle_port: accepted.idle_port(),
            placed_call_id,
        })
    }

    /// Callback URLs the caller left out point at this service, when its public URL is known.
    fn fill_callback_urls<O: Operation>(&self, request: &mut O) {
        let base = &self.inner.public_base_url;
        if base.is_empty() {
            return;
        }
        if let Some((status_url, fee_url)) = request.callback_urls() {
            status_url.get_or_insert_with(|| format!("{base}/voicecall/status"));
            fee_url.get_or_insert_with(|| format!("{base}/voicecall/fee"));
        }
    }

    /// Validates, sends (with the retries allowed), and records the outcome in `placed_calls`.
    #[tracing::instrument(name = "platform request", skip_all, fields(operation = O::NAME, app_key))]
    async fn perform<O: Operation>(
        &self,
        app_key: &str,
        request: O,
        session_id: Option<String>,
    ) -> Result<(Accepted, Option<Uuid>), Error> {
        tracing::Span::current().record("app_key", app_key);
        let requested_at = OffsetDateTime::now_utc();
        let mut trace = Trace::default();
        let wire = serde_json::to_value(&request).expect("requests serialise to JSON");
        let result = match (self.app(app_key), request.validate()) {
            (Err(error), _) => Err(error),
            (_, Err(invalid)) => Err(Error::Validation(invalid)),
            (Ok(app), Ok(())) => self.exchange::<O>(app, &wire, &mut trace).await,
        };
        let outcome = match &result {
            Ok(_) => PlacedOutcome::Accepted,
            Err(Error::Platform { .. }) => PlacedOutcome::Declined,
            Err(error) if error.may_have_placed_call() => PlacedOutcome::Failed,
            Err(_) => PlacedOutcome::NotSent,
        };
        let row = PlacedCall {
            id: Uuid::now_v7(),
            operation: O::NAME,
            app_key: app_key.to_owned(),
            user_data: request.user_data().map(str::to_owned),
            session_id: session_id.or_else(|| {
                result
                    .as_ref()
                    .ok()
                    .and_then(Accepted::session_id)
                    .filter(|id| !id.is_empty())
            }),
            request: wire,
            response: trace.response,
            http_status: trace.http_status,
            result_code: trace.result_code,
            result_desc: trace.result_desc,
            outcome,
            error: result.as_ref().err().map(ToString::to_string),
            attempts: trace.attempts,
            requested_at,
            answered_at: Some(OffsetDateTime::now_utc()),
        };
        match &result {
            Ok(_) => tracing::debug!(
                outcome = outcome.as_str(),
                attempts = row.attempts,
                "platform request done"
            ),
            Err(error) => tracing::warn!(
                outcome = outcome.as_str(),
                attempts = row.attempts,
                error = %mask_numbers(&error.to_string()),
                "platform request failed"
            ),
        }
        // The platform's answer matters more than our record of it: a failed insert is logged,
        // never returned in place of the answer.
        let recorded = match placed_calls::record(&self.inner.pool, &row).await {
            Ok(()) => Some(row.id),
            Err(error) => {
                tracing::error!(%error, placed_call_id = %row.id, "could not record the placed call");
                None
            }
        };
        result.map(|accepted| (accepted, recorded))
    }

    /// Replays the platform's answers of the last cooldown into the breaker, oldest first, each
    /// at the time it came, as if this client had received them.
    async fn restore_breaker(&self) {
        let breaker = &self.inner.breaker;
        match placed_calls::recent_answers(&self.inner.pool, breaker.cooldown).await {
            Ok(answers) => {
                for (answered_at, code) in answers {
                    breaker.record_at(result_codes::class_of(&code), answered_at);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not restore the circuit breaker from placed_calls")
            }
        }
    }

    fn app(&self, key: &str) -> Result<&App, Error> {
        self.inner
            .apps
            .iter()
            .find(|app| app.key == key)
            .ok_or_else(|| Error::UnknownApp(key.to_owned()))
    }

    /// The attempts of one operation. Returns as soon as a request may have reached the platform
    /// without being accepted, except for flow control.
    async fn exchange<O: Operation>(
        &self,
        app: &App,
        wire: &Value,
        trace: &mut Trace,
    ) -> Result<Accepted, Error> {
        let settings = &self.inner.settings;
        let mut backoff = settings.retry_backoff();
        let mut attempt = 0;
        self.inner
            .breaker_restored
            .get_or_init(|| self.restore_breaker())
            .await;
        loop {
            self.inner.breaker.check()?;
            attempt += 1;
            trace.attempts = attempt;
            let last = attempt >= settings.max_attempts;
            let answer = match self.send::<O>(app, wire).await {
                Ok(answer) => answer,
                Err(error) if error.is_connect() => {
                    // Nothing was sent: safe to try again.
                    let failure = if error.is_timeout() {
                        Error::ConnectTimeout { attempts: attempt }
                    } else {
                        Error::Connect {
                            attempts: attempt,
                            detail: error_chain(&error),
                        }
                    };
                    if last {
                        return Err(failure);
                    }
                    tracing::warn!(attempt, ?backoff, error = %failure, "no connection; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    continue;
                }
                Err(error) if error.is_timeout() => return Err(Error::Timeout),
                Err(error) => return Err(Error::Interrupted(error_chain(&error))),
            };
            trace.http_status = Some(answer.status.as_u16());
            let result = judge::<O>(&answer, trace);
            match &result {
                Ok(_) => self.inner.breaker.record(Class::Success),
                Err(Error::Platform { code, .. }) => {
                    let class = result_codes::class_of(code);
                    self.inner.breaker.record(class);
                    if code == FLOW_CONTROL && !last {
                        let wait = settings.flow_control_backoff();
                        tracing::warn!(attempt, ?wait, "flow control (1010010); retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                Err(_) => {}
            }
            return result;
        }
    }

    /// One signed request: a fresh nonce and time each time.
    async fn send<O: Operation>(&self, app: &App, wire: &Value) -> Result<Answer, reqwest::Error> {
        let nonce = new_nonce();
        let created = format_created(OffsetDateTime::now_utc());
        let auth = auth_headers(
            app.scheme,
            &app.key,
            app.secret.expose_secret(),
            &nonce,
            &created,
        );
        let mut url = Url::parse(&format!("{}{}", self.inner.settings.base_url, O::PATH))
            .expect("base_url was checked when the client was made");
        let method = if O::GET_REDIRECT {
            if let Value::Object(query) = wire {
                let mut pairs = url.query_pairs_mut();
                for (name, value) in query {
                    pairs.append_pair(name, value.as_str().unwrap_or_default());
                }
            }
            Method::GET
        } else {
            Method::POST
        };
        let mut builder = self
            .inner
            .http
            .request(method.clone(), url)
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::AUTHORIZATION, auth.authorization)
            .header(auth.token_header, auth.token.0);
        if method == Method::POST {
            builder = builder.body(serde_json::to_vec(wire).expect("JSON values serialise"));
        }
        let response = builder.send().await?;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await?;
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

/// A CSPRNG nonce: 32 uppercase hex digits (UUIDv4 draws its 122 random bits from the OS).
fn new_nonce() -> String {
    let nonce = Uuid::new_v4().simple().to_string().to_uppercase();
    debug_assert!(is_valid_nonce(&nonce));
    nonce
}

/// An HTTP answer as received.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: bytes::Bytes,
}

/// What an accepted request got back.
struct Accepted {
    body: Option<Value>,
    location: Option<String>,
}

impl Accepted {
    fn field(&self, name: &str) -> Option<&Value> {
        self.body.as_ref()?.get(name)
    }

    fn session_id(&self) -> Option<String> {
        self.field("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn result_desc(&self) -> String {
        self.field("resultdesc")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// `idlePort`, a number or a numeric string.
    fn idle_port(&self) -> Option<u32> {
        match self.field("idlePort")? {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// What the record keeps of the last answer.
#[derive(Default)]
struct Trace {
    attempts: u32,
    http_status: Option<u16>,
    response: Option<Value>,
    result_code: Option<String>,
    result_desc: Option<String>,
}

/// Reads an answer: the recording's redirect, or a JSON `resultcode`.
fn judge<O: Operation>(answer: &Answer, trace: &mut Trace) -> Result<Accepted, Error> {
    let status = answer.status;
    let excerpt = |why: &str| Error::HttpStatus {
        status: status.as_u16(),
        body_excerpt: format!("{why}{}", excerpt(&answer.body)),
    };
    let expects_redirect = O::GET_REDIRECT;
    if expects_redirect && status.is_redirection() {
        return match answer.location.as_deref().filter(|l| !l.is_empty()) {
            Some(location) => {
                trace.response = Some(serde_json::json!({ "location": location }));
                Ok(Accepted {
                    body: None,
                    location: Some(location.to_owned()),
                })
            }
            None => Err(excerpt("a redirect without Location: ")),
        };
    }
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let code = body
        .as_ref()
        .and_then(|body| match body.get("resultcode")? {
            Value::String(code) => Some(code.trim().to_owned()),
            Value::Number(code) => Some(code.to_string()),
            _ => None,
        });
    let desc = body
        .as_ref()
        .and_then(|body| body.get("resultdesc")?.as_str().map(str::to_owned));
    trace.response.clone_from(&body);
    trace.result_code.clone_from(&code);
    trace.result_desc.clone_from(&desc);
    match code.as_deref() {
        None => Err(excerpt("")),
        Some("0") if status.is_success() && !expects_redirect => Ok(Accepted {
            body,
            location: None,
        }),
        Some("0") => Err(excerpt("resultcode 0 but not the expected answer: ")),
        Some(code) => Err(Error::platform(status.as_u16(), code, desc)),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        excerpt.push('…');
    }
    excerpt
}

/// An error with its causes, which reqwest keeps in `source()`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Stops all requests for a while after authentication failures (see the module docs).
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    auth_failures: u32,
    /// When requests may be made again (monotonic, and as a wall-clock time for messages).
    open_until: Option<(Instant, OffsetDateTime)>,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            state: Mutex::default(),
        }
    }

    fn check(&self) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((until, wall)) = state.open_until {
            if Instant::now() < until {
                return Err(Error::CircuitOpen { until: wall });
            }
            // Half-open: the next authentication failure opens it again.
            state.open_until = None;
            state.auth_failures = self.threshold.saturating_sub(1);
        }
        Ok(())
    }

    fn record(&self, class: Class) {
        self.record_at(class, OffsetDateTime::now_utc());
    }

    /// Records an answer that came at `at`: a breaker it opens stays open until `at` + cooldown.
    fn record_at(&self, class: Class, at: OffsetDateTime) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = match class {
            Class::Success => {
                state.auth_failures = 0;
                false
            }
            Class::AuthFailure => {
                state.auth_failures += 1;
                state.auth_failures >= self.threshold
            }
            Class::Blacklisted => true,
            Class::RetryLater | Class::Declined => false,
        };
        if open {
            // A cooldown already over leaves the breaker half-open: the next failure reopens it.
            let wall = at + self.cooldown;
            let left = Duration::try_from(wall - OffsetDateTime::now_utc()).unwrap_or_default();
            state.open_until = Some((Instant::now() + left, wall));
            if !left.is_zero() {
                tracing::error!(until = %wall, "authentication failures: not calling the platform until the cooldown ends");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_32_uppercase_hex_digits_and_differ() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.record(Class::AuthFailure);
        breaker.record(Class::Success);
        breaker.record(Class::AuthFailure);
        assert!(breaker.check().is_ok());
        breaker.record(Class::AuthFailure);
        assert!(matches!(breaker.check(), Err(Error::CircuitOpen { .. })));
    }

    #[test]
    fn after_the_cooldown_one_more_auth_failure_reopens_the_breaker() {
        let breaker = Breaker::new(3, Duration::ZERO);
        breaker.record(Class::Blacklisted);
        assert!(breaker.check().is_ok());
        let breaker = Breaker {
            cooldown: Duration::from_secs(60),
            ..breaker
        };
        breaker.record(Class::AuthFailure);
        assert!(matches!(breaker.check(), Err(Error::CircuitOpen { .. })));
    }
}
