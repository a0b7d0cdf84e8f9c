//! Unit checkpoints on the compacted checkpoint topic.
//!
//! A checkpoint is written only after Kafka acknowledged every record of the page it covers, so
//! any checkpoint found on the topic is safe to resume from: at worst some records are fetched
//! and published again, which downstream upserts absorb. That is also why a checkpoint that
//! cannot be decoded is treated as missing (refetch) rather than as fatal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use nowstream_bus::{OutRecord, Producer, client_config};
use nowstream_model::{AvroRecord, Checkpoint};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;

/// How long reading the checkpoint topic to its end may take before start-up fails.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CheckpointStore {
    kafka: KafkaConfig,
    producer: Producer,
    topic: String,
}

impl CheckpointStore {
    pub fn new(kafka: KafkaConfig, producer: Producer, topic: String) -> Self {
        Self {
            kafka,
            producer,
            topic,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The Kafka settings the store reads with (reconciliation reads the raw topics with them).
    pub fn kafka(&self) -> &KafkaConfig {
        &self.kafka
    }

    /// Writes a checkpoint and waits until Kafka acknowledged it.
    pub async fn save(&self, key: &str, checkpoint: &Checkpoint) -> Result<(), FetchError> {
        let value = checkpoint.encode().map_err(|source| FetchError::Encode {
            what: format!("checkpoint {key}"),
            source,
        })?;
        self.producer
            .send(OutRecord::new(&self.topic, key.as_bytes(), Some(&value)))
            .await?;
        Ok(())
    }

    /// Reads the whole (compacted) topic and returns the newest checkpoint per key.
    pub async fn load_all(&self) -> Result<HashMap<String, Checkpoint>, FetchError> {
        let kafka = self.kafka.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic))
            .await
            .map_err(|error| FetchError::Checkpoints {
                topic: self.topic.clone(),
                reason: format!("reader task failed: {error}"),
            })?
    }

    /// The newest checkpoint of one unit, if any.
    pub async fn load(&self, key: &str) -> Result<Option<Checkpoint>, FetchError> {
        Ok(self.load_all().await?.remove(key))
    }
}

fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
) -> Result<HashMap<String, Checkpoint>, FetchError> {
    let failed = |reason: String| FetchError::Checkpoints {
        topic: topic.to_owned(),
        reason,
    };
    let mut config = client_config(kafka);
    // Manual assignment, no group: reading checkpoints must not join or disturb any group.
    config.set("enable.auto.commit", "false");
    config.set("group.id", "nowstream-fetcher-checkpoint-reader");
    // With exactly_once a checkpoint belongs to a transaction: one from an aborted transaction
    // covers records that were never committed, so resuming from it would skip them.
    config.set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|error| failed(format!("cannot create reader: {error}")))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|error| failed(format!("metadata: {error}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();

    // The end of each partition as of now; later checkpoints are not needed to start.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|error| failed(format!("watermarks of partition {partition}: {error}")))?;
        if high > low {
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|error| failed(format!("assign partition {partition}: {error}")))?;
        }
    }
    let mut checkpoints = HashMap::new();
    if remaining.is_empty() {
        return Ok(checkpoints);
    }
    consumer
        .assign(&assignment)
        .map_err(|error| failed(format!("assign: {error}")))?;
    let deadline = Instant::now() + LOAD_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(failed(format!(
                "not read to its end within {LOAD_TIMEOUT:?} ({} partitions left)",
                remaining.len()
            )));
        }
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.map_err(|error| failed(format!("read: {error}")))?;
        if remaining
            .get(&message.partition())
            .is_some_and(|&high| message.offset() + 1 >= high)
        {
            remaining.remove(&message.partition());
        }
        let Some(key) = message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
        else {
            continue;
        };
        match message.payload() {
            None => {
                checkpoints.remove(&key);
            }
            Some(bytes) => match Checkpoint::decode(bytes) {
                Ok(checkpoint) => {
                    checkpoints.insert(key, checkpoint);
                }
                Err(error) => {
                    tracing::warn!(
                        %key,
                        partition = message.partition(),
                        offset = message.offset(),
                        %error,
                        "ignoring a checkpoint that cannot be decoded; the unit refetches from its previous one"
                    );
                }
            },
        }
    }
    Ok(checkpoints)
}
