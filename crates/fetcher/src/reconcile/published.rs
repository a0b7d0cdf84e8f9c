//! What was published: the compacted raw topic `servicenow.raw.<table>`, keyed
//! `<integration>:<sys_id>`, read up to high watermarks taken *before* the keys-only scan.
//!
//! The raw topic is the record of publication that survives restarts and replica moves, and it
//! is already there: no second store to keep in step. Reading it only up to the watermarks
//! taken before the scan closes the race with new records: a record published before that
//! point existed in ServiceNow before the scan began, so if it still exists the scan lists it;
//! a record created during the scan is published after that point and is not looked at. The
//! newest message per key decides (one key, one partition, so partition order is version
//! order): a key whose newest message is already a DELETE, or a tombstone, is not published.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use nowstream_bus::consumer_config;
use nowstream_model::{AvroRecord, RawRecord, RecordOp};
use nowstream_runtime::KafkaConfig;

use super::live_keys::LiveKeys;
use super::ranges::SysIdRange;
use crate::FetchError;

/// A read that receives nothing for this long while partitions remain has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on metadata and watermark requests.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Per partition, `(low, high)` watermarks.
pub type Watermarks = BTreeMap<i32, (i64, i64)>;

/// A published record the keys-only scan did not list: the newest version published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub sys_updated_on: DateTime<Utc>,
}

fn failed(topic: &str, reason: String) -> FetchError {
    FetchError::Reconciliation {
        what: format!("topic {topic}"),
        reason,
    }
}

fn reader(kafka: &KafkaConfig, topic: &str) -> Result<BaseConsumer, FetchError> {
    // Bounded like every consumer: this one reads a whole raw topic, and librdkafka's own
    // defaults would prefetch 64 MiB and fetch 50 MB at once (docs/performance.md).
    let mut config = consumer_config(kafka);
    // Manual assignment, no group: reading must not join or disturb any consumer group.
    config.set("enable.auto.commit", "false");
    config.set("group.id", "nowstream-fetcher-reconcile-reader");
    // With exactly_once, a record of an aborted transaction was never published.
    config.set("isolation.level", "read_committed");
    config
        .create()
        .map_err(|error| failed(topic, format!("cannot create reader: {error}")))
}

/// The watermarks of every partition of `topic`, now.
pub async fn watermarks(kafka: &KafkaConfig, topic: &str) -> Result<Watermarks, FetchError> {
    let kafka = kafka.clone();
    let owned = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = reader(&kafka, &owned)?;
        let metadata = consumer
            .fetch_metadata(Some(&owned), METADATA_TIMEOUT)
            .map_err(|error| failed(&owned, format!("metadata: {error}")))?;
        let mut marks = Watermarks::new();
        for partition in metadata
            .topics()
            .iter()
            .filter(|t| t.name() == owned)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        {
            let range = consumer
                .fetch_watermarks(&owned, partition, METADATA_TIMEOUT)
                .map_err(|error| {
                    failed(
                        &owned,
                        format!("watermarks of partition {partition}: {error}"),
                    )
                })?;
            marks.insert(partition, range);
        }
        Ok(marks)
    })
    .await
    .map_err(|error| failed(topic, format!("reader task failed: {error}")))?
}

/// The keys of `integration_id` in `range` whose newest message below `marks` is an upsert
/// and which `live` does not hold: published, and not listed by the scan.
pub async fn missing_from(
    kafka: &KafkaConfig,
    topic: &str,
    marks: Watermarks,
    integration_id: &str,
    range: SysIdRange,
    live: std::sync::Arc<LiveKeys>,
    cancel: CancellationToken,
) -> Result<HashMap<String, Published>, FetchError> {
    let kafka = kafka.clone();
    let owned = topic.to_owned();
    let prefix = format!("{integration_id}:");
    tokio::task::spawn_blocking(move || {
        read_missing(&kafka, &owned, &marks, &prefix, &range, &live, &cancel)
    })
    .await
    .map_err(|error| failed(topic, format!("reader task failed: {error}")))?
}

fn read_missing(
    kafka: &KafkaConfig,
    topic: &str,
    marks: &Watermarks,
    prefix: &str,
    range: &SysIdRange,
    live: &LiveKeys,
    cancel: &CancellationToken,
) -> Result<HashMap<String, Published>, FetchError> {
    let mut found: HashMap<String, Published> = HashMap::new();
    let mut remaining: HashMap<i32, i64> = marks
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(partition, (_, high))| (*partition, *high))
        .collect();
    if remaining.is_empty() {
        return Ok(found);
    }
    let consumer = reader(kafka, topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in remaining.keys() {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .map_err(|error| failed(topic, format!("assign partition {partition}: {error}")))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| failed(topic, format!("assign: {error}")))?;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        if cancel.is_cancelled() {
            return Err(failed(topic, "cancelled".into()));
        }
        if last_progress.elapsed() > STALL_TIMEOUT {
            return Err(failed(
                topic,
                format!(
                    "no progress for {STALL_TIMEOUT:?} ({} partitions not read to their end)",
                    remaining.len()
                ),
            ));
        }
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.map_err(|error| failed(topic, format!("read: {error}")))?;
            last_progress = Instant::now();
            let high = marks.get(&message.partition()).map_or(0, |(_, high)| *high);
            if message.offset() < high {
                note(&mut found, &message, prefix, range, live, topic);
            }
        }
        // The position, not the last message, says where a partition stands: transaction
        // markers and aborted records below the watermark are never delivered.
        let positions = consumer
            .position()
            .map_err(|error| failed(topic, format!("position: {error}")))?;
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset()
                && remaining
                    .get(&element.partition())
                    .is_some_and(|high| position >= *high)
            {
                remaining.remove(&element.partition());
                last_progress = Instant::now();
            }
        }
    }
    Ok(found)
}

/// Takes one raw message into account.
fn note(
    found: &mut HashMap<String, Published>,
    message: &rdkafka::message::BorrowedMessage<'_>,
    prefix: &str,
    range: &SysIdRange,
    live: &LiveKeys,
    topic: &str,
) {
    let Some(sys_id) = message
        .key()
        .and_then(|key| std::str::from_utf8(key).ok())
        .and_then(|key| key.strip_prefix(prefix))
    else {
        return;
    };
    if !range.contains(sys_id) || live.contains(sys_id) {
        return;
    }
    let Some(bytes) = message.payload() else {
        found.remove(sys_id);
        return;
    };
    match RawRecord::decode(bytes) {
        Ok(record) if record.op == RecordOp::Upsert => {
            found.insert(
                sys_id.to_owned(),
                Published {
                    sys_updated_on: record.sys_updated_on,
                },
            );
        }
        Ok(_) => {
            found.remove(sys_id);
        }
        Err(error) => {
            // Not ours to judge here: a record that cannot be decoded is left alone rather
            // than deleted on a guess.
            found.remove(sys_id);
            tracing::warn!(
                %topic,
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "reconciliation skips a raw record that cannot be decoded"
            );
        }
    }
}
