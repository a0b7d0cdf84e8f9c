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
/// `kafka.properties` sets `queued.max.messages.kbytes`. librdkafka counts them decompressed.
/// 2 MiB is several thousand records, tens of milliseconds of the normalizer's work at its
/// fastest and most of a second of the sink's; 8 MiB added 10 MB to each stage and no
/// measurable rate (docs/performance.md, "Consumer prefetch").
pub(crate) const DEFAULT_QUEUED_MAX_KBYTES: usize = 2 * 1024;

/// One fetch response at most, in bytes, unless `kafka.properties` sets `fetch.max.bytes`:
/// librdkafka's floor for it (its consumer `message.max.bytes`, 1,000,000) rounded up to 1 MiB.
/// Responses are lz4-compressed and decompressed whole, about five times larger.
pub(crate) const DEFAULT_FETCH_MAX_BYTES: usize = 1024 * 1024;

/// How long a partition waits before it fetches again once the prefetch bound is reached, in
/// milliseconds, unless `kafka.properties` sets `fetch.queue.backoff.ms`. librdkafka's default
/// (1,000) starves a stage whose prefetch bound one response fills: the normalizer ran at a
/// seventh of its rate. Shorter costs CPU while a stage cannot keep up (1 ms: 3 % of a core for
/// a sink waiting for SEI).
pub(crate) const DEFAULT_FETCH_QUEUE_BACKOFF_MS: u32 = 5;

/// The largest record (key, value and headers, plus a little framing) a producer built from
/// `kafka` accepts: its `message.max.bytes`, from `kafka.properties` when set there, else
/// `kafka.max_message_bytes` less the batch framing. A larger one is refused at enqueue time,
/// and would be refused again however often it is retried.
pub fn max_message_bytes(kafka: &KafkaConfig) -> usize {
    number(&client_config(kafka), "message.max.bytes")
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

/// Client configuration for a consumer of `kafka`: [`client_config`] with the bounds of
/// [`fit_consumer`]. Every consumer that reads records gets them, the stages' group consumers as
/// much as the fetcher's readers of its checkpoints and of the raw topics (reconciliation).
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    fit_consumer(&mut config, kafka);
    config
}

/// Bounds what a consumer holds, keeps it busy, and lets it read the largest batch a topic holds.
///
/// A consumer holds the records librdkafka prefetched (`queued.max.messages.kbytes`, counted
/// decompressed) and, on top of them, the response being decoded: librdkafka checks the bound
/// before it fetches and decompresses a response whole. The stages' topics are lz4-compressed
/// and their JSON-heavy records shrink four- to fivefold, so an 8 MiB response held about 40 MB
/// once decompressed (docs/performance.md, "Stage memory under a backlog"). Hence:
///
/// - `queued.max.messages.kbytes` defaults to [`DEFAULT_QUEUED_MAX_KBYTES`] (librdkafka: 64 MiB).
/// - `fetch.max.bytes` to [`DEFAULT_FETCH_MAX_BYTES`] (librdkafka: the prefetch bound).
/// - `fetch.queue.backoff.ms` to [`DEFAULT_FETCH_QUEUE_BACKOFF_MS`]: a response that
///   decompresses past the bound would otherwise stop the partition's fetches for a second
///   each time, which cut the normalizer's rate 2.8× when only `fetch.max.bytes` was lowered.
/// - A batch larger than `fetch.max.bytes` is still returned when it comes first (KIP-74), so
///   the largest record a topic takes (`kafka.max_message_bytes`) stays readable as long as a
///   response may be that large: `receive.message.max.bytes` (librdkafka's default 100 MB) is
///   raised when `kafka.max_message_bytes` needs more.
///
/// `kafka.properties` overrides each of them.
pub(crate) fn fit_consumer(config: &mut ClientConfig, kafka: &KafkaConfig) {
    set_default(
        config,
        "queued.max.messages.kbytes",
        DEFAULT_QUEUED_MAX_KBYTES,
    );
    // librdkafka refuses a `fetch.max.bytes` below the client's `message.max.bytes`, which
    // `kafka.properties` may raise for the producers.
    let message_max_bytes = number(config, "message.max.bytes").unwrap_or(0);
    set_default(
        config,
        "fetch.max.bytes",
        DEFAULT_FETCH_MAX_BYTES.max(message_max_bytes),
    );
    set_default(
        config,
        "fetch.queue.backoff.ms",
        DEFAULT_FETCH_QUEUE_BACKOFF_MS,
    );
    if config.get("receive.message.max.bytes").is_none() {
        let fetch_max_bytes = number(config, "fetch.max.bytes").unwrap_or(0);
        let needed = kafka
            .max_message_bytes
            .max(fetch_max_bytes)
            .saturating_add(RESPONSE_FRAMING);
        if needed > LIBRDKAFKA_RECEIVE_MAX_BYTES {
            config.set("receive.message.max.bytes", needed.to_string());
        }
    }
    if let Some(problem) = stall(config) {
        tracing::warn!(%problem, "kafka.properties: this consumer will stall between fetches");
    }
}

/// How many times larger a response of the stages' topics is once decompressed: lz4 over
/// JSON-heavy records, measured four- to fivefold (docs/performance.md, "Consumer prefetch").
const DECOMPRESSION: usize = 4;

/// A pause this long or longer after every fetch is a stall, not a back-off: the normalizer
/// moved a seventh of its records with librdkafka's 1,000 ms.
const STALLING_BACKOFF_MS: usize = 100;

/// Why `config` would stall its consumer, if it would: one response, decompressed, overshoots
/// the prefetch bound, and every overshoot stops the partition's fetches for
/// `fetch.queue.backoff.ms`. The defaults avoid it with a short pause; `kafka.properties` can
/// bring it back (librdkafka's own defaults for these settings do).
fn stall(config: &ClientConfig) -> Option<String> {
    let bound = number(config, "queued.max.messages.kbytes")?.saturating_mul(1024);
    let response = number(config, "fetch.max.bytes")?;
    let backoff = number(config, "fetch.queue.backoff.ms")?;
    (response.saturating_mul(DECOMPRESSION) > bound && backoff >= STALLING_BACKOFF_MS).then(|| {
        format!(
            "fetch.max.bytes={response} decompresses to about {} bytes, over \
             queued.max.messages.kbytes={} ({bound} bytes), and each time the consumer pauses \
             fetch.queue.backoff.ms={backoff}: it will read a fraction of what it could; lower \
             fetch.max.bytes or fetch.queue.backoff.ms in kafka.properties \
             (docs/architecture.md, consumer defaults)",
            response.saturating_mul(DECOMPRESSION),
            bound / 1024,
        )
    })
}

/// The value of `key` as a number, if set and readable as one.
fn number(config: &ClientConfig, key: &str) -> Option<usize> {
    config.get(key).and_then(|value| value.trim().parse().ok())
}

/// Sets `key` to `value` unless `kafka.properties` gave it.
fn set_default(config: &mut ClientConfig, key: &str, value: impl ToString) {
    if config.get(key).is_none() {
        config.set(key, value.to_string());
    }
}

/// librdkafka's default `receive.message.max.bytes`.
const LIBRDKAFKA_RECEIVE_MAX_BYTES: usize = 100_000_000;

/// Room for a fetch response's protocol framing around the largest batch.
const RESPONSE_FRAMING: usize = 64 * 1024;

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
    fn a_consumer_prefetches_2_mib_fetches_1_mib_at_once_and_may_receive_a_whole_maximal_batch() {
        let mut kafka = KafkaConfig::default();
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(config.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("5"));
        // librdkafka's default 100 MB already takes an 8 MiB batch.
        assert_eq!(config.get("receive.message.max.bytes"), None);

        for (key, value) in [
            ("queued.max.messages.kbytes", "65536"),
            ("fetch.max.bytes", "52428800"),
            ("fetch.queue.backoff.ms", "1000"),
        ] {
            kafka
                .properties
                .insert(key.into(), SecretString::from(value));
        }
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(config.get("fetch.max.bytes"), Some("52428800"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("1000"));
        assert!(
            stall(&config).is_some(),
            "librdkafka's own defaults: a 50 MB response decompresses past 64 MiB"
        );
        kafka.properties.clear();

        kafka
            .properties
            .insert("message.max.bytes".into(), SecretString::from("4000000"));
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("fetch.max.bytes"), Some("4000000"));
        kafka.properties.clear();

        kafka.max_message_bytes = 128 * 1024 * 1024;
        let mut config = client_config(&kafka);
        fit_consumer(&mut config, &kafka);
        assert_eq!(config.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(
            config.get("receive.message.max.bytes"),
            Some((128 * 1024 * 1024 + 64 * 1024).to_string().as_str())
        );
    }

    #[test]
    fn the_defaults_do_not_stall_but_librdkafkas_pause_over_a_small_bound_does() {
        let mut kafka = KafkaConfig::default();
        assert_eq!(stall(&consumer_config(&kafka)), None);

        kafka
            .properties
            .insert("fetch.queue.backoff.ms".into(), SecretString::from("1000"));
        let problem = stall(&consumer_config(&kafka)).expect("a 1 s pause over 2 MiB stalls");
        for named in [
            "fetch.max.bytes=1048576",
            "queued.max.messages.kbytes=2048",
            "fetch.queue.backoff.ms=1000",
        ] {
            assert!(problem.contains(named), "{problem}");
        }

        kafka.properties.insert(
            "queued.max.messages.kbytes".into(),
            SecretString::from("8192"),
        );
        assert_eq!(
            stall(&consumer_config(&kafka)),
            None,
            "a response that fits the bound decompressed never waits for the pause"
        );
    }
}
