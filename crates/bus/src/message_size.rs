//! How large a record may be, kept in step across producer, topic and consumer.
//!
//! One setting, `kafka.max_message_bytes`, decides all three: the topics nowstream creates get
//! it as `max.message.bytes`; the producers' `message.max.bytes` is [`RECORD_BATCH_FRAMING`]
//! below it, so every record a producer accepts also fits its topic once wrapped in a batch;
//! and consumers may fetch at least that much at once, so what was written can be read. A
//! record over the producers' limit is refused at enqueue time
//! ([`BusError::is_message_too_large`](crate::BusError::is_message_too_large)), and the stages
//! dead-letter it instead of retrying it for ever.

use rdkafka::ClientConfig;

use nowstream_runtime::KafkaConfig;
use nowstream_runtime::config::{DEFAULT_MAX_MESSAGE_BYTES, RECORD_BATCH_FRAMING};

use crate::client::client_config;

/// The producers' `message.max.bytes` with the default `kafka.max_message_bytes` (8 MiB less
/// 1 KiB of batch framing).
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = DEFAULT_MAX_MESSAGE_BYTES - RECORD_BATCH_FRAMING;

/// What librdkafka adds to a record's key, value and headers before comparing it with
/// `message.max.bytes` (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`: the record's own varint framing at
/// its widest). A record of key + value + headers up to `message.max.bytes` less this is
/// accepted; one byte more is refused at enqueue time.
pub const RECORD_OVERHEAD: usize = 36;

/// Prefetched records a consumer holds at most, in KiB (librdkafka's default is 65,536), unless
/// `kafka.properties` sets `queued.max.messages.kbytes`.
pub(crate) const DEFAULT_QUEUED_MAX_KBYTES: usize = 8 * 1024;

/// The largest record (key, value and headers, plus a little framing) a producer built from
/// `kafka` accepts: its `message.max.bytes`, from `kafka.properties` when set there, else
/// `kafka.max_message_bytes` less the batch framing. A larger one is refused at enqueue time,
/// and would be refused again however often it is retried.
pub fn max_message_bytes(kafka: &KafkaConfig) -> usize {
    client_config(kafka)
        .get("message.max.bytes")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| kafka.producer_max_message_bytes())
}

/// Sets the producer's `message.max.bytes` unless `kafka.properties` gives it.
pub(crate) fn limit_producer(config: &mut ClientConfig, kafka: &KafkaConfig) {
    if config.get("message.max.bytes").is_none() {
        config.set(
            "message.max.bytes",
            kafka.producer_max_message_bytes().to_string(),
        );
    }
}

/// Lets a consumer fetch the largest batch a topic holds in one response: `fetch.max.bytes`
/// at least `kafka.max_message_bytes` (librdkafka raises `receive.message.max.bytes` to
/// match), unless `kafka.properties` sets it. `max.partition.fetch.bytes` may stay smaller:
/// librdkafka grows a partition's fetch until a larger record fits.
pub(crate) fn fit_consumer(config: &mut ClientConfig, kafka: &KafkaConfig) {
    // librdkafka prefetches up to 64 MiB per consumer by default: with a backlog that alone
    // is most of a stage's memory (docs/performance.md, "Stage memory under a backlog").
    // 8 MiB is still many round trips of records ahead of the stage.
    if config.get("queued.max.messages.kbytes").is_none() {
        config.set(
            "queued.max.messages.kbytes",
            DEFAULT_QUEUED_MAX_KBYTES.to_string(),
        );
    }
    // One fetch response no larger than the prefetch bound (librdkafka's own rule when
    // `fetch.max.bytes` is not set), but never too small for the largest record batch.
    if config.get("fetch.max.bytes").is_none() {
        let queued = config
            .get("queued.max.messages.kbytes")
            .and_then(|kbytes| kbytes.parse::<usize>().ok())
            .map_or(DEFAULT_QUEUED_MAX_KBYTES, |kbytes| kbytes.max(1));
        config.set(
            "fetch.max.bytes",
            queued
                .saturating_mul(1024)
                .max(kafka.max_message_bytes)
                .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn the_producer_limit_follows_the_topic_limit_unless_configured() {
        let mut kafka = KafkaConfig::default();
        assert_eq!(max_message_bytes(&kafka), DEFAULT_MESSAGE_MAX_BYTES);
        kafka.max_message_bytes = 2 * 1024 * 1024;
        assert_eq!(
            max_message_bytes(&kafka),
            2 * 1024 * 1024 - RECORD_BATCH_FRAMING
        );
        kafka
            .properties
            .insert("message.max.bytes".into(), SecretString::from("400000"));
        assert_eq!(max_message_bytes(&kafka), 400_000);
    }

    #[test]
    fn a_consumer_prefetches_8_mib_unless_configured_and_may_fetch_a_whole_maximal_batch() {
        let mut kafka = KafkaConfig::default();
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("8192"));
        assert_eq!(config.get("fetch.max.bytes"), Some("8388608"));

        kafka.properties.insert(
            "queued.max.messages.kbytes".into(),
            SecretString::from("65536"),
        );
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(config.get("fetch.max.bytes"), Some("67108864"));
        kafka.properties.clear();

        kafka.max_message_bytes = 64 * 1024 * 1024;
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("fetch.max.bytes"), Some("67108864"));
    }
}
