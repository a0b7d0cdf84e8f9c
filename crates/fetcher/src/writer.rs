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
//! A write Kafka did not take (a broker died, a partition leader moved, a transaction was
//! aborted) is tried again a few times with growing pauses ([`WRITE_ATTEMPTS`]) before the unit
//! gives up and starts over from its checkpoint: losing one broker of a cluster is routine and
//! must not restart the unit. A small write (a slice plan, a reconciliation page) is written
//! again in place ([`PageWriter::write`]). A page of fetched records is not: it is handed over
//! ([`PageWriter::write_page`]) and each record released as soon as librdkafka has its own copy,
//! so a page waiting for its acknowledgements is held once, not twice (a few megabytes per
//! page, times the pages of a sliced backfill). Its stream fetches it again from ServiceNow
//! instead, from the position after the last page written ([`crate::unit`]).

use std::borrow::Borrow;
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

    /// Produces `records`, then `checkpoint`; returns once Kafka has all of them. A write
    /// Kafka failed for a passing reason ([`may_pass`]) is tried again in place, up to
    /// [`WRITE_ATTEMPTS`] times; the records written twice are the same versions, which keyed,
    /// versioned upserts absorb (and an aborted transaction's records nobody reads). For small
    /// writes: the records are kept until the end.
    pub async fn write(&self, records: &[Encoded], checkpoint: &Encoded) -> Result<(), FetchError> {
        let mut refused = Refusals::default();
        loop {
            let error = match self.write_once(records.iter(), &[], checkpoint).await {
                Err(error) => error,
                outcome => return outcome,
            };
            let Some(pause) = refused.next(&error) else {
                return Err(error);
            };
            tracing::warn!(
                %error,
                attempt = refused.count(),
                ?pause,
                checkpoint = %checkpoint.key,
                "Kafka did not take the write; writing it again after the pause"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Produces a page's `records` and its dead `letters`, then `checkpoint`, once: the
    /// checkpoint moves past a dead-lettered row only once the DLQ has it (in exactly-once
    /// mode, inside the same transaction). Each record is dropped as soon as it is queued,
    /// since librdkafka keeps its own copy until the broker acknowledges it; a failed write
    /// therefore cannot be repeated from here, and the caller fetches the page again when
    /// [`may_pass`] says that may succeed.
    pub async fn write_page(
        &self,
        records: Vec<Encoded>,
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        self.write_once(records, letters, checkpoint).await
    }

    async fn write_once<R: Borrow<Encoded>>(
        &self,
        records: impl IntoIterator<Item = R>,
        letters: &[Lettered],
        checkpoint: &Encoded,
    ) -> Result<(), FetchError> {
        match self {
            Self::AtLeastOnce(producer) => {
                let mut pending = Vec::new();
                enqueue_records(producer, records, &mut pending).await?;
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

/// Queues `records` on `producer`, adding their pending deliveries to `pending`. An owned
/// record is dropped once queued: librdkafka holds its copy from then on.
async fn enqueue_records<R: Borrow<Encoded>>(
    producer: &Producer,
    records: impl IntoIterator<Item = R>,
    pending: &mut Vec<nowstream_bus::PendingDelivery>,
) -> Result<(), FetchError> {
    for record in records {
        pending.push(producer.enqueue(record.borrow().out()).await?);
    }
    Ok(())
}

/// How many times a write (or, for a page of records, fetch and write) is tried before its
/// unit fails: with pauses doubling from [`FIRST_RETRY_PAUSE`], about half a minute, longer
/// than a cluster takes to elect new leaders for a dead broker's partitions (its session
/// timeout, 9 s by default).
pub const WRITE_ATTEMPTS: u32 = 6;
/// The pause after the first failed try; each later one doubles it.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Failed tries of one write (or one page), each followed by a pause twice the last before
/// the next try; [`WRITE_ATTEMPTS`] tries in all.
#[derive(Debug)]
pub(crate) struct Refusals {
    count: u32,
    pause: Duration,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            count: 0,
            pause: FIRST_RETRY_PAUSE,
        }
    }
}

impl Refusals {
    /// The pause before the next try after `error`, or `None` when another try is not worth
    /// it (the error will not pass, or the tries are used up).
    pub(crate) fn next(&mut self, error: &FetchError) -> Option<Duration> {
        if !may_pass(error) || self.count + 1 >= WRITE_ATTEMPTS {
            return None;
        }
        self.count += 1;
        let pause = self.pause;
        self.pause = pause.saturating_mul(2);
        Some(pause)
    }

    /// Failed tries so far.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }
}

/// Whether a failed write may succeed if tried again: Kafka errors, except a record too large
/// for the topic, a client configuration librdkafka refused, and fencing (another replica owns
/// the unit; [`FetchError::Fenced`]). A producer that hit any other fatal error was replaced by
/// [`TransactionalProducer::abort_after`], so the next try starts on a fresh one.
pub fn may_pass(error: &FetchError) -> bool {
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
async fn in_transaction<R: Borrow<Encoded>>(
    producer: &mut TransactionalProducer,
    records: impl IntoIterator<Item = R>,
    letters: &[Lettered],
    checkpoint: &Encoded,
) -> Result<(), FetchError> {
    let transaction = producer.begin().await?;
    let out = transaction.producer();
    let mut pending = Vec::new();
    enqueue_records(out, records, &mut pending).await?;
    enqueue_letters(out, letters, &mut pending).await?;
    pending.push(out.enqueue(checkpoint.out()).await?);
    for delivery in pending {
        delivery.acknowledged().await?;
    }
    transaction.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_write_is_tried_again_after_doubling_pauses_until_the_attempts_are_used_up() {
        let passing = FetchError::Bus(nowstream_bus::BusError::ProducerClosed {
            topic: "servicenow.raw.incident".into(),
            key: "4711:a".into(),
        });
        let mut refused = Refusals::default();
        let pauses: Vec<Duration> = std::iter::from_fn(|| refused.next(&passing)).collect();
        assert_eq!(pauses.len() as u32, WRITE_ATTEMPTS - 1);
        assert_eq!(pauses[0], FIRST_RETRY_PAUSE);
        assert!(pauses.windows(2).all(|pair| pair[1] == pair[0] * 2));
    }

    #[test]
    fn a_write_refused_for_fencing_is_not_tried_again() {
        let fenced = FetchError::Fenced {
            transactional_id: "fetchers-4711:incident".into(),
            reason: "fenced".into(),
        };
        assert_eq!(Refusals::default().next(&fenced), None);
    }
}
