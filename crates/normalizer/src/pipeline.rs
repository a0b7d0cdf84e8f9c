//! The at-least-once loop: read a raw record, normalize it, produce the output, and
//! acknowledge the input once Kafka acknowledged the output.
//!
//! Invariants:
//!
//! * An input is acknowledged only after its output (entity, tombstone or DLQ record) was
//!   acknowledged by Kafka; the `AckConsumer` then never commits past an unacknowledged
//!   input, whatever order the acknowledgements arrive in.
//! * Outputs are *enqueued* in the order their inputs were read, from this one loop, into an
//!   idempotent producer: all versions of a key come from one input partition and go to one
//!   output partition, so their order is kept. Only the waiting for acknowledgements runs
//!   concurrently.
//! * Finished outputs are handled before new input (`biased;`), and reading stops while
//!   `max_in_flight` outputs are unacknowledged: a slow broker slows reading.
//! * A record that cannot be published goes to the DLQ as a [`DeadLetter`]: scrubbed of its
//!   integration's excluded fields, or a reference only; never the input's bytes or headers.
//!   An output over the producer's `message.max.bytes` is one (`too_large`), caught before it
//!   is produced: retrying it could never succeed, so it must not end the session.
//! * An output Kafka finally refused is never retried out of order: reading stops, the
//!   outputs in flight are settled and the acknowledged prefix committed, and the session
//!   ends with the error. The caller starts a new session, which re-reads from the committed
//!   position, so the refused record and everything after it are produced again, in order.

use std::sync::Arc;
use std::time::Duration;

use nowstream_bus::{
    AckConsumer, AckToken, BusError, ConsumedMessage, DlqWriter, OutRecord, Producer,
};
use nowstream_runtime::ReadinessHandle;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::NormalizerError;
use crate::dead_letter::DeadLetter;
use crate::metrics;
use crate::normalize::{Decision, Normalizer};
use crate::replay::{Disposition, ReplayBound};
use crate::summary::Summary;

/// Pause after the consumer reported an error, so a broker outage does not spin the loop.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How often a replay checks whether it reached its end offsets.
const REPLAY_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// What became of one input, reported by its task.
#[derive(Debug)]
struct Settled {
    token: AckToken,
    read_at: Instant,
    result: Result<Published, BusError>,
}

#[derive(Debug)]
enum Published {
    Output {
        entity: &'static str,
        op: &'static str,
    },
    DeadLettered {
        reason: String,
    },
}

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The shutdown token was cancelled.
    Shutdown,
    /// A replay reached the end offsets it captured at its start.
    ReplayComplete,
}

/// One session of the at-least-once loop: one consumer, one producer.
pub(crate) struct Pipeline {
    pub consumer: Arc<AckConsumer>,
    pub producer: Producer,
    pub dlq: DlqWriter,
    pub normalizer: Arc<Normalizer>,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    pub ready: ReadinessHandle,
    /// Set for a replay: which offsets to normalize, and when it is done.
    pub bound: Option<ReplayBound>,
    pub summary: Summary,
    tasks: JoinSet<Settled>,
    kafka_is_ready: bool,
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer: Arc<AckConsumer>,
        producer: Producer,
        dlq: DlqWriter,
        normalizer: Arc<Normalizer>,
        max_in_flight: usize,
        shutdown_grace: Duration,
        ready: ReadinessHandle,
        bound: Option<ReplayBound>,
    ) -> Self {
        Self {
            consumer,
            producer,
            dlq,
            normalizer,
            max_in_flight,
            shutdown_grace,
            ready,
            bound,
            summary: Summary::default(),
            tasks: JoinSet::new(),
            kafka_is_ready: false,
        }
    }

    /// Runs until `shutdown`, the end of a replay, or a Kafka failure; then settles what is in
    /// flight (within `shutdown_grace`) and commits the acknowledged positions.
    pub async fn run(&mut self, shutdown: &CancellationToken) -> Result<Ending, NormalizerError> {
        let outcome = self.consume(shutdown).await;
        self.drain().await;
        // Commit even after a failure: everything acknowledged so far is safe to skip.
        let committed = self.consumer.commit();
        let ending = outcome?;
        committed?;
        Ok(ending)
    }

    async fn consume(&mut self, shutdown: &CancellationToken) -> Result<Ending, NormalizerError> {
        let mut replay_check = tokio::time::interval(REPLAY_CHECK_INTERVAL);
        replay_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failure: Option<NormalizerError> = None;
        // Subscribed: ready, even while there is nothing to read.
        self.ready.set_ready();
        self.kafka_is_ready = true;
        loop {
            metrics::in_flight(self.tasks.len());
            if self.tasks.is_empty()
                && let Some(error) = failure.take()
            {
                return Err(error);
            }
            let can_read = failure.is_none() && self.tasks.len() < self.max_in_flight;
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    let settled = joined.map_err(NormalizerError::TaskFailed)?;
                    if let Err(error) = self.settle(settled) {
                        failure.get_or_insert(error);
                    }
                }
                () = shutdown.cancelled() => return Ok(Ending::Shutdown),
                _ = replay_check.tick(), if self.bound.is_some() && failure.is_none() => {
                    if self.replay_complete() {
                        return Ok(Ending::ReplayComplete);
                    }
                }
                received = self.consumer.recv(), if can_read => match received {
                    Ok(message) => {
                        if !self.kafka_is_ready {
                            self.ready.set_ready();
                            self.kafka_is_ready = true;
                        }
                        if let Err(error) = self.start(message).await {
                            failure = Some(error);
                        }
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
    }

    fn replay_complete(&mut self) -> bool {
        let Some(bound) = self.bound.as_mut() else {
            return false;
        };
        match bound.check(&self.consumer) {
            Ok(done) => done,
            Err(error) => {
                tracing::debug!(%error, "replay progress not checked this time");
                false
            }
        }
    }

    /// Normalizes one input and starts producing its output (or its DLQ record).
    async fn start(&mut self, message: ConsumedMessage) -> Result<(), NormalizerError> {
        let read_at = Instant::now();
        if let Some(bound) = self.bound.as_mut() {
            match bound.disposition(&message) {
                Disposition::Skip => {
                    self.consumer.ack(&message.token)?;
                    self.summary.skipped += 1;
                    return Ok(());
                }
                Disposition::Replay => bound.started(&message.token),
            }
        }
        self.summary.records_in += 1;
        let table = self
            .normalizer
            .topics()
            .raw_table(&message.topic)
            .unwrap_or("unknown");
        metrics::record_in(table);
        let letter = match self
            .normalizer
            .decide(message.key.as_deref(), message.payload.as_deref())
        {
            Decision::Publish(output) => {
                let enqueued = self
                    .producer
                    .enqueue(OutRecord::new(
                        &output.topic,
                        output.key.as_bytes(),
                        output.value.as_deref(),
                    ))
                    .await;
                match enqueued {
                    Ok(pending) => {
                        let token = message.token;
                        let published = Published::Output {
                            entity: output.entity.name(),
                            op: output.op(),
                        };
                        self.tasks.spawn(async move {
                            let result = pending.acknowledged().await.map(|_| published);
                            Settled {
                                token,
                                read_at,
                                result,
                            }
                        });
                        return Ok(());
                    }
                    // The size check is done before enqueueing; this catches a producer
                    // that counts differently, so the record still cannot loop.
                    Err(error) if error.is_message_too_large() => self.normalizer.too_large(
                        message.key.as_ref().map_or(0, Vec::len),
                        message.payload.as_deref(),
                        &output,
                    ),
                    Err(error) => return Err(error.into()),
                }
            }
            Decision::DeadLetter(letter) => letter,
        };
        warn_dead_lettered(&message, &letter);
        let dlq = self.dlq.clone();
        self.tasks.spawn(async move {
            let result = park(&dlq, &message, letter)
                .await
                .map(|reason| Published::DeadLettered { reason });
            Settled {
                token: message.token,
                read_at,
                result,
            }
        });
        Ok(())
    }

    /// Acknowledges an input whose output Kafka acknowledged; reports a refused output.
    fn settle(&mut self, settled: Settled) -> Result<(), NormalizerError> {
        let Settled {
            token,
            read_at,
            result,
        } = settled;
        let published = result?;
        self.consumer.ack(&token)?;
        if let Some(bound) = self.bound.as_mut() {
            bound.finished(&token);
        }
        let took = read_at.elapsed();
        match published {
            Published::Output { entity, op } => {
                self.summary.records_out += 1;
                if op == "delete" {
                    self.summary.tombstones += 1;
                }
                metrics::record_out(entity, op, took);
            }
            Published::DeadLettered { reason } => {
                self.summary.dead_lettered += 1;
                metrics::dead_lettered(&reason, took);
            }
        }
        Ok(())
    }

    /// Waits for the outputs in flight, within the grace period. Whatever is not settled by
    /// then stays unacknowledged and is normalized again by the next run.
    async fn drain(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = self.tasks.len(),
            "waiting for in-flight outputs to be acknowledged"
        );
        let deadline = Instant::now() + self.shutdown_grace;
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(settled)) => {
                        if let Err(error) = self.settle(settled) {
                            tracing::warn!(%error, "an output was not acknowledged; its input stays uncommitted");
                        }
                    }
                    Some(Err(error)) => tracing::error!(%error, "an output task failed"),
                },
                () = sleep_until(deadline) => {
                    tracing::warn!(
                        in_flight = self.tasks.len(),
                        "grace period over; unacknowledged outputs are normalized again by the next run"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        metrics::in_flight(self.tasks.len());
    }
}

/// Writes a dead letter (never the input's own bytes or headers) and waits for the broker;
/// returns the reason code. A scrubbed letter the broker refuses for its size (a DLQ topic
/// whose `max.message.bytes` is below the producer's) is parked as a reference instead.
pub(crate) async fn park(
    dlq: &DlqWriter,
    message: &ConsumedMessage,
    letter: DeadLetter,
) -> Result<String, BusError> {
    match send_letter(dlq, message, &letter).await {
        Err(error) if error.is_message_too_large() && letter.value.is_some() => {
            tracing::warn!(
                source = %message.position(),
                "the scrubbed dead letter is too large for the DLQ topic; parking a reference"
            );
            let letter = letter.into_reference();
            send_letter(dlq, message, &letter).await?;
            Ok(letter.reason.code)
        }
        Err(error) => Err(error),
        Ok(_) => Ok(letter.reason.code),
    }
}

async fn send_letter(
    dlq: &DlqWriter,
    message: &ConsumedMessage,
    letter: &DeadLetter,
) -> Result<nowstream_bus::Delivered, BusError> {
    let headers = letter.headers();
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_slice()))
        .collect();
    dlq.send_scrubbed(message, letter.value.as_deref(), &letter.reason, &headers)
        .await
}

/// The log line of a record going to the DLQ: where from, why, and what the letter holds.
pub(crate) fn warn_dead_lettered(message: &ConsumedMessage, letter: &DeadLetter) {
    tracing::warn!(
        source = %message.position(),
        reason = %letter.reason.code,
        detail = %letter.reason.detail,
        content = letter.content.as_str(),
        "raw record dead-lettered"
    );
}
