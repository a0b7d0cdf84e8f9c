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
//! * When SEI refuses a batch in a way no split or DLQ can fix (401, 403, a 400 that names no
//!   record or is not the contract's error at all, an unexpected status), the sink parks: it
//!   stops reading and sending, says so once in the log and on `/readyz`, dead-letters nothing
//!   and commits nothing more for the refused records. It keeps the refused records and sends
//!   the first of them again with back-off (a *probe*); once SEI takes it, everything held goes
//!   back in front of the queue and the sink runs on. A restart delivers them as well.

use std::sync::Arc;

use nowstream_bus::{AckConsumer, ConsumedMessage, DlqWriter};
use nowstream_model::TopicNames;
use nowstream_runtime::{ReadinessHandle, SinkConfig};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::SinkError;
use crate::backoff::Backoff;
use crate::batch::{Batch, Batcher, Limits};
use crate::client::SeiClient;
use crate::delivery::{Deliverer, Outcome, Refusal, RefusalReason, dead_letter_durably};
use crate::dispatch::Dispatcher;
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
        /// Sent while parked, outside the dispatcher's accounting.
        probe: bool,
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
}

/// The loop's changing state.
struct Running {
    pipeline: Pipeline,
    batcher: Batcher<ConsumedMessage>,
    dispatcher: Dispatcher<ConsumedMessage>,
    tasks: JoinSet<Report>,
    parked: Option<Parked>,
    kafka_is_ready: bool,
}

/// The sink after a refusal: not reading, not sending, except one probe at a time.
struct Parked {
    /// The refusal that parked it (what the log and `/readyz` said).
    refusal: Refusal,
    /// Refused batches, oldest first: the first is the next probe; all go back in front of
    /// the dispatcher's queues once SEI takes it.
    held: std::collections::VecDeque<Batch<ConsumedMessage>>,
    /// Pauses between probes.
    backoff: Backoff,
    /// When the next probe may go.
    next_probe: Instant,
    /// Whether a probe is being delivered.
    probing: bool,
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
            let next_probe = self
                .parked
                .as_ref()
                .filter(|parked| !parked.probing && !parked.held.is_empty())
                .map(|parked| parked.next_probe);
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
                // The probe goes out at the top of the loop (`dispatch`).
                () = sleep_until(next_probe.unwrap_or_else(Instant::now)), if next_probe.is_some() => {}
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

    /// Starts every batch that may go now; while parked, only a probe that is due.
    fn dispatch(&mut self) {
        if let Some(parked) = &mut self.parked {
            if parked.probing || Instant::now() < parked.next_probe {
                return;
            }
            match parked.held.pop_front() {
                Some(batch) => {
                    parked.probing = true;
                    self.spawn_delivery(batch, true);
                    return;
                }
                // Nothing left to probe with: nothing is held back either.
                None => self.resume(),
            }
        }
        while let Some(batch) = self.dispatcher.next_ready() {
            self.spawn_delivery(batch, false);
        }
    }

    fn spawn_delivery(&mut self, batch: Batch<ConsumedMessage>, probe: bool) {
        let deliverer = Arc::clone(&self.pipeline.deliverer);
        let target = batch.target.clone();
        let keys = batch.keys();
        self.tasks.spawn(async move {
            let outcome = deliverer.deliver(batch).await;
            Report::Batch {
                target,
                keys,
                outcome,
                probe,
            }
        });
    }

    fn on_report(&mut self, report: Report) -> Result<(), SinkError> {
        match report {
            Report::Batch {
                target,
                keys,
                outcome,
                probe,
            } => {
                if !probe {
                    self.dispatcher.finished(&target, &keys);
                }
                for message in &outcome.done {
                    self.pipeline.consumer.ack(&message.token)?;
                }
                match outcome.refused {
                    Some(refusal) => {
                        let unsent = Batch {
                            target: target.clone(),
                            ops: outcome.unsent,
                        };
                        self.park(&target, refusal, unsent, probe);
                    }
                    None if probe => self.resume(),
                    None => {}
                }
            }
            Report::DeadLettered { message } => self.pipeline.consumer.ack(&message.token)?,
        }
        Ok(())
    }

    /// Stops reading and sending after SEI refused a batch in a way only an operator (or
    /// SEI's side) can fix, and keeps the refused records for the probe. Logged once per
    /// parking: every other in-flight batch gets the same answer.
    fn park(
        &mut self,
        target: &Target,
        refusal: Refusal,
        unsent: Batch<ConsumedMessage>,
        probe: bool,
    ) {
        if let Some(parked) = &mut self.parked {
            if !unsent.ops.is_empty() {
                if probe {
                    // The probe's records stay the first to be tried again.
                    parked.held.push_front(unsent);
                } else {
                    parked.held.push_back(unsent);
                }
            }
            if probe {
                parked.probing = false;
                let delay = parked.backoff.next_delay(None);
                parked.next_probe = Instant::now() + delay;
                let attempts = parked.backoff.failures();
                // One line per doubling, so a long refusal does not flood the log.
                if attempts.is_power_of_two() {
                    tracing::warn!(
                        endpoint = %target, status = refusal.status, reason = refusal.reason.label(),
                        detail = %refusal.detail, attempts, delay_ms = delay.as_millis() as u64,
                        "SEI still refuses the parked batch; trying again later"
                    );
                }
            }
            return;
        }
        let sei = &self.pipeline.sei;
        let what = match refusal.reason {
            RefusalReason::Unauthorized => "SEI rejected the API key (401)".to_owned(),
            RefusalReason::Forbidden => "SEI refused the API key for this tenant (403)".to_owned(),
            RefusalReason::ForeignBadRequest => "SEI answered 400 with a body that is not the \
                 contract's error (a proxy or WAF in front of SEI?)"
                .to_owned(),
            RefusalReason::ContractBadRequest => {
                "SEI answered 400 without naming a record of the batch (the sink and SEI \
                 disagree on the contract)"
                    .to_owned()
            }
            RefusalReason::UnexpectedStatus => {
                format!("SEI answered {}, which no retry can fix", refusal.status)
            }
        };
        self.pipeline.sei_readiness.refuse(format!(
            "{what} for tenant {} at {}: {}; parked, trying the batch again with back-off",
            sei.tenant(),
            sei.display_url(),
            refusal.detail
        ));
        tracing::error!(
            tenant = %sei.tenant(),
            url = %sei.display_url(),
            endpoint = %target,
            status = refusal.status,
            reason = refusal.reason.label(),
            detail = %refusal.detail,
            "{what}: the sink stopped consuming, dead-letters and commits nothing for the refused \
             records, and sends them again with back-off until SEI takes them; check sei.api_key, \
             sei.tenant, sei.url and whatever stands between the sink and SEI"
        );
        metrics::parked(true);
        let mut backoff = Backoff::new(
            self.pipeline.settings.retry_initial_backoff,
            self.pipeline.settings.retry_max_backoff,
        );
        let next_probe = Instant::now() + backoff.next_delay(None);
        let held = if unsent.ops.is_empty() {
            std::collections::VecDeque::new()
        } else {
            std::collections::VecDeque::from([unsent])
        };
        self.parked = Some(Parked {
            refusal,
            held,
            backoff,
            next_probe,
            probing: false,
        });
    }

    /// SEI took the probe: the held batches go back in front of their queues, in order, and
    /// reading and sending resume.
    fn resume(&mut self) {
        let Some(mut parked) = self.parked.take() else {
            return;
        };
        while let Some(batch) = parked.held.pop_back() {
            self.dispatcher.requeue(batch);
        }
        self.pipeline.sei_readiness.resume();
        metrics::parked(false);
        tracing::info!(
            status = parked.refusal.status,
            reason = parked.refusal.reason.label(),
            refused_probes = parked.backoff.failures().saturating_sub(1),
            "SEI took the batch it had refused; the sink runs on"
        );
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
            // No new probe while stopping; a probe already out may still resume the rest.
            if self.parked.is_none() {
                self.dispatch();
            }
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
