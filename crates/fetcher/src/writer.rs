//! Writes one page of raw records and then the unit's checkpoint.
//!
//! At-least-once (default): the records are produced and acknowledged first, the checkpoint
//! after, so a checkpoint never covers a record Kafka does not have. A crash between the two
//! re-publishes the page on restart; keyed, versioned upserts downstream absorb that.
//!
//! Exactly-once (`fetcher.exactly_once`): records and checkpoint go in one Kafka transaction
//! from a producer whose `transactional.id` is derived from the unit, so a unit's new owner
//! fences its previous owner's unfinished transaction. A writer that was fenced stays fenced:
//! it never initialises its id again, since that would in turn fence the new owner and let a
//! replica with a stale checkpoint publish pages twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;

use nowstream_bus::{OutRecord, Producer};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;

const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A record ready to produce: topic, key and encoded value.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
}

impl Encoded {
    fn out(&self) -> OutRecord<'_> {
        OutRecord::new(&self.topic, self.key.as_bytes(), Some(&self.value))
    }
}

/// A record for the fetcher's DLQ: an encoded value plus the DLQ headers.
#[derive(Debug, Clone)]
pub struct Lettered {
    pub record: Encoded,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl Lettered {
    /// The headers as `OutRecord` borrows them.
    fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect()
    }
}

/// Queues `letters` on `producer`, adding their pending deliveries to `pending`.
async fn enqueue_letters(
    producer: &Producer,
    letters: &[Lettered],
    pending: &mut Vec<nowstream_bus::PendingDelivery>,
) -> Result<(), FetchError> {
    for letter in letters {
        let headers = letter.header_refs();
        let out = letter.record.out().with_headers(&headers);
        pending.push(producer.enqueue(out).await?);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub enum PageWriter {
    AtLeastOnce(Producer),
    Transactional(Arc<TransactionalWriter>),
}

/// A transactional producer that is rebuilt after any failed transaction: some transaction
/// errors leave a producer unusable (fenced, fatal), and `init_transactions` on a fresh one
/// aborts whatever the old one left open.
#[derive(Debug)]
pub struct TransactionalWriter {
    kafka: KafkaConfig,
    transactional_id: String,
    producer: Mutex<Option<Producer>>,
    /// Set once the broker fenced this id: every later write fails at once.
    fenced: AtomicBool,
}

impl PageWriter {
    /// A transactional writer for one unit; `transactional_id` must be stable per unit.
    pub async fn transactional(
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, FetchError> {
        let writer = TransactionalWriter {
            kafka: kafka.clone(),
            transactional_id: transactional_id.to_owned(),
            producer: Mutex::new(None),
            fenced: AtomicBool::new(false),
        };
        // Initialise now, so configuration problems show at start-up, not at the first page.
        let producer = writer.init().await?;
        *writer.producer.lock().await = Some(producer);
        Ok(Self::Transactional(Arc::new(writer)))
    }

    /// Produces `records`, then `checkpoint`; returns once Kafka has all of them.
    pub async fn write(&self, records: &[Encoded], checkpoint: &Encoded) -> Result<(), FetchError> {
        self.write_page(records, &[], checkpoint).await
    }

    /// Produces `records` and the page's dead `letters`, then `checkpoint`: the checkpoint
    /// moves past a dead-lettered row only once the DLQ has it (in exactly-once mode, inside
    /// the same transaction).
    pub async fn write_page(
        &self,
        records: &[Encoded],
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        match self {
            Self::AtLeastOnce(producer) => {
                let mut pending = Vec::with_capacity(records.len() + letters.len());
                for record in records {
                    pending.push(producer.enqueue(record.out()).await?);
                }
                enqueue_letters(producer, letters, &mut pending).await?;
                for delivery in pending {
                    delivery.acknowledged().await?;
                }
                producer.send(checkpoint.out()).await?;
                Ok(())
            }
            Self::Transactional(writer) => writer.write(records, letters, checkpoint).await,
        }
    }
}

impl TransactionalWriter {
    async fn init(&self) -> Result<Producer, FetchError> {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms; a minute bounds how
        // long a dead owner's open transaction blocks read_committed consumers.
        let producer = Producer::with_overrides(
            &self.kafka,
            &[
                ("transactional.id", self.transactional_id.as_str()),
                ("transaction.timeout.ms", "60000"),
                ("message.timeout.ms", "60000"),
            ],
        )?;
        let rdkafka = producer.rdkafka().clone();
        tokio::task::spawn_blocking(move || rdkafka.init_transactions(TRANSACTION_TIMEOUT))
            .await
            .map_err(|error| self.error("init", error.to_string()))?
            .map_err(|error| self.error("init", error.to_string()))?;
        Ok(producer)
    }

    async fn write(
        &self,
        records: &[Encoded],
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        let mut slot = self.producer.lock().await;
        if self.fenced.load(Ordering::Acquire) {
            return Err(self.fenced_error("fenced earlier".into()));
        }
        let producer = match slot.take() {
            Some(producer) => producer,
            None => self.init().await?,
        };
        let result = self
            .transaction(&producer, records, letters, checkpoint)
            .await;
        let Err(error) = result else {
            *slot = Some(producer);
            return Ok(());
        };
        if let Some(reason) = fencing(&producer) {
            self.fenced.store(true, Ordering::Release);
            return Err(self.fenced_error(reason));
        }
        let rdkafka = producer.rdkafka().clone();
        let aborted =
            tokio::task::spawn_blocking(move || rdkafka.abort_transaction(TRANSACTION_TIMEOUT))
                .await;
        if let Some(reason) = fencing(&producer) {
            self.fenced.store(true, Ordering::Release);
            return Err(self.fenced_error(reason));
        }
        match aborted {
            Ok(Ok(())) => *slot = Some(producer),
            // A producer that cannot abort is replaced now rather than at the next page: the
            // unit reloads its checkpoint before that page, and the new producer's
            // `init_transactions` ends the open transaction that would hold the load back.
            _ => {
                drop(producer);
                match self.init().await {
                    Ok(fresh) => *slot = Some(fresh),
                    Err(init_error) => {
                        tracing::warn!(transactional_id = %self.transactional_id, error = %init_error, "cannot initialise a new transactional producer; the next page tries again");
                    }
                }
            }
        }
        Err(error)
    }

    fn fenced_error(&self, reason: String) -> FetchError {
        FetchError::Fenced {
            transactional_id: self.transactional_id.clone(),
            reason,
        }
    }

    async fn transaction(
        &self,
        producer: &Producer,
        records: &[Encoded],
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        let rdkafka = producer.rdkafka().clone();
        rdkafka
            .begin_transaction()
            .map_err(|error| self.error("begin", error.to_string()))?;
        let mut pending = Vec::with_capacity(records.len() + letters.len() + 1);
        for record in records {
            pending.push(producer.enqueue(record.out()).await?);
        }
        enqueue_letters(producer, letters, &mut pending).await?;
        pending.push(producer.enqueue(checkpoint.out()).await?);
        for delivery in pending {
            delivery.acknowledged().await?;
        }
        tokio::task::spawn_blocking(move || rdkafka.commit_transaction(TRANSACTION_TIMEOUT))
            .await
            .map_err(|error| self.error("commit", error.to_string()))?
            .map_err(|error| self.error("commit", error.to_string()))
    }

    fn error(&self, step: &str, reason: String) -> FetchError {
        transaction_error(&self.transactional_id, step, reason)
    }
}

/// The reason, if `producer` was fenced by another producer with its `transactional.id`: the
/// broker then fails everything it does with a fatal error.
fn fencing(producer: &Producer) -> Option<String> {
    let (code, reason) = producer.rdkafka().client().fatal_error()?;
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
    .then_some(reason)
}

fn transaction_error(id: &str, step: &str, reason: String) -> FetchError {
    FetchError::Transaction {
        transactional_id: id.to_owned(),
        step: step.to_owned(),
        reason,
    }
}
