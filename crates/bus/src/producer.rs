//! The idempotent producer every stage writes through.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use nowstream_runtime::KafkaConfig;

use crate::BusError;
use crate::client::client_config;
use crate::message_size::limit_producer;

pub use crate::message_size::{DEFAULT_MESSAGE_MAX_BYTES, max_message_bytes};

/// One record to write. Borrowed so producing a page of records copies nothing twice.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    /// `None` writes a tombstone (deletion on a compacted topic).
    pub payload: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> OutRecord<'a> {
    pub fn new(topic: &'a str, key: &'a [u8], payload: Option<&'a [u8]>) -> Self {
        Self {
            topic,
            key,
            payload,
            headers: &[],
        }
    }

    pub fn with_headers(mut self, headers: &'a [(&'a str, &'a [u8])]) -> Self {
        self.headers = headers;
        self
    }
}

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A record that librdkafka has queued; await it to learn whether the broker acknowledged it.
pub struct PendingDelivery {
    topic: String,
    key: String,
    future: DeliveryFuture,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("topic", &self.topic)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PendingDelivery {
    /// Resolves once the broker acknowledged (or finally rejected) the record.
    pub async fn acknowledged(self) -> Result<Delivered, BusError> {
        match self.future.await {
            Ok(Ok(delivery)) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((source, _message))) => Err(BusError::Delivery {
                topic: self.topic,
                key: self.key,
                source: Box::new(source),
            }),
            Err(_canceled) => Err(BusError::ProducerClosed {
                topic: self.topic,
                key: self.key,
            }),
        }
    }
}

/// Idempotent, `acks=all` producer.
///
/// `enable.idempotence` makes librdkafka's internal retries safe: a broker restart mid-stream
/// neither loses, duplicates nor reorders a partition's records. `message.timeout.ms` defaults to
/// five minutes so a broker that is briefly away is waited for rather than reported as loss.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    // ClientConfig's Debug would print SASL passwords; never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// The size librdkafka checks against `message.max.bytes`: key, value and headers (each
/// header counted with a few bytes of framing).
pub fn record_size(record: &OutRecord<'_>) -> usize {
    const HEADER_FRAMING: usize = 10;
    record.key.len()
        + record.payload.map_or(0, <[u8]>::len)
        + record
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + HEADER_FRAMING)
            .sum::<usize>()
}

/// How long `enqueue` waits while librdkafka's local queue is full before trying again: the
/// queue being full *is* the backpressure signal, so the caller simply waits.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(50);

impl Producer {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, BusError> {
        Self::with_overrides(kafka, &[])
    }

    /// Like [`Producer::new`] with extra properties applied last (e.g. a transactional id).
    pub fn with_overrides(
        kafka: &KafkaConfig,
        overrides: &[(&str, &str)],
    ) -> Result<Self, BusError> {
        let mut config = client_config(kafka);
        // Defaults an operator may override through `kafka.properties`.
        for (key, default) in [
            ("message.timeout.ms", "300000"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
        ] {
            if config.get(key).is_none() {
                config.set(key, default);
            }
        }
        limit_producer(&mut config, kafka);
        // Required for the no-loss / no-reorder guarantee: not overridable.
        config.set("enable.idempotence", "true");
        config.set("acks", "all");
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        let inner = config.create().map_err(|source| BusError::Client {
            role: "producer",
            servers: kafka.bootstrap_servers.clone(),
            source: Box::new(source),
        })?;
        Ok(Self { inner })
    }

    /// Queues a record, waiting while the local queue is full (backpressure), and returns the
    /// pending delivery. Callers that pipeline many records keep the futures and await them all
    /// before acknowledging their own input.
    pub async fn enqueue(&self, record: OutRecord<'_>) -> Result<PendingDelivery, BusError> {
        let key_text = String::from_utf8_lossy(record.key).into_owned();
        loop {
            let mut future_record = FutureRecord::<[u8], [u8]>::to(record.topic).key(record.key);
            if let Some(payload) = record.payload {
                future_record = future_record.payload(payload);
            }
            if !record.headers.is_empty() {
                let headers =
                    record
                        .headers
                        .iter()
                        .fold(OwnedHeaders::new(), |headers, (key, value)| {
                            headers.insert(Header {
                                key,
                                value: Some(*value),
                            })
                        });
                future_record = future_record.headers(headers);
            }
            match self.inner.send_result(future_record) {
                Ok(future) => {
                    return Ok(PendingDelivery {
                        topic: record.topic.to_owned(),
                        key: key_text,
                        future,
                    });
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    tokio::time::sleep(QUEUE_FULL_RETRY).await;
                }
                Err((source, _)) => {
                    return Err(BusError::Delivery {
                        topic: record.topic.to_owned(),
                        key: key_text,
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    /// Queues one record and waits for the broker's acknowledgement.
    pub async fn send(&self, record: OutRecord<'_>) -> Result<Delivered, BusError> {
        self.enqueue(record).await?.acknowledged().await
    }

    /// Waits until every queued record was delivered or the timeout passed.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.inner
            .flush(Timeout::After(timeout))
            .map_err(|source| BusError::Delivery {
                topic: "*".into(),
                key: "*".into(),
                source: Box::new(source),
            })
    }

    /// The underlying rdkafka producer, for transactions.
    pub fn rdkafka(&self) -> &FutureProducer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn only_a_size_refusal_counts_as_too_large() {
        let refused = |code| BusError::Delivery {
            topic: "t".into(),
            key: "k".into(),
            source: Box::new(KafkaError::MessageProduction(code)),
        };
        assert!(refused(RDKafkaErrorCode::MessageSizeTooLarge).is_message_too_large());
        assert!(!refused(RDKafkaErrorCode::QueueFull).is_message_too_large());
    }
}
