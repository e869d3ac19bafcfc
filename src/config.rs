//! Configuration: one struct, loaded once at start.
//!
//! Defaults live only in the top-level `config.toml`, which is embedded here; see that file for
//! the meaning of every key.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Env, Format, Toml},
    value::{Dict, Map},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The embedded `config.toml`: the base layer, and so the one place defaults are written.
pub const DEFAULT_CONFIG: &str = include_str!("../config.toml");

/// Files layered over the embedded defaults when they exist, in this order (later ones win),
/// before the file named by `--config`: the system-wide one, then one in the working directory.
pub const DISCOVERED_FILES: &[&str] = &["/etc/callhook/config.toml", "config.toml"];

/// What `callhook config` prints in place of every secret.
pub const REDACTED: &str = "***";

const ENV_PREFIX: &str = "CALLHOOK_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration cannot be shown as TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

/// A configuration and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: Sources,
}

/// The layers a configuration was read from, for `callhook config`.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Every file looked for or given, in layering order.
    pub files: Vec<FileSource>,
    /// Names (never values) of the environment variables that set keys.
    pub env_vars: Vec<String>,
    /// `CALLHOOK_*` variables left out because they are Kubernetes service links.
    pub service_links: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    /// Named by `--config` / `CALLHOOK_CONFIG` rather than discovered.
    pub given: bool,
    /// Existed and was layered in (a given file always is; it must exist).
    pub read: bool,
}

/// The configuration. `Serialize` writes every secret as [`REDACTED`]: it exists to show the
/// configuration (`callhook config`), never to store it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_base_url: String,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub spool: SpoolConfig,
    pub projector: ProjectorConfig,
    pub retention: RetentionConfig,
    pub signature: SignatureConfig,
    pub apps: Vec<AppCredentials>,
    pub log: LogConfig,
    pub platform: PlatformConfig,
    pub api: ApiConfig,
    pub console: ConsoleConfig,
    pub kpis: KpisConfig,
    pub stream: StreamConfig,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May carry a password: shown only through [`redacted_url`].
    #[serde(serialize_with = "serialize_url")]
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub retry_after_secs: u64,
    pub trust_forwarded_headers: bool,
}

/// Group commit of receipts (see `ingest::receipts`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub writers: usize,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub max_queued_refusals: usize,
    pub max_concurrent_requests: usize,
    pub commit_timeout_ms: u64,
}

impl IngestConfig {
    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }
}

/// The local spool of receipts the database could not take (see `ingest::spool`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
    pub max_age_secs: u64,
    pub segment_bytes: u64,
}

/// The projector: typed rows, outcomes and the call log from receipts (see `ingest::projector`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorConfig {
    pub workers: usize,
    pub batch: usize,
    pub batch_bytes: usize,
    pub poll_interval_ms: u64,
}

/// How long kept requests that carry nothing derived are kept (see `ingest::retention`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub refused_days: u64,
    pub batch: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    Off,
    Observe,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedUrl {
    Request,
    Fee,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CreatedTimeZone {
    Utc,
    Beijing,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub mode: SignatureMode,
    pub digest_variants: Vec<crate::platform::signature::DigestVariant>,
    pub signed_urls: Vec<SignedUrl>,
    pub created_time_zones: Vec<CreatedTimeZone>,
    pub clock_skew_secs: u64,
}

/// An application's key and its secrets. `SecretString` keeps the secrets out of `Debug` output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppCredentials {
    pub key: String,
    #[serde(serialize_with = "serialize_secrets")]
    pub secrets: Vec<SecretString>,
    /// How the outbound client signs this app's requests; `aksk` unless set (see config.toml).
    #[serde(default)]
    pub auth: crate::platform::outbound::AuthScheme,
}

/// The outbound client (`callhook call`, `callhook::client`); see `[platform]` in config.toml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub base_url: String,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub retry_backoff_ms: u64,
    pub flow_control_backoff_ms: u64,
    pub auth_failures_before_cooldown: u32,
    pub cooldown_secs: u64,
    pub default_app: String,
}

/// The read API under `/v1` (`[api]` in config.toml).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
    pub default_limit: u32,
    pub max_limit: u32,
    pub cdr_gap_after_secs: u64,
    pub export_statement_timeout_ms: u64,
    pub max_concurrent_exports: usize,
}

/// The web console at `/console` (`[console]` in config.toml).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub session_secs: u64,
    pub secure_cookie: SecureCookie,
    pub rows: u32,
}

impl ConsoleConfig {
    /// The longest session accepted: a week. A stolen cookie is good until it expires.
    pub const MAX_SESSION_SECS: u64 = 7 * 24 * 3600;
    /// The most rows a page shows: each page is rendered whole, on every live update.
    pub const MAX_ROWS: u32 = 500;

    pub fn session(&self) -> Duration {
        Duration::from_secs(self.session_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if !(60..=Self::MAX_SESSION_SECS).contains(&self.session_secs) {
            return invalid(format!(
                "console.session_secs must be between 60 and {}",
                Self::MAX_SESSION_SECS
            ));
        }
        if self.rows == 0 || self.rows > Self::MAX_ROWS {
            return invalid(format!(
                "console.rows must be between 1 and {}",
                Self::MAX_ROWS
            ));
        }
        Ok(())
    }
}

/// When the console's session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookie {
    /// When the login came over https (see config.toml).
    Auto,
    Always,
    Never,
}

/// The voice KPIs: `GET /v1/kpis` and their Prometheus metrics (`[kpis]` in config.toml).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KpisConfig {
    pub max_range_days: u32,
    pub top_hangup_causes: u32,
    pub metric_app_keys: Vec<String>,
}

/// The live stream of call changes, `GET /v1/stream` (`[stream]` in config.toml; see `stream`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub keep_alive_ms: u64,
    pub poll_interval_ms: u64,
    pub buffer: usize,
    pub max_subscribers: usize,
}

impl StreamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.keep_alive_ms == 0
            || self.poll_interval_ms == 0
            || self.buffer == 0
            || self.max_subscribers == 0
        {
            return Err(ConfigError::Invalid(
                "stream.keep_alive_ms, stream.poll_interval_ms, stream.buffer and stream.max_subscribers must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// A bearer token of the read API. `SecretString` keeps the token out of `Debug` output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    #[serde(serialize_with = "serialize_secret")]
    pub token: SecretString,
    /// Who holds it; recorded in the request's log span (never the token).
    pub name: String,
    pub scope: TokenScope,
}

/// What a token may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Phone numbers masked (`+86*********11`) everywhere: JSON, CSV, raw bodies.
    Masked,
    /// Everything as stored; also allowed to reprocess refused callbacks.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl Config {
    /// Embedded defaults, then the discovered files, then the optional file, then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_sources(file).map(|loaded| loaded.config)
    }

    /// As [`Config::load`], and which files and variables it was read from.
    pub fn load_with_sources(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let discovered: Vec<&Path> = DISCOVERED_FILES.iter().map(Path::new).collect();
        Self::load_layers(&discovered, file)
    }

    /// The embedded defaults, each of `discovered` that exists, `given` (which must exist),
    /// then `CALLHOOK_*` and `DATABASE_URL`.
    pub fn load_layers(discovered: &[&Path], given: Option<&Path>) -> Result<Loaded, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        let mut files = Vec::new();
        for path in discovered {
            let read = path.exists();
            if read {
                figment = figment.merge(Toml::file_exact(path));
            }
            files.push(FileSource {
                path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
                given: false,
                read,
            });
        }
        if let Some(path) = given {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
            files.push(FileSource {
                path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
                given: true,
                read: true,
            });
        }
        let environment = scan_environment();
        figment = figment
            .merge(PrefixedEnv::new(&environment.service_links))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            );
        let config = Self::from_figment(figment)?;
        Ok(Loaded {
            config,
            sources: Sources {
                files,
                env_vars: environment.used,
                service_links: environment.service_links,
            },
        })
    }

    /// The embedded defaults alone: what tests start from.
    pub fn defaults() -> Self {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_CONFIG)))
            .expect("the embedded config.toml is valid")
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Every rule a configuration must meet; run by `load` and by every start path (so a
    /// configuration built or changed in code is held to the same rules).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        let ingest = &self.ingest;
        if ingest.writers == 0 || ingest.max_batch == 0 || ingest.queue_capacity == 0 {
            return invalid(
                "ingest.writers, ingest.max_batch and ingest.queue_capacity must be at least 1",
            );
        }
        if (ingest.writers + self.projector.workers) as u64
            >= u64::from(self.database.max_connections)
        {
            return invalid(
                "ingest.writers + projector.workers must be below database.max_connections (other work needs connections too)",
            );
        }
        if ingest.max_queued_refusals == 0 || ingest.max_queued_refusals > ingest.queue_capacity {
            return invalid(
                "ingest.max_queued_refusals must be at least 1 and at most ingest.queue_capacity",
            );
        }
        if ingest.max_concurrent_requests == 0 {
            return invalid("ingest.max_concurrent_requests must be at least 1");
        }
        if self.projector.workers == 0
            || self.projector.batch == 0
            || self.projector.batch_bytes == 0
        {
            return invalid(
                "projector.workers, projector.batch and projector.batch_bytes must be at least 1",
            );
        }
        if self.spool.dir.as_os_str().is_empty() {
            return invalid("spool.dir must name a directory");
        }
        if self.spool.segment_bytes < 4096 || self.spool.max_bytes < self.spool.segment_bytes {
            return invalid(
                "spool.segment_bytes must be at least 4096 and spool.max_bytes at least spool.segment_bytes",
            );
        }
        if self.retention.refused_days == 0 || self.retention.batch < 1 {
            return invalid("retention.refused_days and retention.batch must be at least 1");
        }
        if self.http.body_limit_bytes < 1024 {
            return invalid("http.body_limit_bytes must be at least 1024");
        }
        if self.signature.digest_variants.is_empty() {
            return invalid("signature.digest_variants must name at least one variant");
        }
        if self.signature.signed_urls.is_empty() {
            return invalid("signature.signed_urls must name at least one URL");
        }
        if self.signature.created_time_zones.is_empty() {
            return invalid("signature.created_time_zones must name at least one zone");
        }
        if self.public_base_url.ends_with('/') {
            return invalid("public_base_url must not end with '/'");
        }
        for app in &self.apps {
            if app.key.is_empty() || app.secrets.is_empty() {
                return invalid("every [[apps]] entry needs a key and at least one secret");
            }
        }
        if self.signature.mode == SignatureMode::Enforce {
            // Either would have every callback answered 401; the platform never re-pushes
            // status events, so they would all be lost.
            if self.apps.is_empty() {
                return invalid(
                    "signature.mode = \"enforce\" needs at least one [[apps]] entry with its secrets (e.g. CALLHOOK_APPS) to verify callbacks with",
                );
            }
            if self.public_base_url.is_empty() && !self.http.trust_forwarded_headers {
                return invalid(
                    "signature.mode = \"enforce\" needs public_base_url (the URL the platform signs), or http.trust_forwarded_headers = true behind a proxy that sets X-Forwarded-Proto and X-Forwarded-Host",
                );
            }
        }
        if self.kpis.max_range_days == 0 || self.kpis.top_hangup_causes == 0 {
            return invalid("kpis.max_range_days and kpis.top_hangup_causes must be at least 1");
        }
        self.api.validate()?;
        self.stream.validate()?;
        self.console.validate()?;
        self.platform.validate(&self.apps)
    }
}

impl ApiConfig {
    /// Shortest token accepted: a bearer token is a password, and a short one can be guessed.
    pub const MIN_TOKEN_CHARS: usize = 16;

    fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            return invalid("api.default_limit must be between 1 and api.max_limit".into());
        }
        if self.max_concurrent_exports == 0 {
            return invalid("api.max_concurrent_exports must be at least 1".into());
        }
        for (i, token) in self.tokens.iter().enumerate() {
            if token.name.trim().is_empty() {
                return invalid(format!("api.tokens[{i}] needs a name"));
            }
            // Never quote the token itself: this message is printed.
            if token.token.expose_secret().chars().count() < Self::MIN_TOKEN_CHARS {
                return invalid(format!(
                    "api.tokens[{i}] ({}) is shorter than {} characters",
                    token.name,
                    Self::MIN_TOKEN_CHARS
                ));
            }
            if self.tokens[..i].iter().any(|t| t.name == token.name) {
                return invalid(format!("api.tokens name {:?} is used twice", token.name));
            }
        }
        Ok(())
    }

    pub fn cdr_gap_after(&self) -> Duration {
        Duration::from_secs(self.cdr_gap_after_secs)
    }
}

impl PlatformConfig {
    fn validate(&self, apps: &[AppCredentials]) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://"))
            || self.base_url.ends_with('/')
        {
            return invalid("platform.base_url must be an http(s) URL without a trailing '/'");
        }
        if self.connect_timeout_ms == 0 || self.connect_timeout_ms >= self.timeout_ms {
            // The total timeout also runs while connecting; if it ran out first, a request that
            // never left would be reported as one that may have placed a call.
            return invalid(
                "platform.connect_timeout_ms must be above 0 and below platform.timeout_ms",
            );
        }
        if self.max_attempts == 0 {
            return invalid("platform.max_attempts must be at least 1");
        }
        if self.auth_failures_before_cooldown == 0 {
            return invalid("platform.auth_failures_before_cooldown must be at least 1");
        }
        if !self.default_app.is_empty() && !apps.iter().any(|app| app.key == self.default_app) {
            return invalid("platform.default_app must be the key of one of the [[apps]]");
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }
    pub fn flow_control_backoff(&self) -> Duration {
        Duration::from_millis(self.flow_control_backoff_ms)
    }
    pub fn cooldown(&self) -> Duration {
        Duration::from_secs(self.cooldown_secs)
    }
}

impl DatabaseConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redacted_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("create_if_missing", &self.create_if_missing)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// `url` with its password (in the user info or a `password` parameter) replaced by
/// [`REDACTED`]; a URL that cannot be read is not shown at all, as it may hold one anywhere.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return format!("{REDACTED} (not a URL)");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(REDACTED));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn serialize_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redacted_url(url))
}

fn serialize_secret<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(REDACTED)
}

fn serialize_secrets<S: Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(secrets.iter().map(|_| REDACTED))
}

impl Loaded {
    /// What `callhook config` prints: the layers read, in order, then the configuration in
    /// effect as TOML with every secret shown as [`REDACTED`].
    pub fn render(&self) -> Result<String, ConfigError> {
        let mut out = format!(
            "# The configuration in effect; secrets are shown as \"{REDACTED}\".\n\
             # Layers, later ones win:\n\
             #   embedded defaults (config.toml built into the binary)\n"
        );
        for file in &self.sources.files {
            let given = if file.given { " (--config)" } else { "" };
            let state = if file.read { "read" } else { "absent" };
            out.push_str(&format!("#   {}{given}: {state}\n", file.path.display()));
        }
        let names = |names: &[String]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        out.push_str(&format!(
            "#   environment: {}\n",
            names(&self.sources.env_vars)
        ));
        if !self.sources.service_links.is_empty() {
            out.push_str(&format!(
                "# Ignored (Kubernetes service links): {}\n",
                names(&self.sources.service_links)
            ));
        }
        out.push('\n');
        out.push_str(&toml::to_string(&self.config)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

/// The environment variables that configure us, by name.
struct Environment {
    used: Vec<String>,
    service_links: Vec<String>,
}

fn scan_environment() -> Environment {
    let mut used = Vec::new();
    let mut service_links = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), value) = (name.to_str(), value.to_string_lossy()) else {
            continue;
        };
        let upper = name.trim().to_ascii_uppercase();
        if upper == "DATABASE_URL" {
            used.push(name.to_owned());
        }
        let Some(key) = upper.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if key == "CONFIG" {
            // Names a file, which is listed as one.
        } else if is_service_link(key, value.trim()) {
            service_links.push(name.to_owned());
        } else {
            used.push(name.to_owned());
        }
    }
    used.sort();
    service_links.sort();
    Environment {
        used,
        service_links,
    }
}

/// Whether `CALLHOOK_<key>=<value>` is one of the variables Kubernetes puts into every pod for a
/// Service named `callhook` or `callhook-…` (`<NAME>_SERVICE_HOST=10.96.0.12`,
/// `<NAME>_PORT=tcp://10.96.0.12:8080`, `<NAME>_PORT_8080_TCP_ADDR`, …) rather than a key of
/// ours. Name and value must both have the service-link shape, so a real key is never dropped
/// (nested keys contain "__", which a Service name cannot produce).
fn is_service_link(key: &str, value: &str) -> bool {
    if key.contains("__") {
        return false;
    }
    // `CALLHOOK_API_SERVICE_HOST` is Service callhook-api's: the rest of the name comes first.
    std::iter::once(key)
        .chain(key.match_indices('_').map(|(i, _)| &key[i + 1..]))
        .any(|suffix| is_service_link_suffix(suffix, value))
}

fn is_service_link_suffix(suffix: &str, value: &str) -> bool {
    let is_port = |v: &str| v.parse::<u16>().is_ok();
    let is_ip = |v: &str| v.parse::<IpAddr>().is_ok();
    let is_proto = |v: &str| matches!(v, "TCP" | "UDP" | "SCTP");
    let is_address = |v: &str| {
        v.split_once("://").is_some_and(|(proto, at)| {
            is_proto(&proto.to_ascii_uppercase()) && at.parse::<SocketAddr>().is_ok()
        })
    };
    match suffix {
        "SERVICE_HOST" => return is_ip(value),
        "SERVICE_PORT" => return is_port(value),
        "PORT" => return is_address(value),
        _ => {}
    }
    if let Some(port_name) = suffix.strip_prefix("SERVICE_PORT_") {
        return !port_name.is_empty() && is_port(value);
    }
    let Some(port) = suffix.strip_prefix("PORT_") else {
        return false;
    };
    let mut parts = port.splitn(3, '_');
    let (Some(number), Some(proto)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_port(number) || !is_proto(proto) {
        return false;
    }
    match parts.next() {
        None => is_address(value),
        Some("ADDR") => is_ip(value),
        Some("PORT") => is_port(value),
        Some("PROTO") => is_proto(&value.to_ascii_uppercase()),
        Some(_) => false,
    }
}

/// `CALLHOOK_<KEY>` variables (nested keys joined by "__") without the service links, whose
/// errors name the variable (`CALLHOOK_SIGNATURE__MOED`) rather than a dotted key.
struct PrefixedEnv(Env);

impl PrefixedEnv {
    fn new(service_links: &[String]) -> Self {
        let links: Vec<String> = service_links
            .iter()
            .map(|name| name.trim()[ENV_PREFIX.len()..].to_owned())
            .collect();
        Self(
            Env::prefixed(ENV_PREFIX)
                .filter(move |key| !links.iter().any(|link| link.as_str() == key))
                .split("__")
                .ignore(&["config"]),
        )
    }
}

impl Provider for PrefixedEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, path: &[&str]| variable_name(path))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// The variable a key came from: the longest prefix of its path that is a set variable
/// (`CALLHOOK_APPS` for `apps.0.sekrets`), else the path spelled as one.
fn variable_name(path: &[&str]) -> String {
    let spelled = |n: usize| {
        let keys: Vec<String> = path[..n].iter().map(|k| k.to_ascii_uppercase()).collect();
        format!("{ENV_PREFIX}{}", keys.join("__"))
    };
    for n in (1..=path.len()).rev() {
        let name = spelled(n);
        if std::env::var_os(&name).is_some() {
            if n == path.len() {
                return name;
            }
            return format!("{name}, at {}", path.join("."));
        }
    }
    spelled(path.len())
}

impl HttpConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn embedded_defaults_load_and_validate() {
        let config = Config::defaults();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.signature.mode, SignatureMode::Observe);
        assert!(config.apps.is_empty());
        assert_eq!(config.platform.max_attempts, 3);
        assert_eq!(config.platform.cooldown_secs, 1800);
    }

    #[test]
    fn apps_sign_with_aksk_unless_they_ask_for_wsse() {
        use crate::platform::outbound::AuthScheme;
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "CALLHOOK_APPS",
                r#"[{key="a", secrets=["s"]}, {key="b", secrets=["s"], auth="wsse"}]"#,
            );
            jail.set_env("CALLHOOK_PLATFORM__DEFAULT_APP", "b");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.apps[0].auth, AuthScheme::Aksk);
            assert_eq!(config.apps[1].auth, AuthScheme::Wsse);
            assert_eq!(config.platform.default_app, "b");
            Ok(())
        });
    }

    #[test]
    fn a_default_app_that_is_not_configured_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_PLATFORM__DEFAULT_APP", "nobody");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_nested_keys_and_supplies_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_SIGNATURE__MODE", "enforce");
            jail.set_env("CALLHOOK_PUBLIC_BASE_URL", "https://callhook.example.com");
            jail.set_env(
                "CALLHOOK_APPS",
                r#"[{key="AppKeyMixedCase", secrets=["s3cret", "old"]}]"#,
            );
            jail.set_env("DATABASE_URL", "postgres://elsewhere/db");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.signature.mode, SignatureMode::Enforce);
            assert_eq!(config.database.url, "postgres://elsewhere/db");
            assert_eq!(config.apps[0].key, "AppKeyMixedCase");
            assert_eq!(config.apps[0].secrets[1].expose_secret(), "old");
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "CALLHOOK_APPS",
                r#"[{key="k", secrets=["do-not-print-me"]}]"#,
            );
            let config = Config::load(None).expect("loads");
            assert!(!format!("{config:?}").contains("do-not-print-me"));
            Ok(())
        });
    }

    #[test]
    fn api_tokens_come_from_the_environment_alone() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "CALLHOOK_API__TOKENS",
                r#"[{token="ops-token-0123456789", name="ops", scope="full"}, {token="dash-token-0123456789", name="dashboard", scope="masked"}]"#,
            );
            let config = Config::load(None).expect("loads");
            assert_eq!(config.api.tokens.len(), 2);
            assert_eq!(config.api.tokens[0].name, "ops");
            assert_eq!(config.api.tokens[0].scope, TokenScope::Full);
            assert_eq!(
                config.api.tokens[0].token.expose_secret(),
                "ops-token-0123456789"
            );
            assert_eq!(config.api.tokens[1].scope, TokenScope::Masked);
            assert!(!format!("{config:?}").contains("ops-token-0123456789"));
            Ok(())
        });
    }

    #[test]
    fn short_unnamed_or_unknown_scope_tokens_are_refused() {
        for tokens in [
            r#"[{token="short", name="ops", scope="full"}]"#,
            r#"[{token="long-enough-token-0123", name="", scope="full"}]"#,
            r#"[{token="long-enough-token-0123", name="ops", scope="admin"}]"#,
            r#"[{token="long-enough-token-0123", name="a", scope="full"}, {token="other-long-token-0123", name="a", scope="full"}]"#,
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("CALLHOOK_API__TOKENS", tokens);
                let error = Config::load(None).expect_err(tokens).to_string();
                assert!(!error.contains("long-enough-token"), "{error}");
                Ok(())
            });
        }
    }

    /// What Kubernetes injects for a Service named `callhook`, and for one named `callhook-api`.
    const SERVICE_LINKS: &[(&str, &str)] = &[
        ("CALLHOOK_PORT", "tcp://10.96.0.12:8080"),
        ("CALLHOOK_SERVICE_HOST", "10.96.0.12"),
        ("CALLHOOK_SERVICE_PORT", "8080"),
        ("CALLHOOK_SERVICE_PORT_HTTP", "8080"),
        ("CALLHOOK_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
        ("CALLHOOK_PORT_8080_TCP_ADDR", "10.96.0.12"),
        ("CALLHOOK_PORT_8080_TCP_PROTO", "tcp"),
        ("CALLHOOK_PORT_8080_TCP_PORT", "8080"),
        ("CALLHOOK_API_SERVICE_HOST", "fd00::12"),
        ("CALLHOOK_API_PORT", "udp://[fd00::12]:53"),
        ("CALLHOOK_API_PORT_53_UDP_ADDR", "fd00::12"),
    ];

    #[test]
    fn kubernetes_service_links_are_ignored() {
        figment::Jail::expect_with(|jail| {
            // DATABASE_URL of the test run, say, would be listed too.
            jail.clear_env();
            for (name, value) in SERVICE_LINKS {
                jail.set_env(name, value);
            }
            jail.set_env("CALLHOOK_SIGNATURE__MODE", "off");
            let loaded =
                Config::load_with_sources(None).expect("service links do not stop a start");
            assert_eq!(loaded.config.signature.mode, SignatureMode::Off);
            let mut expected: Vec<String> = SERVICE_LINKS
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect();
            expected.sort();
            assert_eq!(loaded.sources.service_links, expected);
            assert_eq!(loaded.sources.env_vars, ["CALLHOOK_SIGNATURE__MODE"]);
            Ok(())
        });
    }

    #[test]
    fn variables_shaped_like_service_links_but_with_other_values_are_still_refused() {
        for (name, value) in [
            ("CALLHOOK_PORT", "9000"),
            ("CALLHOOK_SERVICE_HOST", "callhook.example.com"),
            ("CALLHOOK_PORT_8080_TCP_PORT", "http"),
            ("CALLHOOK_PORT_8080_TCP_PEER", "10.96.0.12"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(name, value);
                let error = Config::load(None).expect_err(name).to_string();
                assert!(error.contains(name), "{name}: {error}");
                Ok(())
            });
        }
    }

    #[test]
    fn a_misspelt_variable_is_refused_by_its_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_SIGNATURE__MOED", "enforce");
            let error = Config::load(None).expect_err("misspelt").to_string();
            assert!(error.contains("CALLHOOK_SIGNATURE__MOED"), "{error}");
            assert!(error.contains("`moed`"), "{error}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "CALLHOOK_APPS",
                r#"[{key="k", sekrets=["do-not-print-me"]}]"#,
            );
            let error = Config::load(None).expect_err("misspelt").to_string();
            assert!(error.contains("CALLHOOK_APPS"), "{error}");
            assert!(!error.contains("do-not-print-me"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn files_are_layered_system_then_local_then_given_then_the_environment() {
        figment::Jail::expect_with(|jail| {
            // Each layer sets the key of its own and every key of the layers after it, so each
            // value shows which layer won.
            jail.create_file(
                "system.toml",
                "[http]\nretry_after_secs = 1\nbody_timeout_ms = 1\nshutdown_timeout_ms = 1\nrequest_timeout_ms = 1",
            )?;
            jail.create_file(
                "local.toml",
                "[http]\nbody_timeout_ms = 2\nshutdown_timeout_ms = 2\nrequest_timeout_ms = 2",
            )?;
            jail.create_file(
                "given.toml",
                "[http]\nshutdown_timeout_ms = 3\nrequest_timeout_ms = 3",
            )?;
            jail.set_env("CALLHOOK_HTTP__REQUEST_TIMEOUT_MS", "4");
            let (system, local, absent) = (
                Path::new("system.toml"),
                Path::new("local.toml"),
                Path::new("absent.toml"),
            );
            let loaded =
                Config::load_layers(&[system, absent, local], Some(Path::new("given.toml")))
                    .expect("loads");
            let http = &loaded.config.http;
            assert_eq!(
                (
                    http.retry_after_secs,
                    http.body_timeout_ms,
                    http.shutdown_timeout_ms,
                    http.request_timeout_ms
                ),
                (1, 2, 3, 4)
            );
            let files: Vec<(String, bool, bool)> = loaded
                .sources
                .files
                .iter()
                .map(|f| {
                    let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
                    assert!(f.path.is_absolute(), "{}", f.path.display());
                    (name, f.given, f.read)
                })
                .collect();
            let expected = [
                ("system.toml", false, true),
                ("absent.toml", false, false),
                ("local.toml", false, true),
                ("given.toml", true, true),
            ]
            .map(|(name, given, read)| (name.to_owned(), given, read));
            assert_eq!(files, expected);
            Ok(())
        });
    }

    #[test]
    fn the_usual_places_are_looked_in_and_a_given_file_must_exist() {
        assert_eq!(
            DISCOVERED_FILES,
            ["/etc/callhook/config.toml", "config.toml"]
        );
        figment::Jail::expect_with(|jail| {
            // The jail's working directory: ./config.toml is read from there.
            jail.create_file("config.toml", "[http]\nretry_after_secs = 9")?;
            assert_eq!(Config::load(None).expect("loads").http.retry_after_secs, 9);
            assert!(matches!(
                Config::load(Some(Path::new("missing.toml"))),
                Err(ConfigError::MissingFile(_))
            ));
            Ok(())
        });
    }

    #[test]
    fn the_embedded_defaults_hold_no_secrets() {
        let config = Config::defaults();
        assert!(config.apps.is_empty(), "no [[apps]] secrets in config.toml");
        assert!(config.api.tokens.is_empty(), "no api.tokens in config.toml");
        let url = reqwest::Url::parse(&config.database.url).unwrap();
        assert_eq!(url.password(), None, "no database password in config.toml");
        assert!(!url.query_pairs().any(|(key, _)| key == "password"));
        assert!(
            DEFAULT_CONFIG.contains("NO SECRETS HERE"),
            "the header says so"
        );
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redacted_url("postgres://user:hunter2@db:5432/callhook?sslmode=require"),
            "postgres://user:***@db:5432/callhook?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://user@db/callhook?password=hunter2&application_name=x"),
            "postgres://user@db/callhook?password=***&application_name=x"
        );
        assert_eq!(
            redacted_url("postgres://user@db/callhook"),
            "postgres://user@db/callhook"
        );
        assert!(!redacted_url("not a url hunter2").contains("hunter2"));
        let mut config = Config::defaults();
        config.database.url = "postgres://user:hunter2@db/callhook".into();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn enforce_mode_without_app_secrets_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_SIGNATURE__MODE", "enforce");
            jail.set_env("CALLHOOK_PUBLIC_BASE_URL", "https://callhook.example.com");
            let error = Config::load(None).expect_err("no apps").to_string();
            assert!(error.contains("signature.mode"), "{error}");
            assert!(error.contains("[[apps]]"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn enforce_mode_needs_a_public_base_url_or_trusted_forwarded_headers() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_SIGNATURE__MODE", "enforce");
            jail.set_env("CALLHOOK_APPS", r#"[{key="k", secrets=["s"]}]"#);
            let error = Config::load(None).expect_err("no public URL").to_string();
            assert!(error.contains("public_base_url"), "{error}");
            assert!(error.contains("http.trust_forwarded_headers"), "{error}");

            jail.set_env("CALLHOOK_HTTP__TRUST_FORWARDED_HEADERS", "true");
            assert!(Config::load(None).is_ok(), "trusted headers name the URL");

            jail.set_env("CALLHOOK_HTTP__TRUST_FORWARDED_HEADERS", "false");
            jail.set_env("CALLHOOK_PUBLIC_BASE_URL", "https://callhook.example.com");
            assert!(Config::load(None).is_ok(), "the public base URL names it");
            Ok(())
        });
    }

    #[test]
    fn the_rendered_configuration_redacts_every_secret() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "CALLHOOK_APPS",
                r#"[{key="app-key-shown", secrets=["app-secret-1", "app-secret-2"]}]"#,
            );
            jail.set_env(
                "CALLHOOK_API__TOKENS",
                r#"[{token="api-token-0123456789", name="ops", scope="full"}]"#,
            );
            jail.set_env("DATABASE_URL", "postgres://u:db-password@h/d");
            let text = Config::load_with_sources(None).unwrap().render().unwrap();
            for secret in [
                "app-secret-1",
                "app-secret-2",
                "api-token-0123456789",
                "db-password",
            ] {
                assert!(!text.contains(secret), "{secret} in:\n{text}");
            }
            let body: toml::Value = toml::from_str(&text).expect("TOML after the comments");
            assert_eq!(body["apps"][0]["key"].as_str(), Some("app-key-shown"));
            assert_eq!(body["apps"][0]["secrets"].as_array().unwrap().len(), 2);
            assert_eq!(body["api"]["tokens"][0]["token"].as_str(), Some(REDACTED));
            assert_eq!(body["api"]["tokens"][0]["name"].as_str(), Some("ops"));
            assert_eq!(
                body["database"]["url"].as_str(),
                Some("postgres://u:***@h/d")
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_HTTP__BODY_LIMT_BYTES", "10");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }
}
