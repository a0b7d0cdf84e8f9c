//! The exactly-once loop (`normalizer.exactly_once`): consume-transform-produce in Kafka
//! transactions.
//!
//! Each batch of inputs becomes one transaction holding its outputs (entities, tombstones,
//! DLQ records) *and* the batch's input offsets (`send_offsets_to_transaction` with the
//! consumer's group metadata). Readers with `isolation.level=read_committed` therefore see a
//! batch's outputs exactly when its inputs count as consumed, never one without the other.
//! Offsets are never committed any other way: auto-commit is off.
//!
//! * A producer fenced by another one with the same `transactional.id` stops the stage with
//!   [`NormalizerError::Fenced`]: re-initialising would fence the other replica back, and two
//!   replicas sharing an id is a deployment error an operator must see.
//! * A transaction that fails is aborted and the *same* batch retried (re-normalized
//!   outputs are identical); a producer whose abort failed is dropped and a fresh one
//!   initialised, which fences the old one and aborts anything it left open.
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
    AckConsumer, ConsumedMessage, DlqWriter, OutRecord, PendingDelivery, Producer,
};
use nowstream_runtime::{KafkaConfig, NormalizerConfig, ReadinessHandle};
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
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
/// Bound on each blocking transaction call, and `transaction.timeout.ms`: how long a dead
/// replica's open transaction can hold back read_committed readers.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
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
    /// Shared with the blocking `send_offsets_to_transaction` call; it is not `Clone`.
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
    producer: Option<Producer>,
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
            producer: None,
            taken: HashMap::new(),
            kafka_is_ready: false,
            summary: Summary::default(),
        }
    }

    /// Runs batches until `shutdown` (the batch being collected is still committed) or a
    /// failure that retrying the batch did not cure.
    pub async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), NormalizerError> {
        // Initialised up front, so a broker without transactions fails at start-up.
        let producer = self.init().await?;
        self.producer = Some(producer);
        self.ready.set_ready();
        self.kafka_is_ready = true;
        loop {
            if let Some(batch) = self.collect(shutdown).await? {
                self.publish(batch).await?;
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
            .ok_or_else(|| self.error("read group metadata", "the consumer is in no group".into()))
    }

    /// Commits the batch in a transaction, retrying the same batch after a failure.
    async fn publish(&mut self, mut batch: Batch) -> Result<(), NormalizerError> {
        let offsets = next_offsets(&batch.inputs)?;
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=MAX_ATTEMPTS {
            match self.transaction(&mut batch, &offsets).await {
                Ok(()) => {
                    self.committed(&batch)?;
                    return Ok(());
                }
                Err(error) => {
                    if let Some(fenced) = self.fencing() {
                        // No abort, no retry: the broker already aborted the transaction, and
                        // a fresh producer would fence the replica that fenced this one.
                        self.producer = None;
                        self.summary.transactions_aborted += 1;
                        metrics::transaction("aborted");
                        return Err(fenced);
                    }
                    self.summary.transactions_aborted += 1;
                    metrics::transaction("aborted");
                    self.abort().await;
                    if attempt == MAX_ATTEMPTS {
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
            }
        }
        Ok(())
    }

    async fn transaction(
        &mut self,
        batch: &mut Batch,
        offsets: &TopicPartitionList,
    ) -> Result<(), NormalizerError> {
        let producer = match &self.producer {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.init().await?;
                self.producer = Some(producer.clone());
                producer
            }
        };
        let rdkafka = producer.rdkafka().clone();
        rdkafka
            .begin_transaction()
            .map_err(|error| self.error("begin", error.to_string()))?;
        let mut pending: Vec<PendingDelivery> = Vec::with_capacity(batch.inputs.len());
        for input in &mut batch.inputs {
            let Decision::Publish(output) = &input.decision else {
                continue;
            };
            let enqueued = producer
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
        let dlq = DlqWriter::new(producer.clone(), self.dlq_topic.clone(), STAGE);
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
        let group = Arc::clone(&batch.group);
        let offsets = offsets.clone();
        let sender = rdkafka.clone();
        tokio::task::spawn_blocking(move || {
            sender.send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
        })
        .await
        .map_err(NormalizerError::TaskFailed)?
        .map_err(|error| self.error("send offsets", error.to_string()))?;
        tokio::task::spawn_blocking(move || rdkafka.commit_transaction(TRANSACTION_TIMEOUT))
            .await
            .map_err(NormalizerError::TaskFailed)?
            .map_err(|error| self.error("commit", error.to_string()))
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

    /// The error to stop with, if another producer fenced this one: librdkafka then holds a
    /// fatal error that fails everything the producer does.
    fn fencing(&self) -> Option<NormalizerError> {
        let producer = self.producer.as_ref()?;
        let (code, reason) = producer.rdkafka().client().fatal_error()?;
        matches!(
            code,
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
        .then(|| NormalizerError::Fenced {
            transactional_id: self.transactional_id.clone(),
            reason,
        })
    }

    /// Aborts the open transaction; a producer that cannot abort is dropped, and the next
    /// attempt initialises a fresh one (which fences it and aborts what it left open).
    async fn abort(&mut self) {
        let Some(producer) = self.producer.take() else {
            return;
        };
        let rdkafka = producer.rdkafka().clone();
        match tokio::task::spawn_blocking(move || rdkafka.abort_transaction(TRANSACTION_TIMEOUT))
            .await
        {
            Ok(Ok(())) => self.producer = Some(producer),
            Ok(Err(error)) => {
                tracing::debug!(%error, "abort failed; the producer is replaced");
            }
            Err(error) => tracing::debug!(%error, "abort task failed; the producer is replaced"),
        }
    }

    async fn init(&self) -> Result<Producer, NormalizerError> {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        let timeout_ms = TRANSACTION_TIMEOUT.as_millis().to_string();
        let producer = Producer::with_overrides(
            &self.kafka,
            &[
                ("transactional.id", self.transactional_id.as_str()),
                ("transaction.timeout.ms", timeout_ms.as_str()),
                ("message.timeout.ms", timeout_ms.as_str()),
            ],
        )?;
        let rdkafka = producer.rdkafka().clone();
        tokio::task::spawn_blocking(move || rdkafka.init_transactions(TRANSACTION_TIMEOUT))
            .await
            .map_err(NormalizerError::TaskFailed)?
            .map_err(|error| self.error("init", error.to_string()))?;
        Ok(producer)
    }

    fn error(&self, step: &'static str, reason: String) -> NormalizerError {
        NormalizerError::Transaction {
            transactional_id: self.transactional_id.clone(),
            step,
            reason,
        }
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
