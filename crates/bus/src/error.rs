use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Everything that can go wrong talking to Kafka, with the facts needed to act on it.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// librdkafka refused the client configuration (an unknown or malformed property).
    #[error("cannot create Kafka {role} for bootstrap servers {servers}: {source}")]
    Client {
        role: &'static str,
        servers: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// A record could not be queued or was not acknowledged by the broker.
    #[error("delivery to topic {topic} of key {key} failed: {source}")]
    Delivery {
        topic: String,
        key: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// The delivery report never arrived because the producer was dropped.
    #[error("producer closed before topic {topic} acknowledged key {key}")]
    ProducerClosed { topic: String, key: String },
    /// Creating or describing a topic failed.
    #[error("topic {topic}: {reason}")]
    Admin { topic: String, reason: String },
    /// Subscribing, polling or committing failed.
    #[error("consumer of group {group}: {action} failed: {source}")]
    Consumer {
        group: String,
        action: &'static str,
        #[source]
        source: Box<KafkaError>,
    },
}

impl BusError {
    /// Whether a record was refused for its size (over the producer's `message.max.bytes`, or
    /// the topic's `max.message.bytes`): sending it again can never succeed.
    pub fn is_message_too_large(&self) -> bool {
        matches!(
            self,
            Self::Delivery { source, .. }
                if matches!(
                    source.as_ref(),
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
                )
        )
    }
}
