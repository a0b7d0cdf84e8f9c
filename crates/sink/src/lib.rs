//! nowstream-sink: SEI entities from Kafka into a receiver of nowstream's ingestion contract.
//!
//! The sink consumes the four entity topics (`<prefix>sei.servicenow.<entity>`) as one consumer
//! group, batches records per SEI endpoint (integration × entity) by count, bytes and linger
//! time, and POSTs each batch to `{sei.url}/v1/ingest/servicenow/{integration_id}/{entity}`.
//! An input offset is committed only after SEI's 2xx for the record (or the DLQ's ack), so a
//! crash at any moment replays instead of losing; SEI keeps the newest version of each record,
//! so replays are harmless. See `docs/sink.md` for batching, retries, the DLQ, what happens on
//! an auth failure, metrics and every configuration key.
//!
//! | module | concern |
//! |---|---|
//! | [`record`] | a consumed message → target, sys_id, upsert JSON or delete; or a DLQ reason |
//! | [`batch`] | open batches per target; last operation per sys_id wins within a batch |
//! | [`dispatch`] | which batch goes next: bounded in flight, per-record order kept |
//! | [`request`] | body (gzip), `Idempotency-Key` |
//! | [`delivery`] | retries, splitting on 413, isolating the record a contract 400 names, dead-lettering, refusals |
//! | [`client`] | the HTTP client and what each status means |
//! | [`readiness`] | what `/readyz` says about SEI |
//! | [`backoff`] | pauses between attempts, `Retry-After` |
//! | [`metrics`] | Prometheus metrics |

pub mod backoff;
pub mod batch;
pub mod client;
pub mod delivery;
pub mod dispatch;
mod error;
pub mod metrics;
mod pipeline;
pub mod readiness;
pub mod record;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use nowstream_bus::{
    AckConsumer, DlqWriter, Producer, TopicSpec, ensure_topics, spawn_lag_gauge, static_membership,
};
use nowstream_model::{Entity, TopicNames};
use nowstream_runtime::{Config, Health};
use tokio_util::sync::CancellationToken;

pub use client::SeiClient;
pub use delivery::Deliverer;
pub use error::SinkError;

/// The `nowstream.stage` header value of the sink's DLQ records.
pub const STAGE: &str = "sink";

/// How long queued DLQ records may take to leave the producer at the end.
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the sink until `shutdown` is cancelled, then finishes in-flight batches (within
/// `sink.shutdown_grace`), commits what was acknowledged and returns.
///
/// Readiness components `sink.kafka` and `sink.sei` are registered on `health`; `sink.sei`
/// turns not-ready when SEI refuses a batch in a way no split can fix (401, 403, a 400 that
/// names no record): the sink parks and stays not ready until SEI takes the refused batch,
/// which it sends again with back-off. That is not an error return: the process stays up
/// and visible as not ready until SEI takes it or the process is stopped.
pub async fn run(
    config: Config,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), SinkError> {
    metrics::describe();
    let settings = config.sink.clone();
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(SinkError::InvalidConfig { problems });
    }
    let sei = config.sei.as_ref().ok_or(SinkError::MissingSei)?;
    let kafka_ready = health.component("sink.kafka");
    let sei_ready = health.component("sink.sei");
    let client = SeiClient::new(sei, &settings)?;
    let topics = TopicNames::new(config.kafka.topic_prefix.clone())?;

    let entity_topics: Vec<String> = Entity::ALL
        .iter()
        .map(|entity| topics.entity(*entity))
        .collect();
    // Entity topics are compacted (as the normalizer creates them): a tombstone then removes a
    // deleted record for good. The DLQ keeps every record for `kafka.dlq_retention`.
    let specs: Vec<TopicSpec> = entity_topics
        .iter()
        .map(|name| TopicSpec::compacted(name.clone(), settings.topic_partitions))
        .chain([TopicSpec::dead_letters(
            topics.dlq(),
            settings.topic_partitions,
        )])
        .map(|spec| spec.with_replication_factor(settings.replication_factor))
        .collect();
    ensure_topics(&config.kafka, &specs).await?;

    let producer = Producer::new(&config.kafka)?;
    let dlq = DlqWriter::new(producer.clone(), topics.dlq(), STAGE);
    let subscribed: Vec<&str> = entity_topics.iter().map(String::as_str).collect();
    let consumer = Arc::new(AckConsumer::subscribe_with(
        &config.kafka,
        &settings.group_id,
        &subscribed,
        &static_membership(settings.group_instance_id.as_deref()),
    )?);
    kafka_ready.set_ready();
    sei_ready.set_ready();
    tracing::info!(
        group = %settings.group_id,
        topics = ?entity_topics,
        sei = %client.display_url(),
        tenant = %client.tenant(),
        "sink started"
    );

    let sei_readiness = readiness::SeiReadiness::new(sei_ready);
    let deliverer = Arc::new(Deliverer::new(
        client.clone(),
        dlq.clone(),
        sei_readiness.clone(),
        settings.gzip,
        settings.retry_initial_backoff,
        settings.retry_max_backoff,
    ));
    let lag_stop = shutdown.child_token();
    let lag = spawn_lag_gauge(
        &config.kafka,
        Arc::clone(&consumer),
        settings.lag_interval,
        lag_stop.clone().cancelled_owned(),
        metrics::consumer_lag,
    );
    let result = pipeline::Pipeline {
        consumer,
        topics,
        settings,
        deliverer,
        dlq,
        sei: client,
        kafka_ready,
        sei_readiness,
    }
    .run(shutdown)
    .await;
    lag_stop.cancel();
    if let Err(error) = lag.await {
        tracing::debug!(%error, "lag task ended abnormally");
    }
    if let Err(error) = producer.flush(PRODUCER_FLUSH_TIMEOUT) {
        tracing::warn!(%error, "DLQ producer did not flush");
    }
    result
}
