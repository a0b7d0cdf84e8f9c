//! The `[kafka]` section: how every stage reaches the broker.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::secret::GivenTwice;

/// Kafka connection settings shared by every stage.
///
/// `properties` passes any librdkafka property through unchanged, so SASL, SSL and
/// tuning settings work without the project knowing about each of them. Values are
/// kept secret because `sasl.password` and `ssl.key.password` live there.
///
/// `Default` gives an empty `bootstrap_servers` so that a missing `[kafka]` section is
/// reported by [`Config::validate`](crate::Config::validate) together with every
/// other problem, instead of stopping deserialisation at the first one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "KafkaKeys")]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list handed to librdkafka as `bootstrap.servers`.
    #[serde(default)]
    pub bootstrap_servers: String,
    /// Prepended to every topic name, e.g. `prod.` gives `prod.servicenow.raw.incident`.
    #[serde(default)]
    pub topic_prefix: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, …).
    ///
    /// From the environment, `NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD` sets
    /// `sasl.password`: underscores in the property part become dots, because
    /// librdkafka's settable property names never contain underscores.
    ///
    /// Properties named in `property_files` are added here with their files' content.
    pub properties: BTreeMap<String, SecretString>,
}

/// The keys of `[kafka]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaKeys {
    /// Comma-separated `host:port` list.
    #[serde(default)]
    bootstrap_servers: String,
    /// Prepended to every topic name.
    #[serde(default)]
    topic_prefix: String,
    /// Extra librdkafka properties.
    #[serde(default)]
    properties: BTreeMap<String, SecretString>,
    /// librdkafka properties whose value is the content of a file, e.g.
    /// `"sasl.password" = "/run/secrets/nowstream/kafka/sasl.password"`: the way to give
    /// `sasl.password` or `ssl.key.password` without writing them into the config. Every
    /// stage reads them (each talks to Kafka). From the environment:
    /// `NOWSTREAM__KAFKA__PROPERTY_FILES__SASL_PASSWORD`.
    #[serde(default)]
    property_files: BTreeMap<String, PathBuf>,
}

impl TryFrom<KafkaKeys> for KafkaConfig {
    type Error = GivenTwice;

    fn try_from(keys: KafkaKeys) -> Result<Self, Self::Error> {
        if let Some(name) = keys
            .property_files
            .keys()
            .find(|name| keys.properties.contains_key(*name))
        {
            return Err(GivenTwice::new(
                format!("properties.{name}"),
                format!("property_files.{name}"),
            ));
        }
        Ok(Self {
            bootstrap_servers: keys.bootstrap_servers,
            topic_prefix: keys.topic_prefix,
            properties: keys.properties,
        })
    }
}
