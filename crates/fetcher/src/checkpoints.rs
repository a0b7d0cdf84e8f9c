//! Unit checkpoints on the compacted checkpoint topic.
//!
//! A checkpoint is written only after Kafka acknowledged every record of the page it covers, so
//! any checkpoint found on the topic is safe to resume from: at worst some records are fetched
//! and published again, which downstream upserts absorb. That is also why a checkpoint that
//! cannot be decoded is treated as missing (refetch) rather than as fatal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use nowstream_bus::{OutRecord, Producer, consumer_config};
use nowstream_model::{AvroRecord, Checkpoint};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;

/// How long reading the checkpoint topic may make no progress before the load fails. Longer
/// than the transaction timeout of the exactly-once writers, so a transaction a killed replica
/// left open on the topic (it holds `read_committed` readers back) is aborted by the broker
/// before the load gives up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);

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

    /// Writes a tombstone for `key` (compaction then drops the key) and waits for Kafka's ack.
    pub async fn remove(&self, key: &str) -> Result<(), FetchError> {
        self.producer
            .send(OutRecord::new(&self.topic, key.as_bytes(), None))
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
    let mut checkpoints = HashMap::new();
    let started = Instant::now();
    let partitions = read_committed_to_end(kafka, topic, LOAD_TIMEOUT, |message| {
        let Some(key) = message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
        else {
            return;
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
    })?;
    // Tests (and operators) read this line to tell a prompt resume from one that waited.
    tracing::info!(
        %topic,
        partitions,
        checkpoints = checkpoints.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "checkpoints read to the end"
    );
    Ok(checkpoints)
}

/// A partition's low and high watermarks. A topic created a moment ago may not have its leader
/// known to every broker yet (`NOT_LEADER_OR_FOLLOWER`, `LEADER_NOT_AVAILABLE`,
/// `UNKNOWN_TOPIC_OR_PARTITION` for a short while on Apache Kafka): such answers are asked again
/// until `patience` runs out; any other error is returned at once.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    patience: Duration,
) -> Result<(i64, i64), rdkafka::error::KafkaError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = Instant::now() + patience;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Err(error)
                if matches!(
                    error.rdkafka_error_code(),
                    Some(
                        Code::NotLeaderForPartition
                            | Code::LeaderNotAvailable
                            | Code::UnknownTopicOrPartition
                    )
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Reads every committed message of `topic` that was written before the call, handing each to
/// `visit`; returns how many partitions held anything.
///
/// The end is each partition's high watermark taken at the start, and a partition counts as
/// read once the consumer's *position* reached it, not once a message at `high - 1` arrived:
/// under transactions the last offsets are commit or abort markers, and aborted records sit
/// below them, none of which a `read_committed` consumer ever receives. The position moves past
/// them all. With plain (non-transactional) writes the two tests agree.
///
/// A transaction still open when the watermark was taken holds the position back (the last
/// stable offset) until it commits or aborts; so callers that own a `transactional.id` should
/// initialise it first, which ends their own predecessor's transaction at once. `stall` bounds
/// how long the position may stay still before the read fails.
pub(crate) fn read_committed_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    stall: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<usize, FetchError> {
    let failed = |reason: String| FetchError::Checkpoints {
        topic: topic.to_owned(),
        reason,
    };
    let mut config = consumer_config(kafka);
    // Manual assignment, no group: reading must not join or disturb any group.
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

    // The end of each partition as of now; later messages are not needed to start.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = watermarks(&consumer, topic, partition, stall)
            .map_err(|error| failed(format!("watermarks of partition {partition}: {error}")))?;
        if high > low {
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|error| failed(format!("assign partition {partition}: {error}")))?;
        }
    }
    let read = remaining.len();
    if remaining.is_empty() {
        return Ok(read);
    }
    consumer
        .assign(&assignment)
        .map_err(|error| failed(format!("assign: {error}")))?;
    let mut last_progress = Instant::now();
    let mut last_error: Option<KafkaError> = None;
    while !remaining.is_empty() {
        if last_progress.elapsed() > stall {
            let cause = last_error
                .as_ref()
                .map(|error| format!("; last error: {error}"))
                .unwrap_or_default();
            return Err(failed(format!(
                "not read to its end: no progress for {stall:?} ({} partitions left; a \
                 transaction left open by a stopped producer holds read_committed readers back \
                 until transaction.timeout.ms{cause})",
                remaining.len()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if remaining
                    .get(&message.partition())
                    .is_some_and(|&high| message.offset() < high)
                {
                    visit(&message);
                }
            }
            // librdkafka reports a lost broker connection (a broker died, a leader moved)
            // through `poll` and recovers by itself; the stall limit bounds the wait. Only what
            // it calls fatal ends the load at once.
            Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                return Err(failed(format!("read: {error}")));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, topic, "checkpoint read interrupted; reading on");
                last_error = Some(error);
            }
            None => {}
        }
        // Polling also consumed any control records (markers), which moves the position.
        let positions = consumer
            .position()
            .map_err(|error| failed(format!("position: {error}")))?;
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset()
                && remaining
                    .get(&element.partition())
                    .is_some_and(|&high| position >= high)
            {
                remaining.remove(&element.partition());
                last_progress = Instant::now();
            }
        }
    }
    Ok(read)
}
