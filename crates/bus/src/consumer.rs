//! A group consumer that commits only what the caller acknowledged.

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use nowstream_runtime::KafkaConfig;

use crate::BusError;
pub use crate::acks::AckToken;
use crate::acks::AckTracker;
use crate::message_size::consumer_config;
use crate::position::Position;

/// A consumed record, owned so it can cross tasks while its output is being produced.
#[derive(Debug, Clone)]
pub struct ConsumedMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Broker or producer timestamp in milliseconds since the epoch, when present.
    pub timestamp_ms: Option<i64>,
    /// Hand back to [`AckConsumer::ack`] once the output for this message is acknowledged.
    pub token: AckToken,
}

impl ConsumedMessage {
    /// `topic/partition@offset` of this message, for logs and error details.
    pub fn position(&self) -> Position<'_> {
        Position::new(&self.topic, self.partition, self.offset)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// Keeps the acknowledgement tracker in step with partition assignment.
///
/// The callbacks run on librdkafka's thread and only do quick bookkeeping: offsets already stored
/// are committed by librdkafka itself on revocation (auto-commit), and unacknowledged messages are
/// simply redelivered to the partition's next owner.
#[derive(Debug)]
pub struct AckContext {
    tracker: Arc<Mutex<AckTracker>>,
}

impl ClientContext for AckContext {}

impl ConsumerContext for AckContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut tracker = lock(&self.tracker);
            for element in partitions.elements() {
                tracker.revoke(element.topic(), element.partition());
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut tracker = lock(&self.tracker);
                for element in partitions.elements() {
                    tracker.assign(element.topic(), element.partition());
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "consumer group rebalance error");
                lock(&self.tracker).revoke_all();
            }
        }
    }
}

fn lock(tracker: &Mutex<AckTracker>) -> MutexGuard<'_, AckTracker> {
    // The tracker holds plain bookkeeping; a panic elsewhere cannot leave it half-updated.
    tracker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Group consumer with `enable.auto.offset.store=false`: an offset reaches the commit only when
/// [`AckConsumer::ack`] was called for that message and for every earlier one of its partition.
///
/// Auto-commit stays on: librdkafka periodically commits whatever was *stored*, which is exactly
/// the acknowledged prefix, and commits it once more when partitions are revoked or on close.
pub struct AckConsumer {
    inner: StreamConsumer<AckContext>,
    tracker: Arc<Mutex<AckTracker>>,
    group: String,
}

impl std::fmt::Debug for AckConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckConsumer")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl AckConsumer {
    /// Joins `group` and subscribes to `topics` (names already prefixed; `^regex` allowed).
    pub fn subscribe(kafka: &KafkaConfig, group: &str, topics: &[&str]) -> Result<Self, BusError> {
        Self::subscribe_with(kafka, group, topics, &[])
    }

    /// Like [`AckConsumer::subscribe`] with extra properties applied last.
    pub fn subscribe_with(
        kafka: &KafkaConfig,
        group: &str,
        topics: &[&str],
        overrides: &[(&str, &str)],
    ) -> Result<Self, BusError> {
        let mut config = consumer_config(kafka);
        // A new group must start at the beginning, or records produced before it joined are lost.
        if config.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", "earliest");
        }
        config.set("group.id", group);
        config.set("enable.auto.offset.store", "false");
        config.set("enable.auto.commit", "true");
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        let tracker = Arc::new(Mutex::new(AckTracker::default()));
        let context = AckContext {
            tracker: Arc::clone(&tracker),
        };
        let inner: StreamConsumer<AckContext> =
            config
                .create_with_context(context)
                .map_err(|source| BusError::Client {
                    role: "consumer",
                    servers: kafka.bootstrap_servers.clone(),
                    source: Box::new(source),
                })?;
        inner
            .subscribe(topics)
            .map_err(|source| BusError::Consumer {
                group: group.to_owned(),
                action: "subscribe",
                source: Box::new(source),
            })?;
        Ok(Self {
            inner,
            tracker,
            group: group.to_owned(),
        })
    }

    /// Waits for the next message.
    pub async fn recv(&self) -> Result<ConsumedMessage, BusError> {
        let message = self
            .inner
            .recv()
            .await
            .map_err(|source| BusError::Consumer {
                group: self.group.clone(),
                action: "receive",
                source: Box::new(source),
            })?;
        let token =
            lock(&self.tracker).delivered(message.topic(), message.partition(), message.offset());
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ConsumedMessage {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
            token,
        })
    }

    /// Marks a message as done: its output was acknowledged downstream.
    ///
    /// Stores the partition's new position when the acknowledged prefix grew. A partition that was
    /// revoked in the meantime is not an error: its next owner gets the message again.
    pub fn ack(&self, token: &AckToken) -> Result<(), BusError> {
        let Some(position) = lock(&self.tracker).ack(token) else {
            return Ok(());
        };
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&token.topic, token.partition, Offset::Offset(position))
            .map_err(|source| self.consumer_error("store offset", source))?;
        match self.inner.store_offsets(&offsets) {
            Ok(()) => Ok(()),
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State))
            | Err(KafkaError::StoreOffset(RDKafkaErrorCode::UnknownPartition)) => {
                tracing::debug!(
                    topic = %token.topic,
                    partition = token.partition,
                    "partition no longer assigned; acknowledgement dropped"
                );
                Ok(())
            }
            Err(source) => Err(self.consumer_error("store offset", source)),
        }
    }

    /// Commits the stored (acknowledged) positions now, synchronously. Used before a clean
    /// shutdown; during normal operation auto-commit does this every few seconds.
    pub fn commit(&self) -> Result<(), BusError> {
        match self.inner.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(source) => Err(self.consumer_error("commit", source)),
        }
    }

    /// Messages handed out and not yet acknowledged: a stage bounds its in-flight work with this.
    pub fn in_flight(&self) -> usize {
        lock(&self.tracker).pending()
    }

    /// One past the last offset of `topic`/`partition` this consumer handed out in the
    /// partition's current assignment (the consumer's read position as its caller saw it);
    /// `None` before the first message of the assignment.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        lock(&self.tracker).next_offset(topic, partition)
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The underlying rdkafka consumer, for transactions and lag metrics.
    pub fn rdkafka(&self) -> &StreamConsumer<AckContext> {
        &self.inner
    }

    fn consumer_error(&self, action: &'static str, source: KafkaError) -> BusError {
        BusError::Consumer {
            group: self.group.clone(),
            action,
            source: Box::new(source),
        }
    }
}
