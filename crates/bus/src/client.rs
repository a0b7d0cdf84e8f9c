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

/// The consumer properties that make a stage's group consumer a static member (KIP-345):
/// `group.instance.id` when the stage configures one, nothing otherwise (dynamic membership).
///
/// Only a stage's own group consumer gets these, never a reader in a group of its own: one
/// instance id may belong to one live member per group, and a second consumer of the same
/// process in the same group would fence the first.
pub fn static_membership(group_instance_id: Option<&str>) -> Vec<(&'static str, &str)> {
    group_instance_id
        .filter(|id| !id.trim().is_empty())
        .map(|id| vec![("group.instance.id", id)])
        .unwrap_or_default()
}

/// Topic name with the configured prefix in front.
pub fn prefixed(kafka: &KafkaConfig, topic: &str) -> String {
    format!("{}{}", kafka.topic_prefix, topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_instance_id_makes_a_static_member() {
        assert_eq!(
            static_membership(Some("normalizer-0")),
            vec![("group.instance.id", "normalizer-0")]
        );
        assert!(static_membership(None).is_empty());
        assert!(static_membership(Some("  ")).is_empty());
    }
}
