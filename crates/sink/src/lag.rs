//! Consumer lag: how far behind the entity topics the sink is, per partition.
//!
//! Measured on a timer rather than per message, because asking the broker for watermarks is a
//! network round trip. It runs on the blocking pool with a client of its own (no group), so
//! neither the delivery loop nor the group consumer ever waits for it: a consumer that is not
//! being polled (backpressure, or parked after an auth failure) does not answer watermark
//! queries promptly.
//!
//! The position is the next offset the sink will read, which the loop records as it reads
//! ([`Positions`]); before anything was read, the committed offset stands in, and without
//! one the low watermark (a new group starts at the beginning).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nowstream_bus::{AckConsumer, client_config};
use nowstream_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How long one watermark or committed-offset request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// The next offset to read per partition, as the loop last saw it.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    next: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl Positions {
    /// The loop read `offset` of `topic`/`partition`. A partition is read in offset order, so
    /// the latest read is the position, also when a rebalance made reading start over lower.
    pub fn read(&self, topic: &str, partition: i32, offset: i64) {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((topic.to_owned(), partition), offset + 1);
    }

    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .copied()
    }
}

/// Measures lag every `interval` until `stop` is cancelled.
pub fn spawn(
    kafka: &KafkaConfig,
    consumer: Arc<AckConsumer>,
    positions: Positions,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let watermarks: Option<Arc<BaseConsumer>> = match client_config(kafka).create() {
        Ok(client) => Some(Arc::new(client)),
        Err(error) => {
            tracing::warn!(%error, "cannot create the client that measures consumer lag; lag is not reported");
            None
        }
    };
    tokio::spawn(async move {
        let Some(watermarks) = watermarks else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {
                    let consumer = Arc::clone(&consumer);
                    let watermarks = Arc::clone(&watermarks);
                    let positions = positions.clone();
                    let measured = tokio::task::spawn_blocking(move || {
                        measure(&consumer, &watermarks, &positions)
                    });
                    match measured.await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::debug!(%error, "consumer lag not measured this time"),
                        Err(error) => tracing::debug!(%error, "consumer lag task failed"),
                    }
                }
            }
        }
    })
}

/// Sets the lag gauge of every assigned partition.
fn measure(
    consumer: &AckConsumer,
    watermarks: &BaseConsumer,
    positions: &Positions,
) -> Result<(), KafkaError> {
    let assignment = consumer.rdkafka().assignment()?;
    let mut unread = TopicPartitionList::new();
    for element in assignment.elements() {
        if positions
            .get(element.topic(), element.partition())
            .is_none()
        {
            unread.add_partition(element.topic(), element.partition());
        }
    }
    let committed = if unread.count() > 0 {
        consumer
            .rdkafka()
            .committed_offsets(unread, BROKER_TIMEOUT)
            .ok()
    } else {
        None
    };
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = watermarks.fetch_watermarks(topic, partition, BROKER_TIMEOUT)?;
        let position = positions.get(topic, partition).unwrap_or_else(|| {
            committed
                .as_ref()
                .and_then(
                    |list| match list.find_partition(topic, partition)?.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    },
                )
                .unwrap_or(low)
        });
        metrics::consumer_lag(topic, partition, (high - position).max(0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_one_past_the_offset_read_last() {
        let positions = Positions::default();
        assert_eq!(positions.get("t", 0), None);
        positions.read("t", 0, 7);
        positions.read("t", 1, 0);
        assert_eq!(positions.get("t", 0), Some(8));
        assert_eq!(positions.get("t", 1), Some(1));
        // Read again from a lower offset after a rebalance.
        positions.read("t", 0, 3);
        assert_eq!(positions.get("t", 0), Some(4));
    }
}
