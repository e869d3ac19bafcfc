//! The simulator's own settings: the stand-in platform (`[simulator]`) and the demo (`[demo]`).
//!
//! Defaults live only in `simulator.toml` beside this crate's manifest, which is embedded here; see
//! that file for the meaning of every key. The service's configuration (`callhook::config`) knows
//! nothing of them: what the simulator shares with the service (apps, database, platform, log) it
//! reads from there.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
};

use callhook_platform::signature::DigestVariant;
use figment::{
    Figment,
    providers::{Format, Toml},
};
use serde::{Deserialize, Serialize, Serializer};

use crate::scenario::ScenarioOutcome;

/// The embedded `simulator.toml`: the base layer, and so the one place defaults are written.
pub const DEFAULT_SIM_CONFIG: &str = include_str!("../simulator.toml");

#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    #[error("simulator settings: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("simulator settings file {0} does not exist")]
    MissingFile(String),
    #[error("simulator settings: {0}")]
    Invalid(String),
}

/// Everything `callhook-sim` reads besides the service's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub simulator: SimulatorConfig,
    pub demo: DemoConfig,
}

/// The stand-in platform of `callhook-sim` and of the demo.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    pub listen: SocketAddr,
    pub time_scale: f64,
    pub seed: u64,
    #[serde(serialize_with = "serialize_weights")]
    pub outcome_weights: HashMap<ScenarioOutcome, u32>,
    pub callback_signature: CallbackSignature,
    pub status_url: String,
    pub fee_url: String,
    pub fee_retry_delays_ms: Vec<u64>,
    pub batch_window_ms: u64,
}

/// `callhook-sim demo`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// The demo's own database, on the configured server.
    pub database: String,
}

/// How the simulator signs the callbacks it pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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

impl SimConfig {
    /// The embedded defaults, then `file` (which must exist) when given.
    pub fn load(file: Option<&Path>) -> Result<Self, SimConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_SIM_CONFIG));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SimConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(figment)
    }

    /// The embedded defaults alone: what tests start from.
    pub fn defaults() -> Self {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_SIM_CONFIG)))
            .expect("the embedded simulator.toml is valid")
    }

    fn from_figment(figment: Figment) -> Result<Self, SimConfigError> {
        let config: Self = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Every rule the settings must meet; run by `load` and `defaults`.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let invalid = |message: &str| Err(SimConfigError::Invalid(message.to_owned()));
        let simulator = &self.simulator;
        if !(simulator.time_scale > 0.0 && simulator.time_scale.is_finite()) {
            return invalid("simulator.time_scale must be a positive number");
        }
        if simulator.outcome_weights.values().all(|w| *w == 0) {
            return invalid("simulator.outcome_weights must give some outcome a weight");
        }
        let name = &self.demo.database;
        // It is put into a URL's path and into `create database`: a plain identifier only.
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid("demo.database must be a database name of letters, digits and '_'");
        }
        Ok(())
    }

    /// What `callhook-sim config` prints: the settings in effect as TOML.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

/// Sorted, so that two runs print the same.
fn serialize_weights<S: Serializer>(
    weights: &HashMap<ScenarioOutcome, u32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let sorted: BTreeMap<&str, u32> = weights.iter().map(|(o, w)| (o.as_str(), *w)).collect();
    sorted.serialize(serializer)
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; it is the test harness's type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_and_validate() {
        let config = SimConfig::defaults();
        assert_eq!(config.demo.database, "callhook_demo");
        assert_eq!(config.simulator.listen.port(), 9090);
        assert_eq!(
            config.simulator.outcome_weights.len(),
            ScenarioOutcome::ALL.len(),
            "every outcome has a default weight"
        );
    }

    #[test]
    fn a_given_file_overrides_the_defaults_and_must_exist() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sim.toml",
                "[simulator]\nlisten = \"127.0.0.1:9191\"\n[demo]\ndatabase = \"mine\"\n",
            )?;
            let config = SimConfig::load(Some(Path::new("sim.toml"))).expect("loads");
            assert_eq!(config.simulator.listen.port(), 9191);
            assert_eq!(
                config.simulator.seed, 1,
                "what the file leaves out keeps its default"
            );
            assert_eq!(config.demo.database, "mine");
            let missing = SimConfig::load(Some(Path::new("absent.toml"))).unwrap_err();
            assert!(
                matches!(missing, SimConfigError::MissingFile(_)),
                "{missing}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_impossible_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[simulator]\ntime_scal = 1.0\n")?;
            let error = SimConfig::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(error.to_string().contains("time_scal"), "{error}");
            jail.create_file("zero.toml", "[simulator]\ntime_scale = 0.0\n")?;
            let error = SimConfig::load(Some(Path::new("zero.toml"))).unwrap_err();
            assert!(error.to_string().contains("time_scale"), "{error}");
            jail.create_file("name.toml", "[demo]\ndatabase = \"a; drop\"\n")?;
            let error = SimConfig::load(Some(Path::new("name.toml"))).unwrap_err();
            assert!(error.to_string().contains("demo.database"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_rendered_settings_read_back_the_same() {
        let config = SimConfig::defaults();
        let text = config.render().unwrap();
        let again: SimConfig = Figment::from(Toml::string(&text)).extract().unwrap();
        assert_eq!(again.render().unwrap(), text);
    }
}
