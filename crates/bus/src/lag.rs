//! Consumer lag: how many records of each assigned partition a group consumer has still to
//! read. Every stage that consumes reports it as a gauge of its own (`report`), so the metric
//! names stay the stage's while the measurement is one.
//!
//! Measured on a timer rather than per message, because asking the broker for watermarks is a
//! network round trip. It runs on the blocking pool with a client of its own (no group), so
//! neither the stage's loop nor its group consumer ever waits for it: a consumer that is not
//! being polled (backpressure, or a stage parked after a downstream refusal) does not answer
//! watermark queries promptly.
//!
//! The position is the next offset the stage will read, which the [`AckConsumer`] records as
//! it hands messages out ([`AckConsumer::next_offset`]); before anything was read in the
//! current assignment, the committed offset stands in, and without one the low watermark (a
//! new group starts at the beginning).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use nowstream_runtime::KafkaConfig;

use crate::AckConsumer;
use crate::client::client_config;

/// How long one watermark or committed-offset request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Measures the lag of `consumer`'s assigned partitions every `interval` until `stop`
/// resolves, handing each partition's lag to `report(topic, partition, lag)`.
pub fn spawn_lag_gauge(
    kafka: &KafkaConfig,
    consumer: Arc<AckConsumer>,
    interval: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
    report: impl Fn(&str, i32, i64) + Send + Sync + 'static,
) -> JoinHandle<()> {
    let watermarks: Option<Arc<BaseConsumer>> = match client_config(kafka).create() {
        Ok(client) => Some(Arc::new(client)),
        Err(error) => {
            tracing::warn!(%error, "cannot create the client that measures consumer lag; lag is not reported");
            None
        }
    };
    let report = Arc::new(report);
    tokio::spawn(async move {
        let Some(watermarks) = watermarks else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => {
                    let consumer = Arc::clone(&consumer);
                    let watermarks = Arc::clone(&watermarks);
                    let report = Arc::clone(&report);
                    let measured = tokio::task::spawn_blocking(move || {
                        measure(&consumer, &watermarks, &*report)
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

/// Reports the lag of every assigned partition: high watermark minus the read position.
fn measure(
    consumer: &AckConsumer,
    watermarks: &BaseConsumer,
    report: &dyn Fn(&str, i32, i64),
) -> Result<(), KafkaError> {
    let assignment = consumer.rdkafka().assignment()?;
    let mut unread = TopicPartitionList::new();
    for element in assignment.elements() {
        if consumer
            .next_offset(element.topic(), element.partition())
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
        let position = consumer.next_offset(topic, partition).unwrap_or_else(|| {
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
        report(topic, partition, (high - position).max(0));
    }
    Ok(())
}
