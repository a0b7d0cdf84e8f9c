//! A Kafka transactional producer and the one recovery rule every stage follows.
//!
//! A stage that writes in transactions (`fetcher.exactly_once`, `normalizer.exactly_once`)
//! does, per unit of work:
//!
//! ```text
//! let transaction = producer.begin().await?;          // a fresh producer first, if needed
//! …enqueue records on transaction.producer(), await their acknowledgements…
//! transaction.send_offsets(&offsets, &group).await?;  // consume-transform-produce only
//! transaction.commit().await?;
//! // on any error of the above:
//! return Err(producer.abort_after(error).await);
//! ```
//!
//! What [`TransactionalProducer::abort_after`] does, and why:
//!
//! * **Fenced** (another producer initialised the same `transactional.id`): nothing is
//!   aborted and nothing is ever initialised again under this id; every later call fails at
//!   once with [`TransactionError::Fenced`], so the stage stops and names the fencing. The
//!   broker already aborted the open transaction, and a replacement would in turn fence the
//!   producer that now owns the id (another replica that took the work over, or a second
//!   replica deployed with the same id): two owners fencing each other publish twice.
//! * **Any other fatal error** (the producer is unusable, e.g. an idempotence sequence
//!   error): the producer is **replaced**. A fresh producer's `init_transactions` bumps the
//!   epoch, which aborts whatever the old one left open.
//! * **An abortable error** (a refused commit, a failed delivery, a refused offset commit):
//!   the transaction is aborted and the producer kept; if the abort itself fails, the
//!   producer is replaced as above.
//!
//! The replacement is initialised at once, not at the next `begin`: a caller may read
//! `read_committed` before its next transaction (the fetcher reloads its checkpoint), and an
//! open transaction would hold that read back for up to [`TRANSACTION_TIMEOUT`].
//!
//! Every step that waits for the broker (`init`, `begin`, `send offsets`, `commit`, `abort`)
//! runs on the blocking pool: librdkafka's transactional calls block the calling thread for up
//! to their timeout, which would stall every task on an async worker thread.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;

use nowstream_runtime::KafkaConfig;

use crate::{BusError, Producer};

/// Bound on each blocking transaction call, and the producer's `transaction.timeout.ms`: how
/// long a dead producer's open transaction can hold back `read_committed` readers.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A step of a transaction failed, or the producer was fenced.
///
/// The rdkafka error stays the [`source`](std::error::Error::source) of a failed step, so a
/// caller can ask librdkafka's own questions: [`is_fatal`](Self::is_fatal),
/// [`is_retriable`](Self::is_retriable), [`txn_requires_abort`](Self::txn_requires_abort).
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// A step of the transaction protocol failed.
    #[error("Kafka transaction {transactional_id}: {step} failed: {source}")]
    Step {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// `init`, `begin`, `send offsets`, `commit` or `abort`.
        step: &'static str,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// librdkafka refused to create the producer (its configuration).
    #[error("Kafka transaction {transactional_id}: {source}")]
    Client {
        /// The producer's `transactional.id`.
        transactional_id: String,
        #[source]
        source: BusError,
    },
    /// Another producer initialised the same `transactional.id`; this one can commit nothing
    /// any more and is never initialised again.
    #[error(
        "Kafka transaction {transactional_id}: fenced: another producer initialised the same \
         transactional.id ({reason})"
    )]
    Fenced {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// The blocking task running a step panicked: a bug.
    #[error("Kafka transaction {transactional_id}: the task running {step} failed: {source}")]
    Task {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// The step the task ran.
        step: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl TransactionError {
    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        match self {
            Self::Step {
                transactional_id, ..
            }
            | Self::Client {
                transactional_id, ..
            }
            | Self::Fenced {
                transactional_id, ..
            }
            | Self::Task {
                transactional_id, ..
            } => transactional_id,
        }
    }

    /// librdkafka's error of the failed step, if a step failed.
    pub fn kafka_error(&self) -> Option<&KafkaError> {
        match self {
            Self::Step { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether another producer fenced this one.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// Whether the producer is unusable: fenced, or librdkafka marked the error fatal.
    pub fn is_fatal(&self) -> bool {
        self.is_fenced()
            || self
                .transaction_error()
                .is_some_and(|error| error.is_fatal())
    }

    /// Whether librdkafka says the same step may simply be tried again.
    pub fn is_retriable(&self) -> bool {
        self.transaction_error()
            .is_some_and(|error| error.is_retriable())
    }

    /// Whether librdkafka says the transaction must be aborted before anything else.
    pub fn txn_requires_abort(&self) -> bool {
        self.transaction_error()
            .is_some_and(|error| error.txn_requires_abort())
    }

    fn transaction_error(&self) -> Option<&rdkafka::error::RDKafkaError> {
        match self.kafka_error()? {
            KafkaError::Transaction(error) => Some(error),
            _ => None,
        }
    }
}

/// A producer with a `transactional.id`, replaced after a fatal or unabortable failure and
/// retired for good once fenced (see the module documentation).
pub struct TransactionalProducer {
    kafka: KafkaConfig,
    transactional_id: String,
    /// `None` after a producer was dropped and its replacement could not be initialised yet:
    /// the next [`begin`](Self::begin) tries again.
    producer: Option<Producer>,
    /// Why the broker fenced this id, once it did.
    fenced: Option<String>,
}

impl std::fmt::Debug for TransactionalProducer {
    // KafkaConfig may hold SASL credentials; only the id is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.transactional_id)
            .field("fenced", &self.fenced)
            .finish_non_exhaustive()
    }
}

/// One open transaction: enqueue its records on [`producer`](Self::producer), then
/// [`commit`](Self::commit) it.
#[derive(Debug)]
pub struct Transaction {
    producer: Producer,
    transactional_id: String,
}

impl TransactionalProducer {
    /// Creates the producer and initialises its transactions now, so a broker without
    /// transactions (or an id the principal may not use) fails at start-up, not at the first
    /// write. Initialising fences any earlier producer with the same id and aborts what it
    /// left open.
    pub async fn start(
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, TransactionError> {
        let mut started = Self {
            kafka: kafka.clone(),
            transactional_id: transactional_id.to_owned(),
            producer: None,
            fenced: None,
        };
        started.producer = Some(started.init().await?);
        Ok(started)
    }

    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Begins a transaction, first initialising a replacement producer if the last one was
    /// dropped. Fails at once when the id was fenced.
    pub async fn begin(&mut self) -> Result<Transaction, TransactionError> {
        if let Some(reason) = &self.fenced {
            return Err(self.fenced_error(reason.clone()));
        }
        let producer = match &self.producer {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.init().await?;
                self.producer = Some(producer.clone());
                producer
            }
        };
        let rdkafka = producer.rdkafka().clone();
        blocking(&self.transactional_id, "begin", move || {
            rdkafka.begin_transaction()
        })
        .await?;
        Ok(Transaction {
            producer,
            transactional_id: self.transactional_id.clone(),
        })
    }

    /// Ends a transaction that failed at any step (or could not begin) and returns the error
    /// to report: [`TransactionError::Fenced`], converted, when the producer was fenced;
    /// `error` otherwise, once the transaction was aborted or the producer replaced.
    pub async fn abort_after<E: From<TransactionError>>(&mut self, error: E) -> E {
        match self.recover().await {
            Ok(()) => error,
            Err(fenced) => fenced.into(),
        }
    }

    async fn recover(&mut self) -> Result<(), TransactionError> {
        if let Some(reason) = &self.fenced {
            return Err(self.fenced_error(reason.clone()));
        }
        // No producer: nothing is open; the next `begin` initialises one.
        let Some(producer) = self.producer.take() else {
            return Ok(());
        };
        self.stop_if_fenced(&producer)?;
        match producer.rdkafka().client().fatal_error() {
            Some((code, reason)) => tracing::debug!(
                transactional_id = %self.transactional_id,
                %code,
                %reason,
                "the transactional producer hit a fatal error; it is replaced"
            ),
            None => {
                let rdkafka = producer.rdkafka().clone();
                let aborted = blocking(&self.transactional_id, "abort", move || {
                    rdkafka.abort_transaction(TRANSACTION_TIMEOUT)
                })
                .await;
                match aborted {
                    Ok(()) => {
                        self.producer = Some(producer);
                        return Ok(());
                    }
                    Err(error) => {
                        self.stop_if_fenced(&producer)?;
                        tracing::debug!(%error, "abort failed; the producer is replaced");
                    }
                }
            }
        }
        drop(producer);
        match self.init().await {
            Ok(fresh) => self.producer = Some(fresh),
            Err(error) => tracing::warn!(
                transactional_id = %self.transactional_id,
                %error,
                "cannot initialise a new transactional producer; the next transaction tries again"
            ),
        }
        Ok(())
    }

    /// Retires the id for good if the broker fenced `producer`: librdkafka then holds a fatal
    /// error with one of the fencing codes.
    fn stop_if_fenced(&mut self, producer: &Producer) -> Result<(), TransactionError> {
        let Some((code, reason)) = producer.rdkafka().client().fatal_error() else {
            return Ok(());
        };
        if !matches!(
            code,
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        ) {
            return Ok(());
        }
        self.fenced = Some(reason.clone());
        Err(self.fenced_error(reason))
    }

    fn fenced_error(&self, reason: String) -> TransactionError {
        TransactionError::Fenced {
            transactional_id: self.transactional_id.clone(),
            reason,
        }
    }

    async fn init(&self) -> Result<Producer, TransactionError> {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        let timeout_ms = TRANSACTION_TIMEOUT.as_millis().to_string();
        let producer = Producer::with_overrides(
            &self.kafka,
            &[
                ("transactional.id", self.transactional_id.as_str()),
                ("transaction.timeout.ms", timeout_ms.as_str()),
                ("message.timeout.ms", timeout_ms.as_str()),
            ],
        )
        .map_err(|source| TransactionError::Client {
            transactional_id: self.transactional_id.clone(),
            source,
        })?;
        let rdkafka = producer.rdkafka().clone();
        blocking(&self.transactional_id, "init", move || {
            rdkafka.init_transactions(TRANSACTION_TIMEOUT)
        })
        .await?;
        Ok(producer)
    }
}

impl Transaction {
    /// The producer to enqueue the transaction's records on (and to build a
    /// [`DlqWriter`](crate::DlqWriter) on, so dead letters join the transaction).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Adds consumed input offsets to the transaction (consume-transform-produce): they count
    /// as consumed exactly when the outputs commit. `offsets` are the *next* offsets to read;
    /// `group` is the consumer's group metadata, taken when the inputs were read, so a
    /// rebalance in between makes the broker refuse them (KIP-447).
    pub async fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: &Arc<ConsumerGroupMetadata>,
    ) -> Result<(), TransactionError> {
        let rdkafka = self.producer.rdkafka().clone();
        let offsets = offsets.clone();
        let group = Arc::clone(group);
        blocking(&self.transactional_id, "send offsets", move || {
            rdkafka.send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
        })
        .await
    }

    /// Commits the transaction: every record enqueued in it becomes visible to
    /// `read_committed` readers at once.
    pub async fn commit(self) -> Result<(), TransactionError> {
        let rdkafka = self.producer.rdkafka().clone();
        blocking(&self.transactional_id, "commit", move || {
            rdkafka.commit_transaction(TRANSACTION_TIMEOUT)
        })
        .await
    }
}

/// Runs one transactional call on the blocking pool.
async fn blocking<T: Send + 'static>(
    transactional_id: &str,
    step: &'static str,
    call: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> Result<T, TransactionError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|source| TransactionError::Task {
            transactional_id: transactional_id.to_owned(),
            step,
            source,
        })?
        .map_err(|source| TransactionError::Step {
            transactional_id: transactional_id.to_owned(),
            step,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_keeps_librdkafkas_error_as_its_source() {
        let error = TransactionError::Step {
            transactional_id: "normalizer-0".into(),
            step: "commit",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTransactionalState),
        };
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source, error.kafka_error().map(ToString::to_string));
        assert!(error.to_string().contains("commit failed"), "{error}");
        assert!(!error.is_fenced() && !error.is_fatal());
    }

    #[test]
    fn fencing_is_fatal_and_names_the_transactional_id() {
        let error = TransactionError::Fenced {
            transactional_id: "fetcher-4711:incident".into(),
            reason: "producer fenced by a newer instance".into(),
        };
        assert!(error.is_fenced() && error.is_fatal());
        assert!(!error.is_retriable() && !error.txn_requires_abort());
        assert!(
            error.to_string().contains("fetcher-4711:incident"),
            "{error}"
        );
        assert_eq!(error.transactional_id(), "fetcher-4711:incident");
    }
}
