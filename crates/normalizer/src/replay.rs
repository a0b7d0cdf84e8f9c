//! Replay: normalize history again from the raw topics, without asking ServiceNow.
//!
//! Used after the exclusion policy or the mapping changed. The raw topics are compacted, so
//! they hold at least the newest version of every record the fetcher ever published.
//!
//! How a replay works, and why:
//!
//! * **Its own consumer group**, `<normalizer.group_id>-replay-<unix millis>`. The running
//!   stage's group and its offsets are never touched, so a replay can run beside it (both
//!   publish to the same entity topics; downstream keeps the newest version of each record).
//!   Manual partition assignment would do too, but a group lets the replay reuse the stage's
//!   store-after-ack consumer unchanged.
//! * **A fixed end.** At start it reads every raw partition's high watermark; it normalizes
//!   the records below those end offsets and exits once every partition's position reached
//!   its end and every output was acknowledged. Records published after the start are the
//!   running stage's business.
//! * **`--since TIME`** starts each partition at the first record whose Kafka timestamp (when
//!   the fetcher published it) is at or after TIME, found with `offsets_for_times`. Those
//!   offsets are committed for the fresh replay group before it subscribes, so reading starts
//!   there; records below them that are read anyway (e.g. if the broker refused that commit)
//!   are skipped, not published.
//! * **Idempotent.** The same raw record always gives the same entity under the same key, so
//!   running a replay twice, or beside the stage, changes nothing but the number of copies
//!   in the topic's history (compaction removes them). An interrupted replay is simply run
//!   again. A replay always runs at-least-once, even with `exactly_once` set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nowstream_bus::{AckConsumer, AckToken, ConsumedMessage, DlqWriter, Producer, client_config};
use nowstream_runtime::{Config, Health, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Ending, Pipeline};
use crate::stage;
use crate::summary::Summary;
use crate::{NormalizerError, metrics};

/// How long one metadata, watermark or offset request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long queued outputs may take to leave the producer at the end.
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Every record the raw topics hold.
    Beginning,
    /// Records published (Kafka timestamp) at or after this time.
    Since(DateTime<Utc>),
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The consumer group the replay used.
    pub group: String,
    /// Raw partitions with something to replay.
    pub partitions: usize,
    /// Records below the end offsets, summed over those partitions (compacted topics may hold
    /// fewer than this).
    pub planned: i64,
    /// Counts.
    pub summary: Summary,
    /// False when the replay was interrupted (SIGINT/SIGTERM) before reaching its end.
    pub completed: bool,
}

/// Re-normalizes the raw topics from `from` up to their end offsets at the start, publishing
/// to the entity topics under the current configuration. Returns once everything below those
/// ends was published (or dead-lettered), or when `shutdown` is cancelled.
pub async fn replay(
    config: Config,
    from: ReplayFrom,
    shutdown: CancellationToken,
) -> Result<ReplayReport, NormalizerError> {
    let prepared = stage::prepare(&config).await?;
    let settings = &config.normalizer;
    let group = format!(
        "{}-replay-{}",
        settings.group_id,
        Utc::now().timestamp_millis()
    );
    let kafka = config.kafka.clone();
    let raw_topics = prepared.raw_topics.clone();
    let ranges = tokio::task::spawn_blocking(move || plan(&kafka, &raw_topics, from))
        .await
        .map_err(NormalizerError::TaskFailed)??;
    let partitions = ranges
        .iter()
        .filter(|range| range.start < range.end)
        .count();
    let planned = ranges
        .iter()
        .map(|range| (range.end - range.start).max(0))
        .sum();
    tracing::info!(%group, ?from, partitions, planned, "replay planned");
    let mut report = ReplayReport {
        group: group.clone(),
        partitions,
        planned,
        summary: Summary::default(),
        completed: true,
    };
    let bound = ReplayBound::new(&ranges);
    if bound.is_complete() {
        tracing::info!("nothing to replay");
        return Ok(report);
    }
    if matches!(from, ReplayFrom::Since(_)) {
        let kafka = config.kafka.clone();
        let starts = ranges.clone();
        let group = group.clone();
        let committed = tokio::task::spawn_blocking(move || commit_starts(&kafka, &group, &starts))
            .await
            .map_err(NormalizerError::TaskFailed)?;
        if let Err(error) = committed {
            tracing::warn!(%error, "cannot commit the start offsets for the replay group; \
                reading from the beginning and skipping what is before --since");
        }
    }
    let subscribed: Vec<&str> = prepared.raw_topics.iter().map(String::as_str).collect();
    // A replay reads from its start offsets whatever kafka.properties says about new groups.
    let consumer = Arc::new(AckConsumer::subscribe_with(
        &config.kafka,
        &group,
        &subscribed,
        &[("auto.offset.reset", "earliest")],
    )?);
    let producer = Producer::new(&config.kafka)?;
    let dlq = DlqWriter::new(producer.clone(), prepared.topics.dlq(), stage::STAGE);
    let mut pipeline = Pipeline::new(
        consumer,
        producer.clone(),
        dlq,
        Arc::clone(&prepared.normalizer),
        settings.max_in_flight,
        settings.shutdown_grace,
        Health::new().component("normalizer.replay"),
        Some(bound),
    );
    let ending = pipeline.run(&shutdown).await;
    report.summary = pipeline.summary;
    if let Err(error) = producer.flush(PRODUCER_FLUSH_TIMEOUT) {
        tracing::warn!(%error, "producer did not flush");
    }
    report.completed = ending? == Ending::ReplayComplete;
    tracing::info!(summary = %report.summary, completed = report.completed, "replay finished");
    Ok(report)
}

/// One raw partition's share of a replay: offsets `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Reads each raw partition's watermarks (and, for `--since`, the first offset at or after
/// the time). Topics that do not exist have nothing to replay.
fn plan(
    kafka: &KafkaConfig,
    raw_topics: &[String],
    from: ReplayFrom,
) -> Result<Vec<PartitionRange>, NormalizerError> {
    let broker = |action: &'static str| {
        move |error: KafkaError| NormalizerError::Broker {
            action,
            reason: error.to_string(),
        }
    };
    let consumer: BaseConsumer = client_config(kafka)
        .create()
        .map_err(broker("create a client to read the raw topics' offsets"))?;
    let mut ranges = Vec::new();
    for topic in raw_topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(broker("read the raw topics' metadata"))?;
        let Some(found) = metadata
            .topics()
            .iter()
            .find(|found| found.name() == topic && found.error().is_none())
        else {
            tracing::info!(%topic, "raw topic does not exist; nothing to replay from it");
            continue;
        };
        for partition in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), BROKER_TIMEOUT)
                .map_err(broker("read the raw topics' end offsets"))?;
            ranges.push(PartitionRange {
                topic: topic.clone(),
                partition: partition.id(),
                start: low,
                end: high,
            });
        }
    }
    if let ReplayFrom::Since(since) = from {
        let mut query = TopicPartitionList::new();
        for range in &ranges {
            query
                .add_partition_offset(
                    &range.topic,
                    range.partition,
                    Offset::Offset(since.timestamp_millis()),
                )
                .map_err(broker("ask for offsets by time"))?;
        }
        let found = consumer
            .offsets_for_times(query, BROKER_TIMEOUT)
            .map_err(broker("find the first offsets at or after --since"))?;
        for range in &mut ranges {
            let first = found
                .find_partition(&range.topic, range.partition)
                .map(|element| element.offset());
            range.start = match first {
                Some(Offset::Offset(offset)) => offset.clamp(range.start, range.end),
                // No record at or after the time: nothing to replay here.
                _ => range.end,
            };
        }
    }
    Ok(ranges)
}

/// Commits each range's start for the (new, empty) replay group, so its consumer starts there.
fn commit_starts(
    kafka: &KafkaConfig,
    group: &str,
    ranges: &[PartitionRange],
) -> Result<(), KafkaError> {
    let mut config = client_config(kafka);
    config.set("group.id", group);
    config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let mut offsets = TopicPartitionList::new();
    for range in ranges.iter().filter(|range| range.start < range.end) {
        offsets.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.start))?;
    }
    consumer.commit(&offsets, CommitMode::Sync)
}

/// What the loop does with one message of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Normalize and publish it.
    Replay,
    /// Acknowledge it without output: before the start, at or after the end, or from a
    /// partition that did not exist when the replay started.
    Skip,
}

#[derive(Debug)]
struct Progress {
    start: i64,
    end: i64,
    in_flight: usize,
    complete: bool,
}

/// Which offsets a replay normalizes, and whether it is done.
#[derive(Debug)]
pub(crate) struct ReplayBound {
    partitions: HashMap<(String, i32), Progress>,
    incomplete: usize,
}

impl ReplayBound {
    pub(crate) fn new(ranges: &[PartitionRange]) -> Self {
        let partitions: HashMap<(String, i32), Progress> = ranges
            .iter()
            .map(|range| {
                (
                    (range.topic.clone(), range.partition),
                    Progress {
                        start: range.start,
                        end: range.end,
                        in_flight: 0,
                        complete: range.start >= range.end,
                    },
                )
            })
            .collect();
        let incomplete = partitions.values().filter(|p| !p.complete).count();
        Self {
            partitions,
            incomplete,
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.incomplete == 0
    }

    pub(crate) fn disposition(&self, message: &ConsumedMessage) -> Disposition {
        match self
            .partitions
            .get(&(message.topic.clone(), message.partition))
        {
            Some(progress) if (progress.start..progress.end).contains(&message.offset) => {
                Disposition::Replay
            }
            _ => Disposition::Skip,
        }
    }

    pub(crate) fn started(&mut self, token: &AckToken) {
        if let Some(progress) = self.progress(token) {
            progress.in_flight += 1;
        }
    }

    pub(crate) fn finished(&mut self, token: &AckToken) {
        if let Some(progress) = self.progress(token) {
            progress.in_flight = progress.in_flight.saturating_sub(1);
        }
    }

    /// Marks partitions complete whose position reached the end with nothing in flight;
    /// true once all are. The position moves past transaction markers too, which the
    /// application never sees, so it is a sounder test than the last offset delivered.
    pub(crate) fn check(&mut self, consumer: &AckConsumer) -> Result<bool, KafkaError> {
        if self.is_complete() {
            return Ok(true);
        }
        let positions = consumer.rdkafka().position()?;
        for element in positions.elements() {
            let Offset::Offset(position) = element.offset() else {
                continue;
            };
            if let Some(progress) = self
                .partitions
                .get_mut(&(element.topic().to_owned(), element.partition()))
                && !progress.complete
                && progress.in_flight == 0
                && position >= progress.end
            {
                progress.complete = true;
                self.incomplete -= 1;
            }
        }
        if self.is_complete() {
            metrics::in_flight(0);
        }
        Ok(self.is_complete())
    }

    fn progress(&mut self, token: &AckToken) -> Option<&mut Progress> {
        self.partitions
            .get_mut(&(token.topic.clone(), token.partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(partition: i32, start: i64, end: i64) -> PartitionRange {
        PartitionRange {
            topic: "raw".into(),
            partition,
            start,
            end,
        }
    }

    #[test]
    fn partitions_with_nothing_between_start_and_end_are_complete_from_the_start() {
        let bound = ReplayBound::new(&[range(0, 5, 5), range(1, 7, 3)]);
        assert!(bound.is_complete());
        let bound = ReplayBound::new(&[range(0, 5, 5), range(1, 0, 3)]);
        assert!(!bound.is_complete());
    }
}
