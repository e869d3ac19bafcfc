//! Configuration: one struct, loaded once at start.
//!
//! Defaults live only in the top-level `config.toml`, which is embedded here; see that file for
//! the meaning of every key.

use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::SecretString;
use serde::Deserialize;

use crate::{platform::signature::DigestVariant, simulate::scenario::Outcome};

/// The embedded `config.toml`: the base layer, and so the one place defaults are written.
pub const DEFAULT_CONFIG: &str = include_str!("../config.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_base_url: String,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub signature: SignatureConfig,
    pub apps: Vec<AppCredentials>,
    pub log: LogConfig,
    pub platform: PlatformConfig,
    pub simulator: SimulatorConfig,
    pub api: ApiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub retry_after_secs: u64,
    pub trust_forwarded_headers: bool,
}

/// Group commit of callbacks (see `ingest::committer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub writers: usize,
    pub max_batch: usize,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    Off,
    Observe,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedUrl {
    Request,
    Fee,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreatedTimeZone {
    Utc,
    Beijing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub mode: SignatureMode,
    pub digest_variants: Vec<crate::platform::signature::DigestVariant>,
    pub signed_urls: Vec<SignedUrl>,
    pub created_time_zones: Vec<CreatedTimeZone>,
    pub clock_skew_secs: u64,
}

/// An application's key and its secrets. `SecretString` keeps the secrets out of `Debug` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCredentials {
    pub key: String,
    pub secrets: Vec<SecretString>,
    /// How the outbound client signs this app's requests; `aksk` unless set (see config.toml).
    #[serde(default)]
    pub auth: crate::platform::outbound::AuthScheme,
}

/// The outbound client (`callhook call`, `callhook::client`); see `[platform]` in config.toml.
#[derive(Debug, Clone, Deserialize)]
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

/// The stand-in platform of `callhook simulate` and `callhook demo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    pub listen: SocketAddr,
    pub time_scale: f64,
    pub seed: u64,
    pub outcome_weights: HashMap<Outcome, u32>,
    pub callback_signature: CallbackSignature,
    pub status_url: String,
    pub fee_url: String,
    pub fee_retry_delays_ms: Vec<u64>,
    pub batch_window_ms: u64,
}

/// How the simulator signs the callbacks it pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackSignature {
    Newline,
    Concat,
    None,
}

impl CallbackSignature {
    pub fn variant(self) -> Option<DigestVariant> {
        match self {
            Self::Newline => Some(DigestVariant::Newline),
            Self::Concat => Some(DigestVariant::Concat),
            Self::None => None,
        }
    }
}

/// The read API under `/v1` (`[api]` in config.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
    pub default_limit: u32,
    pub max_limit: u32,
    pub cdr_gap_after_secs: u64,
    pub export_statement_timeout_ms: u64,
    pub max_concurrent_exports: usize,
}

/// A bearer token of the read API. `SecretString` keeps the token out of `Debug` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub token: SecretString,
    /// Who holds it; recorded in the request's log span (never the token).
    pub name: String,
    pub scope: TokenScope,
}

/// What a token may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Phone numbers masked (`+86*********11`) everywhere: JSON, CSV, raw bodies.
    Masked,
    /// Everything as stored; also allowed to reprocess refused callbacks.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl Config {
    /// Embedded defaults, then the optional file, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(Env::prefixed("CALLHOOK_").split("__").ignore(&["config"]))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            );
        Self::from_figment(figment)
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
        if ingest.writers as u64 >= u64::from(self.database.max_connections) {
            return invalid(
                "ingest.writers must be below database.max_connections (other work needs connections too)",
            );
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
        let simulator = &self.simulator;
        if !(simulator.time_scale > 0.0 && simulator.time_scale.is_finite()) {
            return invalid("simulator.time_scale must be a positive number");
        }
        if simulator.outcome_weights.values().all(|w| *w == 0) {
            return invalid("simulator.outcome_weights must give some outcome a weight");
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
        self.api.validate()?;
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

impl HttpConfig {
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
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLHOOK_HTTP__BODY_LIMT_BYTES", "10");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }
}
