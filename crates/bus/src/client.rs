//! Turns the `[kafka]` config section into librdkafka client configuration.

use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use nowstream_runtime::KafkaConfig;

/// Base client configuration: bootstrap servers plus every pass-through property.
///
/// Pass-through properties come last so an operator can override any default the project picks
/// (for example `acks` or `session.timeout.ms`); the stage-specific constructors apply their own
/// mandatory settings *after* this and document which ones cannot be overridden.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        config.set(key, value.expose_secret());
    }
    config
}

/// Topic name with the configured prefix in front.
pub fn prefixed(kafka: &KafkaConfig, topic: &str) -> String {
    format!("{}{}", kafka.topic_prefix, topic)
}
