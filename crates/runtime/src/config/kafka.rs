//! The `[kafka]` section: how every stage reaches the broker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
#[derive(Debug, Clone, Deserialize)]
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
    /// `max.message.bytes` of every topic nowstream creates: the largest record batch the
    /// broker stores there. The producers' `message.max.bytes` follows it (less
    /// [`RECORD_BATCH_FRAMING`]), so a record a producer accepts always fits its topic.
    pub max_message_bytes: usize,
    /// `delete.retention.ms` of the compacted topics nowstream creates: how long a tombstone
    /// (a deletion) stays readable after compaction. A consumer away longer than this (a
    /// sink parked over a long weekend, say) would miss deletions.
    pub tombstone_retention: Duration,
    /// `retention.ms` of the dead-letter topics nowstream creates: how long a parked record
    /// can be inspected and replayed.
    pub dlq_retention: Duration,
}

/// Default of `kafka.max_message_bytes`: 8 MiB. A ServiceNow record with long journals (work
/// notes, comments), fetched with `sysparm_display_value=all` so each journal comes twice,
/// outgrows Kafka's 1 MB default; 8 MiB is also the most Confluent Cloud (Basic, Standard)
/// and Amazon MSK Serverless allow per topic, so the default works there unchanged.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Bytes a record batch of one record adds around the record's key, value and headers (batch
/// header, record framing, a compression frame); the producers' limit is this much below
/// `kafka.max_message_bytes`.
pub const RECORD_BATCH_FRAMING: usize = 1024;
/// Default of `kafka.tombstone_retention`: 7 days, the same as Kafka's default
/// `offsets.retention.minutes`. A consumer group away longer loses its committed position as
/// well, so a longer tombstone retention alone would not save it.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default of `kafka.dlq_retention`: 14 days, time to notice, diagnose and replay.
pub const DEFAULT_DLQ_RETENTION: Duration = Duration::from_secs(14 * 24 * 60 * 60);

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            topic_prefix: String::new(),
            properties: BTreeMap::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            dlq_retention: DEFAULT_DLQ_RETENTION,
        }
    }
}

impl KafkaConfig {
    /// The producers' `message.max.bytes` unless `kafka.properties` sets it:
    /// `max_message_bytes` less the framing of a one-record batch.
    pub fn producer_max_message_bytes(&self) -> usize {
        self.max_message_bytes.saturating_sub(RECORD_BATCH_FRAMING)
    }
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
    /// `max.message.bytes` of the topics nowstream creates; the producers' limit follows it.
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    /// `delete.retention.ms` of the compacted topics nowstream creates.
    #[serde(default = "default_tombstone_retention", with = "humantime_serde")]
    tombstone_retention: Duration,
    /// `retention.ms` of the dead-letter topics nowstream creates.
    #[serde(default = "default_dlq_retention", with = "humantime_serde")]
    dlq_retention: Duration,
}

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn default_tombstone_retention() -> Duration {
    DEFAULT_TOMBSTONE_RETENTION
}

fn default_dlq_retention() -> Duration {
    DEFAULT_DLQ_RETENTION
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
            max_message_bytes: keys.max_message_bytes,
            tombstone_retention: keys.tombstone_retention,
            dlq_retention: keys.dlq_retention,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Format};

    use super::*;

    const BASE: &str = "[kafka]\nbootstrap_servers = \"b:9092\"\n";

    fn kafka(extra: &str) -> KafkaConfig {
        let text = format!("{BASE}{extra}");
        let tree = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .expect("TOML");
        let config: Config = tree.try_deserialize().expect("config");
        config.kafka
    }

    #[test]
    fn topic_settings_default_to_8_mib_7_days_and_14_days() {
        let kafka = kafka("");
        assert_eq!(kafka.max_message_bytes, 8 * 1024 * 1024);
        assert_eq!(kafka.tombstone_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(kafka.dlq_retention, Duration::from_secs(14 * 86_400));
        assert_eq!(kafka.producer_max_message_bytes(), 8 * 1024 * 1024 - 1024);
        let default = KafkaConfig::default();
        assert_eq!(default.max_message_bytes, kafka.max_message_bytes);
        assert_eq!(default.tombstone_retention, kafka.tombstone_retention);
        assert_eq!(default.dlq_retention, kafka.dlq_retention);
    }

    #[test]
    fn topic_settings_are_read_with_units() {
        let kafka = kafka(
            "max_message_bytes = 2097152\ntombstone_retention = \"10d\"\ndlq_retention = \"30d\"\n",
        );
        assert_eq!(kafka.max_message_bytes, 2 * 1024 * 1024);
        assert_eq!(kafka.tombstone_retention, Duration::from_secs(10 * 86_400));
        assert_eq!(kafka.dlq_retention, Duration::from_secs(30 * 86_400));
    }

    fn problem_keys(extra: &str) -> Vec<String> {
        let text = format!(
            "{BASE}{extra}\n[[integrations]]\nid = \"i\"\nurl = \"https://acme.service-now.com\"\n\
             [integrations.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"p\"\n"
        );
        match Config::parse(&text, Format::Toml) {
            Ok(_) => Vec::new(),
            Err(crate::ConfigError::Validation(errors)) => errors
                .problems()
                .iter()
                .map(|problem| problem.path.clone())
                .collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_producer_limit_above_the_topics_is_refused() {
        assert!(problem_keys("[kafka.properties]\n\"message.max.bytes\" = \"1000000\"").is_empty());
        assert_eq!(
            problem_keys("[kafka.properties]\n\"message.max.bytes\" = \"8388608\""),
            ["kafka.properties.message.max.bytes"]
        );
        assert_eq!(
            problem_keys("max_message_bytes = 1000"),
            ["kafka.max_message_bytes"]
        );
        assert_eq!(
            problem_keys("tombstone_retention = \"0s\""),
            ["kafka.tombstone_retention"]
        );
    }
}
