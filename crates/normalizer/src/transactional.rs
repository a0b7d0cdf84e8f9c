//! The exactly-once loop (`normalizer.exactly_once`): consume-transform-produce in Kafka
//! transactions.
//!
//! Each batch of inputs becomes one transaction holding its outputs (entities, tombstones,
//! DLQ records) *and* the batch's input offsets (`send_offsets_to_transaction` with the
//! consumer's group metadata). Readers with `isolation.level=read_committed` therefore see a
//! batch's outputs exactly when its inputs count as consumed, never one without the other.
//! Offsets are never committed any other way: auto-commit is off.
//!
//! * The producer is a [`TransactionalProducer`], which recovers the way every stage does: a
//!   fenced producer stops the stage with [`NormalizerError::Fenced`] (re-initialising would
//!   fence the other replica back, and two replicas sharing an id is a deployment error an
//!   operator must see); a producer whose abort failed, or that hit another fatal error, is
//!   replaced by a fresh one, which aborts anything the old one left open.
//! * A transaction that fails is aborted and the *same* batch retried (re-normalized
//!   outputs are identical).
//! * The group metadata is taken when a batch's first input arrives, so if the group
//!   rebalanced meanwhile, the broker refuses the offsets (KIP-447 generation check) and the
//!   batch is never committed by this replica; after the retries the session ends and the
//!   next one re-reads from the committed offsets.
//! * An input offset at or below one already taken for its partition means the consumer
//!   re-read from the committed position (a rebalance gave the partition back): the batch is
//!   abandoned and the session restarted, so nothing is published twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use nowstream_bus::{
    AckConsumer, ConsumedMessage, DlqWriter, OutRecord, PendingDelivery, TransactionalProducer,
};
use nowstream_runtime::{KafkaConfig, NormalizerConfig, ReadinessHandle};
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::normalize::{Decision, Normalizer};
use crate::pipeline::{park, warn_dead_lettered};
use crate::stage::STAGE;
use crate::summary::Summary;
use crate::{NormalizerError, metrics};

/// Attempts of one batch's transaction before the session is restarted.
const MAX_ATTEMPTS: u32 = 6;
/// First pause between attempts; doubles each time.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Pause after the consumer reported an error, so a broker outage does not spin the loop.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// One input of a batch and what it becomes.
struct Input {
    message: ConsumedMessage,
    read_at: Instant,
    decision: Decision,
}

/// A batch: its inputs and the group metadata its offsets are committed with.
struct Batch {
    inputs: Vec<Input>,
    /// Shared with the blocking `send_offsets` call; it is not `Clone`.
    group: Arc<ConsumerGroupMetadata>,
}

/// One session of the transactional loop.
pub(crate) struct TransactionalPipeline {
    consumer: Arc<AckConsumer>,
    kafka: KafkaConfig,
    transactional_id: String,
    normalizer: Arc<Normalizer>,
    dlq_topic: String,
    settings: NormalizerConfig,
    ready: ReadinessHandle,
    /// Highest offset taken into a batch, per partition, in this session.
    taken: HashMap<(String, i32), i64>,
    kafka_is_ready: bool,
    pub summary: Summary,
}

impl TransactionalPipeline {
    pub fn new(
        consumer: Arc<AckConsumer>,
        kafka: KafkaConfig,
        transactional_id: String,
        normalizer: Arc<Normalizer>,
        dlq_topic: String,
        settings: NormalizerConfig,
        ready: ReadinessHandle,
    ) -> Self {
        Self {
            consumer,
            kafka,
            transactional_id,
            normalizer,
            dlq_topic,
            settings,
            ready,
            taken: HashMap::new(),
            kafka_is_ready: false,
            summary: Summary::default(),
        }
    }

    /// Runs batches until `shutdown` (the batch being collected is still committed) or a
    /// failure that retrying the batch did not cure.
    pub async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), NormalizerError> {
        // Initialised up front, so a broker without transactions fails at start-up.
        let mut producer =
            TransactionalProducer::start(&self.kafka, &self.transactional_id).await?;
        self.ready.set_ready();
        self.kafka_is_ready = true;
        loop {
            if let Some(batch) = self.collect(shutdown).await? {
                self.publish(&mut producer, batch).await?;
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Reads up to `transaction_max_records` inputs, for at most `transaction_linger` after
    /// the first. `None` when shutdown came first.
    async fn collect(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Batch>, NormalizerError> {
        let mut inputs: Vec<Input> = Vec::new();
        let mut group = None;
        let mut deadline: Option<Instant> = None;
        while inputs.len() < self.settings.transaction_max_records {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        if !self.kafka_is_ready {
                            self.ready.set_ready();
                            self.kafka_is_ready = true;
                        }
                        self.take(&message)?;
                        if group.is_none() {
                            group = Some(self.group_metadata()?);
                            deadline = Some(Instant::now() + self.settings.transaction_linger);
                        }
                        self.summary.records_in += 1;
                        let table = self.normalizer.topics().raw_table(&message.topic).unwrap_or("unknown");
                        metrics::record_in(table);
                        let decision = self
                            .normalizer
                            .decide(message.key.as_deref(), message.payload.as_deref());
                        if let Decision::DeadLetter(letter) = &decision {
                            warn_dead_lettered(&message, letter);
                        }
                        inputs.push(Input { message, read_at: Instant::now(), decision });
                        metrics::in_flight(inputs.len());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read from Kafka; trying again");
                        self.ready.set_not_ready(error.to_string());
                        self.kafka_is_ready = false;
                        sleep(CONSUMER_ERROR_PAUSE).await;
                    }
                },
            }
        }
        Ok(group.map(|group| Batch {
            inputs,
            group: Arc::new(group),
        }))
    }

    /// Notes the highest offset taken per partition; a message at or below it was re-read.
    fn take(&mut self, message: &ConsumedMessage) -> Result<(), NormalizerError> {
        let key = (message.topic.clone(), message.partition);
        match self.taken.get(&key) {
            Some(&highest) if message.offset <= highest => Err(NormalizerError::Broker {
                action: "continue the transactional session",
                reason: format!(
                    "{} was read again (the group rebalanced and the partition came back at \
                     its committed offset); abandoning the open batch",
                    message.position()
                ),
            }),
            _ => {
                self.taken.insert(key, message.offset);
                Ok(())
            }
        }
    }

    fn group_metadata(&self) -> Result<ConsumerGroupMetadata, NormalizerError> {
        self.consumer
            .rdkafka()
            .group_metadata()
            .ok_or_else(|| NormalizerError::Broker {
                action: "read the consumer's group metadata",
                reason: "the consumer is in no group".into(),
            })
    }

    /// Commits the batch in a transaction, retrying the same batch after a failure.
    async fn publish(
        &mut self,
        producer: &mut TransactionalProducer,
        mut batch: Batch,
    ) -> Result<(), NormalizerError> {
        let offsets = next_offsets(&batch.inputs)?;
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=MAX_ATTEMPTS {
            let error = match self.transaction(producer, &mut batch, &offsets).await {
                Ok(()) => {
                    self.committed(&batch)?;
                    return Ok(());
                }
                Err(error) => error,
            };
            self.summary.transactions_aborted += 1;
            metrics::transaction("aborted");
            // Fenced: no abort and no retry; the broker already aborted the transaction.
            let error = producer.abort_after(error).await;
            if matches!(error, NormalizerError::Fenced { .. }) || attempt == MAX_ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(
                %error,
                attempt,
                inputs = batch.inputs.len(),
                "transaction failed; aborted, retrying the same batch"
            );
            sleep(delay).await;
            delay *= 2;
        }
        Ok(())
    }

    async fn transaction(
        &self,
        producer: &mut TransactionalProducer,
        batch: &mut Batch,
        offsets: &TopicPartitionList,
    ) -> Result<(), NormalizerError> {
        let transaction = producer.begin().await?;
        let out = transaction.producer();
        let mut pending: Vec<PendingDelivery> = Vec::with_capacity(batch.inputs.len());
        for input in &mut batch.inputs {
            let Decision::Publish(output) = &input.decision else {
                continue;
            };
            let enqueued = out
                .enqueue(OutRecord::new(
                    &output.topic,
                    output.key.as_bytes(),
                    output.value.as_deref(),
                ))
                .await;
            match enqueued {
                Ok(delivery) => pending.push(delivery),
                // Checked before; a producer that counts differently still cannot make
                // the batch fail for good: the input becomes a dead letter, in this
                // attempt and any retry.
                Err(error) if error.is_message_too_large() => {
                    let letter = self.normalizer.too_large(
                        input.message.key.as_ref().map_or(0, Vec::len),
                        input.message.payload.as_deref(),
                        output,
                    );
                    warn_dead_lettered(&input.message, &letter);
                    input.decision = Decision::DeadLetter(letter);
                }
                Err(error) => return Err(error.into()),
            }
        }
        let dlq = DlqWriter::new(out.clone(), self.dlq_topic.clone(), STAGE);
        let dead_letters = batch.inputs.iter().filter_map(|input| {
            let Decision::DeadLetter(letter) = &input.decision else {
                return None;
            };
            Some(park(&dlq, &input.message, letter.clone()))
        });
        let (outputs, dead_letters) = tokio::join!(
            join_all(pending.into_iter().map(PendingDelivery::acknowledged)),
            join_all(dead_letters)
        );
        for delivered in outputs {
            delivered?;
        }
        for parked in dead_letters {
            parked?;
        }
        transaction.send_offsets(offsets, &batch.group).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Bookkeeping once a batch's transaction committed: its inputs are consumed.
    fn committed(&mut self, batch: &Batch) -> Result<(), NormalizerError> {
        self.summary.transactions_committed += 1;
        metrics::transaction("committed");
        for input in &batch.inputs {
            // Keeps the consumer's in-flight count true; with auto-commit off, the stored
            // offsets are never committed outside a transaction.
            self.consumer.ack(&input.message.token)?;
            let took = input.read_at.elapsed();
            match &input.decision {
                Decision::Publish(output) => {
                    self.summary.records_out += 1;
                    if output.value.is_none() {
                        self.summary.tombstones += 1;
                    }
                    metrics::record_out(output.entity.name(), output.op(), took);
                }
                Decision::DeadLetter(letter) => {
                    self.summary.dead_lettered += 1;
                    metrics::dead_lettered(&letter.reason.code, took);
                }
            }
        }
        metrics::in_flight(0);
        Ok(())
    }
}

/// One past the highest offset of each partition in the batch: what its transaction commits.
fn next_offsets(inputs: &[Input]) -> Result<TopicPartitionList, NormalizerError> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for input in inputs {
        let entry = next
            .entry((input.message.topic.as_str(), input.message.partition))
            .or_insert(0);
        *entry = (*entry).max(input.message.offset + 1);
    }
    let mut offsets = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|error| NormalizerError::Broker {
                action: "list the batch's offsets",
                reason: error.to_string(),
            })?;
    }
    Ok(offsets)
}
