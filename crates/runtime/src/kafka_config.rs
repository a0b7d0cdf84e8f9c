//! The `[kafka]` section: how every stage reaches the broker.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

/// Kafka connection settings shared by every stage.
///
/// `properties` passes any librdkafka property through unchanged, so SASL, SSL and
/// tuning settings work without the project knowing about each of them. Values are
/// kept secret because `sasl.password` and `ssl.key.password` live there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list handed to librdkafka as `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Prepended to every topic name, e.g. `prod.` gives `prod.servicenow.raw.incident`.
    #[serde(default)]
    pub topic_prefix: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, SecretString>,
}
