//! The normalizer stage: consume the raw topics as a consumer group, publish SEI entities.
//!
//! [`run`] checks the configuration, makes sure the topics exist, and then runs *sessions*:
//! one consumer and one producer each, driven by the at-least-once loop
//! ([`crate::pipeline`]) or, with `exactly_once`, the transactional one
//! ([`crate::transactional`]). A session that hits a Kafka failure (an output the broker
//! finally refused, a transaction that cannot commit) ends after committing what was
//! acknowledged; the next session re-joins the group and continues from the committed
//! offsets, so nothing is skipped and per-key order is kept.

use std::sync::Arc;
use std::time::Duration;

use nowstream_bus::{
    AckConsumer, DlqWriter, Producer, TopicSpec, ensure_topics, spawn_lag_gauge, static_membership,
};
use nowstream_model::{Entity, TopicNames};
use nowstream_runtime::{Config, Health};
use tokio_util::sync::CancellationToken;

use crate::normalize::Normalizer;
use crate::pipeline::Pipeline;
use crate::summary::Summary;
use crate::transactional::TransactionalPipeline;
use crate::{NormalizerError, metrics};

/// The `nowstream.stage` header value of the normalizer's DLQ records.
pub const STAGE: &str = "normalizer";

/// How long queued outputs may take to leave the producer at the end of a session.
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause before a new session after a failed one; doubles up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// What both the stage and a replay need before they read anything.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub topics: TopicNames,
    pub normalizer: Arc<Normalizer>,
    /// The four raw topics, prefix included.
    pub raw_topics: Vec<String>,
}

/// Checks the configuration and creates missing topics: the entity topics compacted (a
/// tombstone then removes a deleted record for good), the DLQ with `kafka.dlq_retention`, and the raw topics the
/// way the fetcher creates them, so the stage can subscribe whichever starts first.
pub(crate) async fn prepare(config: &Config) -> Result<Prepared, NormalizerError> {
    metrics::describe();
    let settings = &config.normalizer;
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(NormalizerError::InvalidConfig { problems });
    }
    let topics = TopicNames::new(config.kafka.topic_prefix.clone())?;
    let normalizer = Arc::new(
        Normalizer::new(topics.clone(), &config.integrations)?
            .with_max_message_bytes(nowstream_bus::max_message_bytes(&config.kafka)),
    );
    let raw_topics = Entity::ALL
        .iter()
        .map(|entity| topics.raw(entity.source_table()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut specs: Vec<TopicSpec> = Entity::ALL
        .iter()
        .map(|entity| {
            TopicSpec::compacted(topics.entity(*entity), settings.topic_partitions)
                .with_replication_factor(settings.replication_factor)
        })
        .collect();
    specs.push(
        TopicSpec::dead_letters(topics.dlq(), settings.topic_partitions)
            .with_replication_factor(settings.replication_factor),
    );
    specs.extend(raw_topics.iter().map(|name| {
        TopicSpec::compacted(name.clone(), config.fetcher.raw_topic_partitions)
            .with_replication_factor(config.fetcher.replication_factor)
    }));
    ensure_topics(&config.kafka, &specs).await?;
    Ok(Prepared {
        topics,
        normalizer,
        raw_topics,
    })
}

/// Runs the normalizer until `shutdown` is cancelled, then settles the outputs in flight
/// (within `normalizer.shutdown_grace`), commits what was acknowledged and returns what it
/// did.
///
/// Registers the readiness component `normalizer.kafka` on `health`: ready while the
/// consumer reads, not ready while Kafka fails and between sessions.
pub async fn run(
    config: Config,
    health: Health,
    shutdown: CancellationToken,
) -> Result<Summary, NormalizerError> {
    let ready = health.component("normalizer.kafka");
    let prepared = prepare(&config).await?;
    let settings = &config.normalizer;
    tracing::info!(
        group = %settings.group_id,
        topics = ?prepared.raw_topics,
        exactly_once = settings.exactly_once,
        "normalizer started"
    );
    // One id for the whole run: a new session's producer then fences the previous one's.
    let transactional_id = transactional_id(settings);
    let mut summary = Summary::default();
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let (session, result) =
            run_session(&config, &prepared, &transactional_id, &health, &shutdown).await;
        summary.add(&session);
        match result {
            Ok(()) => break,
            Err(error) if error.is_transient() && !shutdown.is_cancelled() => {
                tracing::warn!(
                    %error,
                    delay_ms = delay.as_millis() as u64,
                    "Kafka failed; starting over from the committed offsets"
                );
                ready.set_not_ready(format!("restarting after: {error}"));
                summary.restarts += 1;
                metrics::restarted();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
            Err(error) => return Err(error),
        }
    }
    tracing::info!(%summary, "normalizer stopped");
    Ok(summary)
}

/// One consumer, one producer, until shutdown or a failure.
async fn run_session(
    config: &Config,
    prepared: &Prepared,
    transactional_id: &str,
    health: &Health,
    shutdown: &CancellationToken,
) -> (Summary, Result<(), NormalizerError>) {
    let settings = &config.normalizer;
    let ready = health.component("normalizer.kafka");
    let subscribed: Vec<&str> = prepared.raw_topics.iter().map(String::as_str).collect();
    let lag_stop = shutdown.child_token();
    if settings.exactly_once {
        // Offsets are committed only inside transactions; read_committed so that a raw
        // topic written transactionally (fetcher exactly_once) is read as committed.
        let consumer = match AckConsumer::subscribe_with(
            &config.kafka,
            &settings.group_id,
            &subscribed,
            &[
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ]
            .into_iter()
            .chain(static_membership(settings.group_instance_id.as_deref()))
            .collect::<Vec<_>>(),
        ) {
            Ok(consumer) => Arc::new(consumer),
            Err(error) => return (Summary::default(), Err(error.into())),
        };
        let lag = spawn_lag_gauge(
            &config.kafka,
            Arc::clone(&consumer),
            settings.lag_interval,
            lag_stop.clone().cancelled_owned(),
            metrics::consumer_lag,
        );
        let mut pipeline = TransactionalPipeline::new(
            consumer,
            config.kafka.clone(),
            transactional_id.to_owned(),
            Arc::clone(&prepared.normalizer),
            prepared.topics.dlq(),
            settings.clone(),
            ready,
        );
        let result = pipeline.run(shutdown).await;
        lag_stop.cancel();
        let _ = lag.await;
        return (pipeline.summary, result);
    }
    let consumer = match AckConsumer::subscribe_with(
        &config.kafka,
        &settings.group_id,
        &subscribed,
        &static_membership(settings.group_instance_id.as_deref()),
    ) {
        Ok(consumer) => Arc::new(consumer),
        Err(error) => return (Summary::default(), Err(error.into())),
    };
    let producer = match Producer::new(&config.kafka) {
        Ok(producer) => producer,
        Err(error) => return (Summary::default(), Err(error.into())),
    };
    let lag = spawn_lag_gauge(
        &config.kafka,
        Arc::clone(&consumer),
        settings.lag_interval,
        lag_stop.clone().cancelled_owned(),
        metrics::consumer_lag,
    );
    let dlq = DlqWriter::new(producer.clone(), prepared.topics.dlq(), STAGE);
    let mut pipeline = Pipeline::new(
        consumer,
        producer.clone(),
        dlq,
        Arc::clone(&prepared.normalizer),
        settings.max_in_flight,
        settings.shutdown_grace,
        ready,
        None,
    );
    let result = pipeline.run(shutdown).await.map(|_| ());
    lag_stop.cancel();
    let _ = lag.await;
    if let Err(error) = producer.flush(PRODUCER_FLUSH_TIMEOUT) {
        tracing::warn!(%error, "producer did not flush");
    }
    (pipeline.summary, result)
}

/// The configured `transactional.id`, or `<group_id>-<random uuid>`.
fn transactional_id(settings: &nowstream_runtime::NormalizerConfig) -> String {
    settings
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", settings.group_id, uuid::Uuid::new_v4()))
}
