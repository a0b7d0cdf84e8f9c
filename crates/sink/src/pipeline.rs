//! The sink's loop: read, batch, dispatch, acknowledge, with backpressure and a clean stop.
//!
//! Invariants:
//!
//! * A message is acknowledged (its offset may be committed) only when SEI answered 2xx for it,
//!   for the record that superseded it within its batch, or when its DLQ record was
//!   acknowledged by Kafka. The `AckConsumer` never commits past an unacknowledged message.
//! * Finished deliveries are handled before new input (`biased;`), and reading stops while
//!   `max_in_flight_batches` batches are outstanding or `max_unacked_messages` records are
//!   unacknowledged: a slow SEI slows reading instead of filling memory.
//! * When SEI refuses the credentials (401/403), the sink parks: it stops reading and sending,
//!   says so once in the log and on `/readyz`, and commits nothing more for the refused
//!   records, so a restart with the right key delivers them.

use std::sync::Arc;

use nowstream_bus::{AckConsumer, ConsumedMessage, DlqWriter};
use nowstream_model::TopicNames;
use nowstream_runtime::{ReadinessHandle, SinkConfig};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::SinkError;
use crate::backoff::Backoff;
use crate::batch::{Batcher, Limits};
use crate::client::SeiClient;
use crate::delivery::{Deliverer, Outcome, Refusal, dead_letter_durably};
use crate::dispatch::Dispatcher;
use crate::lag::Positions;
use crate::metrics;
use crate::readiness::SeiReadiness;
use crate::record::{self, Target, Unreadable};

/// Pause after the consumer reported an error, so a broker outage does not spin the loop.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// What a finished task reports to the loop.
#[derive(Debug)]
enum Report {
    Batch {
        target: Target,
        keys: Vec<String>,
        outcome: Outcome<ConsumedMessage>,
    },
    DeadLettered {
        message: ConsumedMessage,
    },
}

/// Everything the loop works with.
pub(crate) struct Pipeline {
    pub consumer: Arc<AckConsumer>,
    pub topics: TopicNames,
    pub settings: SinkConfig,
    pub deliverer: Arc<Deliverer<SeiClient, DlqWriter>>,
    pub dlq: DlqWriter,
    pub sei: SeiClient,
    pub kafka_ready: ReadinessHandle,
    pub sei_readiness: SeiReadiness,
    /// Where reading stands, for the lag gauge.
    pub positions: Positions,
}

/// The loop's changing state.
struct Running {
    pipeline: Pipeline,
    batcher: Batcher<ConsumedMessage>,
    dispatcher: Dispatcher<ConsumedMessage>,
    tasks: JoinSet<Report>,
    parked: Option<Refusal>,
    kafka_is_ready: bool,
}

impl Pipeline {
    /// Runs until `shutdown` is cancelled, then finishes in-flight batches (within
    /// `shutdown_grace`) and commits.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SinkError> {
        let limits = Limits {
            max_records: self.settings.batch_max_records,
            max_bytes: self.settings.batch_max_bytes,
            linger: self.settings.linger,
        };
        let max_in_flight = self.settings.max_in_flight_batches;
        let mut running = Running {
            pipeline: self,
            batcher: Batcher::new(limits),
            dispatcher: Dispatcher::new(max_in_flight),
            tasks: JoinSet::new(),
            parked: None,
            kafka_is_ready: true,
        };
        running.consume(&shutdown).await?;
        running.drain().await
    }
}

impl Running {
    async fn consume(&mut self, shutdown: &CancellationToken) -> Result<(), SinkError> {
        loop {
            self.dispatch();
            metrics::pressure(
                self.dispatcher.outstanding(),
                self.pipeline.consumer.in_flight(),
            );
            let can_read = self.can_read();
            let deadline = self
                .batcher
                .next_deadline()
                .filter(|_| self.parked.is_none());
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.on_report(joined.map_err(SinkError::TaskFailed)?)?;
                }
                () = shutdown.cancelled() => return Ok(()),
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    for batch in self.batcher.take_due(Instant::now()) {
                        self.dispatcher.push(batch);
                    }
                }
                received = self.pipeline.consumer.recv(), if can_read => match received {
                    Ok(message) => self.on_message(message),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read from Kafka; trying again");
                        self.pipeline.kafka_ready.set_not_ready(error.to_string());
                        self.kafka_is_ready = false;
                        sleep(CONSUMER_ERROR_PAUSE).await;
                    }
                },
            }
        }
    }

    /// Reading goes on only while there is room: backpressure.
    fn can_read(&self) -> bool {
        self.parked.is_none()
            && self.dispatcher.outstanding() < self.pipeline.settings.max_in_flight_batches
            && self.pipeline.consumer.in_flight() < self.pipeline.settings.max_unacked_messages
    }

    fn on_message(&mut self, message: ConsumedMessage) {
        if !self.kafka_is_ready {
            self.pipeline.kafka_ready.set_ready();
            self.kafka_is_ready = true;
        }
        self.pipeline
            .positions
            .read(&message.topic, message.partition, message.offset);
        match record::decode(&self.pipeline.topics, message) {
            Ok(member) => {
                for batch in self.batcher.push(member, Instant::now()) {
                    self.dispatcher.push(batch);
                }
            }
            Err(unreadable) => self.dead_letter(*unreadable),
        }
    }

    /// Parks an unreadable message in the DLQ in the background; it is acknowledged once
    /// Kafka took the DLQ record.
    fn dead_letter(&mut self, unreadable: Unreadable) {
        let Unreadable { message, reason } = unreadable;
        let dlq = self.pipeline.dlq.clone();
        let backoff = Backoff::new(
            self.pipeline.settings.retry_initial_backoff,
            self.pipeline.settings.retry_max_backoff,
        );
        self.tasks.spawn(async move {
            dead_letter_durably(&dlq, &message, &reason, backoff).await;
            Report::DeadLettered { message }
        });
    }

    /// Starts every batch that may go now.
    fn dispatch(&mut self) {
        if self.parked.is_some() {
            return;
        }
        while let Some(batch) = self.dispatcher.next_ready() {
            let deliverer = Arc::clone(&self.pipeline.deliverer);
            let target = batch.target.clone();
            let keys = batch.keys();
            self.tasks.spawn(async move {
                let outcome = deliverer.deliver(batch).await;
                Report::Batch {
                    target,
                    keys,
                    outcome,
                }
            });
        }
    }

    fn on_report(&mut self, report: Report) -> Result<(), SinkError> {
        match report {
            Report::Batch {
                target,
                keys,
                outcome,
            } => {
                self.dispatcher.finished(&target, &keys);
                for message in &outcome.done {
                    self.pipeline.consumer.ack(&message.token)?;
                }
                if let Some(refusal) = outcome.refused {
                    self.park(&target, refusal);
                }
            }
            Report::DeadLettered { message } => self.pipeline.consumer.ack(&message.token)?,
        }
        Ok(())
    }

    /// Stops reading and sending after SEI refused the credentials (or answered something
    /// only an operator can fix). Logged once: every other batch gets the same answer.
    fn park(&mut self, target: &Target, refusal: Refusal) {
        if self.parked.is_some() {
            return;
        }
        let sei = &self.pipeline.sei;
        let what = match refusal.status {
            401 => "SEI rejected the API key (401)".to_owned(),
            403 => "SEI refused the API key for this tenant (403)".to_owned(),
            status => format!("SEI answered {status}, which no retry can fix"),
        };
        self.pipeline.sei_readiness.refuse(format!(
            "{what} for tenant {} at {}: {}; fix the configuration and restart",
            sei.tenant(),
            sei.display_url(),
            refusal.detail
        ));
        tracing::error!(
            tenant = %sei.tenant(),
            url = %sei.display_url(),
            endpoint = %target,
            status = refusal.status,
            detail = %refusal.detail,
            "{what}: the sink stopped consuming and commits nothing for the refused records; \
             check sei.api_key, sei.tenant and sei.url, then restart"
        );
        self.parked = Some(refusal);
    }

    /// Sends what is open, waits for in-flight batches within the grace period, commits.
    async fn drain(mut self) -> Result<(), SinkError> {
        if self.parked.is_none() {
            for batch in self.batcher.take_all() {
                self.dispatcher.push(batch);
            }
        }
        let deadline = Instant::now() + self.pipeline.settings.shutdown_grace;
        tracing::info!(
            batches = self.dispatcher.outstanding(),
            records = self.pipeline.consumer.in_flight(),
            "shutting down: finishing in-flight batches"
        );
        loop {
            self.dispatch();
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = self.tasks.join_next() => {
                    self.on_report(joined.map_err(SinkError::TaskFailed)?)?;
                }
                () = sleep_until(deadline) => {
                    tracing::warn!(
                        batches = self.dispatcher.outstanding(),
                        "shutdown grace period over; unfinished batches are not committed and \
                         will be sent again by the next run"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        self.pipeline.consumer.commit()?;
        tracing::info!(
            unacknowledged = self.pipeline.consumer.in_flight(),
            "sink stopped; acknowledged positions committed"
        );
        Ok(())
    }
}
