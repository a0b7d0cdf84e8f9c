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
//!
//! A page Kafka did not take (a broker died, a partition leader moved, a transaction was
//! aborted) is written again in place, a few times with growing pauses, before the unit gives
//! up and starts over from its checkpoint: losing one broker of a cluster is routine and must
//! not restart the unit (nor re-fetch the page from ServiceNow).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use nowstream_bus::{BusError, OutRecord, Producer, TransactionError, TransactionalProducer};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;

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
    /// One unit's transactional producer ([`nowstream_bus::transactional`] says how it
    /// recovers); the lock keeps one page's transaction at a time.
    Transactional(Arc<Mutex<TransactionalProducer>>),
}

impl PageWriter {
    /// A transactional writer for one unit; `transactional_id` must be stable per unit.
    /// Initialised now, so configuration problems show at start-up, not at the first page.
    pub async fn transactional(
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, FetchError> {
        let producer = TransactionalProducer::start(kafka, transactional_id).await?;
        Ok(Self::Transactional(Arc::new(Mutex::new(producer))))
    }

    /// Produces `records`, then `checkpoint`; returns once Kafka has all of them.
    pub async fn write(&self, records: &[Encoded], checkpoint: &Encoded) -> Result<(), FetchError> {
        self.write_page(records, &[], checkpoint).await
    }

    /// Produces `records` and the page's dead `letters`, then `checkpoint`: the checkpoint
    /// moves past a dead-lettered row only once the DLQ has it (in exactly-once mode, inside
    /// the same transaction). A write Kafka failed for a passing reason is tried again (see
    /// [`WRITE_ATTEMPTS`]); the records written twice are the same versions, which keyed,
    /// versioned upserts absorb (and an aborted transaction's records nobody reads).
    pub async fn write_page(
        &self,
        records: &[Encoded],
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            match self.write_page_once(records, letters, checkpoint).await {
                Err(error) if attempt < WRITE_ATTEMPTS && is_passing(&error) => {
                    tracing::warn!(
                        %error,
                        attempt,
                        ?pause,
                        checkpoint = %checkpoint.key,
                        "Kafka did not take the page; writing it again after the pause"
                    );
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn write_page_once(
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
            Self::Transactional(producer) => {
                let mut producer = producer.lock().await;
                match in_transaction(&mut producer, records, letters, checkpoint).await {
                    Ok(()) => Ok(()),
                    // Fenced: the error says so and every later page fails at once, since
                    // initialising the id again would fence the unit's new owner and let a
                    // replica with a stale checkpoint publish pages twice.
                    Err(error) => Err(producer.abort_after(error).await),
                }
            }
        }
    }
}

/// How many times a page is written before its unit fails: with pauses doubling from
/// [`FIRST_RETRY_PAUSE`], about half a minute, longer than a cluster takes to elect new leaders
/// for a dead broker's partitions (its session timeout, 9 s by default).
const WRITE_ATTEMPTS: u32 = 6;
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Whether a failed write may succeed if tried again: Kafka errors, except a record too large
/// for the topic, a client configuration librdkafka refused, and fencing (another replica owns
/// the unit; [`FetchError::Fenced`]). A producer that hit any other fatal error was replaced by
/// [`TransactionalProducer::abort_after`], so the next try starts on a fresh one.
fn is_passing(error: &FetchError) -> bool {
    match error {
        FetchError::Bus(error) => {
            !error.is_message_too_large() && !matches!(error, BusError::Client { .. })
        }
        FetchError::Transaction(error) => {
            !error.is_fenced() && !matches!(error, TransactionError::Client { .. })
        }
        _ => false,
    }
}

/// Records, dead letters and the checkpoint in one transaction.
async fn in_transaction(
    producer: &mut TransactionalProducer,
    records: &[Encoded],
    letters: &[Lettered],
    checkpoint: &Encoded,
) -> Result<(), FetchError> {
    let transaction = producer.begin().await?;
    let out = transaction.producer();
    let mut pending = Vec::with_capacity(records.len() + letters.len() + 1);
    for record in records {
        pending.push(out.enqueue(record.out()).await?);
    }
    enqueue_letters(out, letters, &mut pending).await?;
    pending.push(out.enqueue(checkpoint.out()).await?);
    for delivery in pending {
        delivery.acknowledged().await?;
    }
    transaction.commit().await?;
    Ok(())
}
