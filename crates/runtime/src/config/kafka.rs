//! The `[kafka]` section: how every stage reaches the broker.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

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
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub properties: BTreeMap<String, SecretString>,
}
