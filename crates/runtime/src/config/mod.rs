//! The product's one configuration: a TOML or YAML file plus `NOWSTREAM__…`
//! environment overrides, optionally completed by SEI's `satellite.yml`.
//!
//! Every binary reads the same file and uses the sections it needs, so one
//! ConfigMap serves the whole deployment. Each section is its own struct with a
//! `Default`, so adding one (`fetcher`, `normalizer`, `sink`) is a new field with
//! `#[serde(default)]`. A stage section checks its own rules in a `problems()` method
//! ([`FetcherConfig::problems`], [`NormalizerConfig::problems`], [`SinkConfig::problems`]),
//! which [`Config::validate`] runs for every process and the stage runs again before it starts.
//!
//! Environment overrides: `NOWSTREAM__SECTION__KEY` sets `section.key` (keys are
//! lower-cased), a number addresses a list entry (`NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD`),
//! and under `kafka.properties` underscores become dots
//! (`NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD` sets `sasl.password`). Unknown keys
//! are errors wherever they come from.
//!
//! Secrets: every secret key `X` has an `X_file` sibling naming a file that holds it, and a
//! process reads only its own stage's secrets ([`SecretScope`], module `secret`).

mod deserialize;
mod env;
mod error;
mod fetcher;
mod http;
mod integration;
mod kafka;
mod load;
mod normalizer;
mod satellite;
mod secret;
mod sei;
mod sink;
mod stage_section;
mod telemetry;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use env::ENV_PREFIX;
pub use error::{ConfigError, Problem, ValidationErrors};
pub use fetcher::{DeletionDetection, FetcherConfig};
pub use http::HttpConfig;
pub use integration::{
    AuthConfig, BasicAuth, FILTER_KEYS, IntegrationConfig, IntegrationMetadata, OAuthConfig,
    OAuthGrant,
};
pub use kafka::{
    DEFAULT_DLQ_RETENTION, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TOMBSTONE_RETENTION, KafkaConfig,
    RECORD_BATCH_FRAMING,
};
pub use load::{ConfigLoader, Format, SECRETS_DIR_VARIABLE};
pub use normalizer::NormalizerConfig;
pub use satellite::Satellite;
pub use secret::SecretScope;
pub use sei::SeiConfig;
pub use sink::SinkConfig;
pub use telemetry::{LogFormat, TelemetryConfig};

/// Everything a nowstream process can be configured with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How every stage reaches Kafka.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The SEI ingestion endpoint (used by the sink). May come from `satellite_file`.
    #[serde(default)]
    pub sei: Option<SeiConfig>,
    /// The ServiceNow instances to read, each under SEI's integration id. More may come
    /// from `satellite_file`; at least one is required in the end.
    #[serde(default)]
    pub integrations: Vec<IntegrationConfig>,
    /// SEI's `satellite.yml`, read as SEI generates it: its `satellite:` section supplies
    /// `sei` and its ServiceNow entries supply `integrations`. A relative path is resolved
    /// against the directory of the config file.
    #[serde(default)]
    pub satellite_file: Option<PathBuf>,
    /// Log format and level.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The probe and metrics listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// The fetcher stage.
    #[serde(default)]
    pub fetcher: FetcherConfig,
    /// The normalizer stage.
    #[serde(default)]
    pub normalizer: NormalizerConfig,
    /// The sink stage.
    #[serde(default)]
    pub sink: SinkConfig,
}

impl Config {
    /// Reads `path` (TOML or YAML by extension), applies the process's `NOWSTREAM__…`
    /// variables and the satellite file, and validates.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        ConfigLoader::new().file(path.as_ref()).process_env().load()
    }

    /// Like [`load`](Self::load) without a file: for deployments that configure
    /// everything through the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        ConfigLoader::new().process_env().load()
    }

    /// Reads configuration text, ignoring the process environment so tests stay
    /// independent of the machine they run on.
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        ConfigLoader::new().text(text, format).load()
    }

    /// Adds what SEI's satellite file provides.
    ///
    /// Explicit configuration wins: a `sei` section already present is kept, and a
    /// satellite integration whose id is already configured is dropped. The config file
    /// is written for nowstream and may refine an integration SEI also knows (OAuth
    /// instead of SEI's password, `exclude_fields`), so it must not be overwritten by a
    /// file generated for another program. Whole entries win, not single fields, so an
    /// entry never mixes credentials from two places.
    pub fn merge_satellite(&mut self, satellite: Satellite) {
        if self.sei.is_some() {
            tracing::info!("using the configured sei section, not the satellite file's");
        } else {
            self.sei = Some(satellite.sei);
        }
        for integration in satellite.integrations {
            if self.integrations.iter().any(|own| own.id == integration.id) {
                tracing::info!(
                    integration_id = %integration.id,
                    "integration configured explicitly; ignoring its satellite entry"
                );
                continue;
            }
            self.integrations.push(integration);
        }
    }
}
