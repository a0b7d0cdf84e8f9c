//! What the fetcher benches share.

use std::time::Duration;

use nowstream_bus::Producer;
use nowstream_fetcher::checkpoints::CheckpointStore;
use nowstream_runtime::KafkaConfig;
use tokio::task::JoinHandle;

/// Waits until the incident unit's checkpoint counts at least `expected` published records
/// (polling every `poll`), and returns that count; fails if the fetcher stops first.
pub async fn wait_for_published(
    kafka: &KafkaConfig,
    prefix: &str,
    expected: usize,
    fetcher: &mut JoinHandle<Result<(), nowstream_fetcher::FetchError>>,
    poll: Duration,
) -> anyhow::Result<usize> {
    let checkpoints = CheckpointStore::new(
        kafka.clone(),
        Producer::new(kafka)?,
        format!("{prefix}servicenow.fetcher.checkpoints"),
    );
    loop {
        let total = checkpoints
            .load("4711:incident")
            .await
            .ok()
            .flatten()
            .map_or(0, |checkpoint| checkpoint.records_total as usize);
        if total >= expected {
            return Ok(total);
        }
        if fetcher.is_finished() {
            anyhow::bail!("the fetcher stopped: {:?}", fetcher.await);
        }
        tokio::time::sleep(poll).await;
    }
}
