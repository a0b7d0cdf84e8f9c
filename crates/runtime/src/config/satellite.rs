//! SEI's `satellite.yml`, read as SEI generates it.
//!
//! Operators who already run SEI's satellite have this file with the SEI endpoint and
//! the ServiceNow credentials; accepting it as it is spares them from copying secrets
//! into a second file. It is SEI's file, not ours, so unknown keys are ignored
//! (unlike in nowstream's own config) and integrations of other applications are
//! skipped.

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use super::deserialize::deserialize;
use super::error::ConfigError;
use super::integration::{AuthConfig, BasicAuth, IntegrationConfig, IntegrationMetadata};
use super::load::syntax_message;
use super::sei::SeiConfig;

/// The application name SEI gives ServiceNow integrations.
const SERVICENOW: &str = "servicenow";

/// What a satellite file contributes: the SEI target and the ServiceNow integrations.
#[derive(Debug, Clone)]
pub struct Satellite {
    /// From the file's `satellite:` section.
    pub sei: SeiConfig,
    /// Every `application: servicenow` entry, as basic authentication with `username`
    /// and `api_key` (SEI stores the ServiceNow password under `api_key`), with its
    /// `metadata` (`incident_query`, `change_request_query`, `timezone`).
    pub integrations: Vec<IntegrationConfig>,
}

#[derive(Deserialize)]
struct SatelliteFile {
    satellite: SatelliteSection,
    #[serde(default)]
    integrations: Vec<SatelliteIntegration>,
}

#[derive(Deserialize)]
struct SatelliteSection {
    tenant: String,
    api_key: SecretString,
    url: String,
}

#[derive(Deserialize)]
struct SatelliteIntegration {
    id: String,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    api_key: Option<SecretString>,
    #[serde(default)]
    metadata: SatelliteMetadata,
}

/// An integration's `metadata` block. Other keys SEI may keep there are ignored, as
/// everywhere in this file.
#[derive(Deserialize, Default)]
struct SatelliteMetadata {
    #[serde(default)]
    incident_query: Option<String>,
    #[serde(default)]
    change_request_query: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

impl Satellite {
    /// Reads and interprets a satellite file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            what: "satellite file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_with_origin(&text, format!("satellite file {}", path.display()))
    }

    /// Interprets satellite YAML given as text.
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        Self::parse_with_origin(yaml, "satellite text".to_owned())
    }

    fn parse_with_origin(yaml: &str, origin: String) -> Result<Self, ConfigError> {
        let tree = config::Config::builder()
            .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
            .build()
            .map_err(|error| ConfigError::Syntax {
                origin: origin.clone(),
                message: syntax_message(&error),
            })?;
        let file: SatelliteFile = deserialize(tree.cache, |_| origin.clone())?;

        let sei = SeiConfig {
            url: file.satellite.url,
            tenant: file.satellite.tenant,
            api_key: file.satellite.api_key,
        };
        let mut integrations = Vec::new();
        for (index, entry) in file.integrations.into_iter().enumerate() {
            let application = entry.application.as_deref().unwrap_or_default();
            if !application.eq_ignore_ascii_case(SERVICENOW) {
                tracing::info!(
                    integration_id = %entry.id,
                    application,
                    "skipping satellite integration: nowstream reads only ServiceNow"
                );
                continue;
            }
            let missing = |field: &str| ConfigError::Invalid {
                origin: origin.clone(),
                key: format!("integrations[{index}].{field}"),
                message: "missing: a ServiceNow integration needs url, username and api_key"
                    .to_owned(),
            };
            let url = entry.url.ok_or_else(|| missing("url"))?;
            let username = entry.username.ok_or_else(|| missing("username"))?;
            let password = entry.api_key.ok_or_else(|| missing("api_key"))?;
            let metadata = IntegrationMetadata {
                incident_query: entry.metadata.incident_query,
                change_request_query: entry.metadata.change_request_query,
                timezone: entry.metadata.timezone,
                origin: Some(format!("{origin}: integrations[{index}].metadata")),
            };
            // Checked here, not only after merging, so the error names the satellite file
            // and the key as written there.
            if let Some((key, message)) = metadata.problems().into_iter().next() {
                return Err(ConfigError::Invalid {
                    origin: origin.clone(),
                    key: format!("integrations[{index}].metadata.{key}"),
                    message,
                });
            }
            integrations.push(IntegrationConfig {
                id: entry.id,
                url,
                auth: AuthConfig::Basic(BasicAuth { username, password }),
                exclude_fields: Vec::new(),
                allow_http: false,
                exclude_at_source: false,
                metadata,
            });
        }
        Ok(Self { sei, integrations })
    }
}
