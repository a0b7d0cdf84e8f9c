//! Consumer lag: how far behind the raw topics the normalizer is, per partition.
//!
//! Measured on a timer rather than per message, because asking the broker for watermarks is a
//! network round trip; it runs on the blocking pool so the loop never waits for it.

use std::sync::Arc;
use std::time::Duration;

use nowstream_bus::AckConsumer;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How long one watermark or committed-offset request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Measures lag every `interval` until `stop` is cancelled.
pub(crate) fn spawn(
    consumer: Arc<AckConsumer>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {
                    let consumer = Arc::clone(&consumer);
                    match tokio::task::spawn_blocking(move || measure(&consumer)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::debug!(%error, "consumer lag not measured this time"),
                        Err(error) => tracing::debug!(%error, "consumer lag task failed"),
                    }
                }
            }
        }
    })
}

/// Sets the lag gauge of every assigned partition: high watermark minus the position (the
/// next offset to read), or minus the committed offset before anything was read.
fn measure(consumer: &AckConsumer) -> Result<(), rdkafka::error::KafkaError> {
    let kafka = consumer.rdkafka();
    let positions = kafka.position()?;
    let mut unknown = TopicPartitionList::new();
    for element in positions.elements() {
        if !matches!(element.offset(), Offset::Offset(_)) {
            unknown.add_partition(element.topic(), element.partition());
        }
    }
    let committed = if unknown.count() > 0 {
        kafka.committed_offsets(unknown, BROKER_TIMEOUT).ok()
    } else {
        None
    };
    for element in positions.elements() {
        let (low, high) =
            kafka.fetch_watermarks(element.topic(), element.partition(), BROKER_TIMEOUT)?;
        let from_committed = committed.as_ref().and_then(|list| {
            match list
                .find_partition(element.topic(), element.partition())?
                .offset()
            {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }
        });
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            // Nothing read and nothing committed: a new group starts at the beginning.
            _ => from_committed.unwrap_or(low),
        };
        metrics::consumer_lag(
            element.topic(),
            element.partition(),
            (high - position).max(0),
        );
    }
    Ok(())
}
