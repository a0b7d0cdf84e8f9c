//! Delivering one batch: retry what SEI could not take yet, split what it refused whole, and
//! dead-letter only the records it rejected.
//!
//! | SEI answers | the sink |
//! |---|---|
//! | 2xx | acknowledges every record of the request |
//! | 429, 408, 5xx, timeout, connection error | waits (backoff, `Retry-After` as a floor) and sends the same request again, without limit |
//! | 413 | splits the request in halves; a single record that is still too large is dead-lettered |
//! | 400 in the contract's error shape naming a record | isolates the named record until it is alone; it is dead-lettered, the rest delivered |
//! | 401, 403, any other 400, anything else | stops: the rest of the batch is neither acknowledged nor dead-lettered but handed back ([`Refusal`], [`Outcome::unsent`]) |
//!
//! A record is acknowledged only after SEI's 2xx for it, or after the DLQ write for it was
//! acknowledged by Kafka, or when a record of the same sys_id that replaced it in the batch
//! was applied. When SEI rejects the newest operation of a sys_id, the one it replaced is
//! sent in its place (see [`Deliverer::reject_newest`]): older operations are never
//! acknowledged past a rejected newer one without being applied themselves.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use nowstream_bus::{BusError, ConsumedMessage, DlqReason, DlqWriter};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::batch::{Batch, Op};
use crate::metrics;
use crate::readiness::{FAILING_AFTER, SeiReadiness};
use crate::record::{Input, Operation, Target, reasons};
use crate::request::{IngestRequest, delete_positions, upsert_positions};

/// What SEI said about one request, reduced to what the sink does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the records are stored (or were older than what SEI holds).
    Accepted,
    /// Try the same request again later.
    Retry {
        /// Metric label: the status code, `timeout` or `connection`.
        status: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What happened, for the log.
        detail: String,
    },
    /// 413: the body is too large.
    TooLarge {
        /// SEI's message.
        detail: String,
    },
    /// 400 in the contract's error shape, naming a bad record.
    Rejected {
        /// SEI's message.
        detail: String,
        /// The record SEI blamed.
        record: NamedRecord,
    },
    /// 401, 403, a 400 that names no record or is not the contract's error, or an
    /// unexpected status: nothing a split or the DLQ can fix.
    Refused {
        /// The status code.
        status: u16,
        /// SEI's message, or the start of a foreign body (never contains the key).
        detail: String,
        /// What kind of refusal (a metric label).
        reason: RefusalReason,
    },
}

/// The record a contract 400 blames, by its index in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedRecord {
    /// `upserts[i]` (the contract's `record_index`).
    Upsert(usize),
    /// `deletes[i]` (the contract's `field`).
    Delete(usize),
}

/// Why SEI's answer stops the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// 401: the API key is wrong (or SEI lost it).
    Unauthorized,
    /// 403: the key is not allowed for the tenant.
    Forbidden,
    /// 400 in the contract's shape that names no record the request holds (`bad_batch`,
    /// `bad_body`, `missing_idempotency_key`, an unknown code): the sink and SEI disagree
    /// on the contract.
    ContractBadRequest,
    /// 400 that is not the contract's error at all: not JSON, an HTML page from a proxy or
    /// WAF in front of SEI.
    ForeignBadRequest,
    /// Any other status no retry is meant to fix (404 for a wrong `sei.url`, …).
    UnexpectedStatus,
}

impl RefusalReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::ContractBadRequest => "contract_400",
            Self::ForeignBadRequest => "foreign_400",
            Self::UnexpectedStatus => "unexpected_status",
        }
    }
}

/// Sends ingestion requests to one SEI.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `request` to `target`'s ingestion endpoint.
    fn ingest(
        &self,
        target: &Target,
        request: &IngestRequest,
    ) -> impl Future<Output = Answer> + Send;
}

/// Where rejected records go.
pub trait DeadLetters<M>: Send + Sync + 'static {
    /// Writes `message` to the DLQ and waits until Kafka acknowledged it.
    fn dead_letter(
        &self,
        message: &M,
        reason: &DlqReason,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

impl DeadLetters<ConsumedMessage> for DlqWriter {
    async fn dead_letter(
        &self,
        message: &ConsumedMessage,
        reason: &DlqReason,
    ) -> Result<(), BusError> {
        self.send(message, reason).await.map(|_| ())
    }
}

/// SEI refused the batch in a way no split or DLQ can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// SEI's message, or the start of a foreign body.
    pub detail: String,
    /// What kind of refusal.
    pub reason: RefusalReason,
}

/// How a batch ended.
#[derive(Debug)]
pub struct Outcome<M> {
    /// Messages that may be acknowledged: delivered, superseded by a delivered record, or
    /// dead-lettered.
    pub done: Vec<M>,
    /// Set when delivery stopped at a refusal.
    pub refused: Option<Refusal>,
    /// After a refusal, the operations not delivered (in neither `done` nor the DLQ), for
    /// the caller to send again later.
    pub unsent: Vec<Op<M>>,
}

/// Delivers batches through a transport, dead-lettering rejected records.
#[derive(Debug)]
pub struct Deliverer<T, D> {
    transport: T,
    dead_letters: D,
    readiness: SeiReadiness,
    gzip: bool,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl<T: Transport, D> Deliverer<T, D> {
    /// A deliverer; `gzip` compresses bodies, the backoff bounds apply to every retry, and
    /// `readiness` hears when SEI keeps failing or works again.
    pub fn new(
        transport: T,
        dead_letters: D,
        readiness: SeiReadiness,
        gzip: bool,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> Self {
        Self {
            transport,
            dead_letters,
            readiness,
            gzip,
            initial_backoff,
            max_backoff,
        }
    }

    /// Delivers one batch; returns once every record is delivered or dead-lettered, or SEI
    /// refused it.
    pub async fn deliver<M: Input>(&self, batch: Batch<M>) -> Outcome<M>
    where
        D: DeadLetters<M>,
    {
        let target = batch.target;
        let entity = target.entity;
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        let mut done = Vec::with_capacity(batch.ops.len());
        let mut work = VecDeque::from([batch.ops]);
        while let Some(ops) = work.pop_front() {
            let request = IngestRequest::build(&ops, self.gzip);
            loop {
                let started = Instant::now();
                let answer = self.transport.ingest(&target, &request).await;
                metrics::request_duration(entity, started.elapsed());
                match answer {
                    Answer::Accepted => {
                        metrics::freshness(
                            entity,
                            chrono::Utc::now(),
                            ops.iter().filter_map(|op| match &op.operation {
                                Operation::Upsert { sys_updated_on, .. } => Some(*sys_updated_on),
                                Operation::Delete => None,
                            }),
                        );
                        backoff.reset();
                        self.readiness.working();
                        let superseded = ops.iter().map(|op| op.superseded.len()).sum();
                        metrics::batch_delivered(
                            entity,
                            request.upserts,
                            request.deletes,
                            superseded,
                        );
                        done.extend(ops.into_iter().flat_map(Op::into_messages));
                        break;
                    }
                    Answer::Retry {
                        status,
                        retry_after,
                        detail,
                    } => {
                        metrics::retry(entity, &status);
                        let delay = backoff.next_delay(retry_after);
                        let failures = backoff.failures();
                        if failures >= FAILING_AFTER {
                            self.readiness.failing(format!(
                                "SEI did not take a batch for {target} {failures} times in a row \
                                 (last: {detail}); retrying"
                            ));
                        }
                        // One line per doubling, so a long outage does not flood the log.
                        if failures.is_power_of_two() {
                            tracing::warn!(
                                %target, %status, failures, delay_ms = delay.as_millis() as u64,
                                records = ops.len(), %detail,
                                "SEI did not take the batch; retrying"
                            );
                        }
                        tokio::time::sleep(delay).await;
                    }
                    Answer::TooLarge { detail } => {
                        if ops.len() > 1 {
                            metrics::split(entity, 413);
                            tracing::info!(%target, records = ops.len(), "SEI answered 413; splitting the batch");
                            for part in halves(ops).into_iter().rev() {
                                work.push_front(part);
                            }
                        } else {
                            let detail =
                                format!("SEI answered 413 for this record alone: {detail}");
                            for op in ops {
                                if let Some(previous) =
                                    self.reject_newest(op, &detail, &mut done).await
                                {
                                    work.push_front(vec![previous]);
                                }
                            }
                        }
                        break;
                    }
                    Answer::Rejected { detail, record } => {
                        let Some(at) = position_of(&ops, record) else {
                            // SEI named a record the request does not hold: it is not
                            // talking about this body, so no record can be blamed.
                            let detail = format!(
                                "{detail} (names {record:?}, which the request of {} records does not hold)",
                                ops.len()
                            );
                            let refusal = Refusal {
                                status: 400,
                                detail,
                                reason: RefusalReason::ContractBadRequest,
                            };
                            return self.refused(entity, refusal, done, ops, work);
                        };
                        if ops.len() > 1 {
                            metrics::split(entity, 400);
                            for part in isolate(ops, at).into_iter().rev() {
                                work.push_front(part);
                            }
                        } else {
                            let detail = format!("SEI answered 400: {detail}");
                            for op in ops {
                                if let Some(previous) =
                                    self.reject_newest(op, &detail, &mut done).await
                                {
                                    work.push_front(vec![previous]);
                                }
                            }
                        }
                        break;
                    }
                    Answer::Refused {
                        status,
                        detail,
                        reason,
                    } => {
                        let refusal = Refusal {
                            status,
                            detail,
                            reason,
                        };
                        return self.refused(entity, refusal, done, ops, work);
                    }
                }
            }
        }
        Outcome {
            done,
            refused: None,
            unsent: Vec::new(),
        }
    }

    /// Ends a delivery at a refusal: what is done stays done, the rest is handed back.
    fn refused<M>(
        &self,
        entity: nowstream_model::Entity,
        refusal: Refusal,
        done: Vec<M>,
        ops: Vec<Op<M>>,
        work: VecDeque<Vec<Op<M>>>,
    ) -> Outcome<M> {
        metrics::refused(entity, refusal.status, refusal.reason.label());
        let mut unsent = ops;
        unsent.extend(work.into_iter().flatten());
        Outcome {
            done,
            refused: Some(refusal),
            unsent,
        }
    }

    /// SEI rejected `op`, the newest operation of its sys_id in the batch: dead-letters it,
    /// and returns the operation it replaced (carrying the still older ones), to be sent in
    /// its place. Acknowledging the older messages with the rejected one would lose them
    /// (a delete, then a rejected upsert: the delete would never reach SEI); sending the
    /// previous one instead ends SEI at the newest operation it accepts, and the rejected
    /// one waits in the DLQ.
    async fn reject_newest<M: Input>(
        &self,
        op: Op<M>,
        detail: &str,
        done: &mut Vec<M>,
    ) -> Option<Op<M>>
    where
        D: DeadLetters<M>,
    {
        let reason = DlqReason::new(reasons::REJECTED_BY_SEI, detail);
        let backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        dead_letter_durably(&self.dead_letters, &op.message, &reason, backoff).await;
        let Op {
            sys_id,
            message,
            mut superseded,
            ..
        } = op;
        done.push(message);
        let previous = superseded.pop()?;
        tracing::info!(
            sys_id = %sys_id, source = %previous.message.position(),
            "the newest operation of the record was rejected; sending the one it replaced"
        );
        Some(Op {
            sys_id,
            operation: previous.operation,
            message: previous.message,
            superseded,
        })
    }
}

/// Writes `message` to the DLQ, retrying until Kafka acknowledged it (a record whose DLQ copy
/// was not written must not be acknowledged), then logs and counts it: the one place where a
/// dead letter is reported.
pub async fn dead_letter_durably<M: Input, D: DeadLetters<M>>(
    dead_letters: &D,
    message: &M,
    reason: &DlqReason,
    mut backoff: Backoff,
) {
    while let Err(error) = dead_letters.dead_letter(message, reason).await {
        let delay = backoff.next_delay(None);
        tracing::warn!(
            source = %message.position(), %error, delay_ms = delay.as_millis() as u64,
            "cannot write to the DLQ; retrying"
        );
        tokio::time::sleep(delay).await;
    }
    metrics::dead_lettered(&reason.code);
    tracing::warn!(
        source = %message.position(), reason = %reason.code, detail = %reason.detail,
        "record dead-lettered"
    );
}

/// Where in `ops` the record SEI named is, if the request holds it.
fn position_of<M>(ops: &[Op<M>], record: NamedRecord) -> Option<usize> {
    match record {
        NamedRecord::Upsert(index) => upsert_positions(ops).get(index).copied(),
        NamedRecord::Delete(index) => delete_positions(ops).get(index).copied(),
    }
}

/// Two halves (the first one shorter by at most one).
fn halves<M>(mut ops: Vec<Op<M>>) -> Vec<Vec<Op<M>>> {
    let second = ops.split_off(ops.len() / 2);
    vec![ops, second]
}

/// The ops before `at`, the op at `at` alone, and the ops after it; empty parts left out.
fn isolate<M>(mut ops: Vec<Op<M>>, at: usize) -> Vec<Vec<Op<M>>> {
    let mut after = ops.split_off(at);
    let rest = after.split_off(1);
    [ops, after, rest]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use nowstream_model::Entity;

    use super::*;
    use crate::record::Operation;
    use crate::record::tests::{TestMessage, message};

    /// A scripted SEI: answers from a queue first, then by looking at the body.
    #[derive(Debug, Default)]
    struct FakeSei {
        scripted: Mutex<VecDeque<Answer>>,
        /// sys_ids SEI rejects with 400 (reporting the first one's index).
        bad: HashSet<String>,
        /// Largest request (in records) SEI takes; larger ones get 413.
        max_records: Option<usize>,
        stored: Mutex<Vec<String>>,
        deleted: Mutex<Vec<String>>,
        requests: Mutex<Vec<usize>>,
    }

    impl Transport for FakeSei {
        async fn ingest(&self, _target: &Target, request: &IngestRequest) -> Answer {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let upserts: Vec<String> = body["upserts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| record["sys_id"].as_str().unwrap().to_owned())
                .collect();
            self.requests.lock().unwrap().push(upserts.len());
            if let Some(answer) = self.scripted.lock().unwrap().pop_front() {
                return answer;
            }
            if self.max_records.is_some_and(|max| upserts.len() > max) {
                return Answer::TooLarge {
                    detail: "too large".into(),
                };
            }
            if let Some(index) = upserts.iter().position(|id| self.bad.contains(id)) {
                return Answer::Rejected {
                    detail: format!("upserts[{index}]: bad"),
                    record: NamedRecord::Upsert(index),
                };
            }
            self.stored.lock().unwrap().extend(upserts);
            let deletes = body["deletes"].as_array().unwrap().iter();
            self.deleted
                .lock()
                .unwrap()
                .extend(deletes.map(|id| id.as_str().unwrap().to_owned()));
            Answer::Accepted
        }
    }

    #[derive(Debug, Default)]
    struct FakeDlq {
        parked: Mutex<Vec<(i64, DlqReason)>>,
        failures_left: Mutex<u32>,
    }

    impl DeadLetters<TestMessage> for FakeDlq {
        async fn dead_letter(
            &self,
            message: &TestMessage,
            reason: &DlqReason,
        ) -> Result<(), BusError> {
            let mut failures = self.failures_left.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(BusError::ProducerClosed {
                    topic: "dlq".into(),
                    key: "k".into(),
                });
            }
            self.parked
                .lock()
                .unwrap()
                .push((message.offset, reason.clone()));
            Ok(())
        }
    }

    fn batch(count: usize) -> Batch<TestMessage> {
        let ops = (0..count)
            .map(|index| Op {
                sys_id: format!("id{index}"),
                operation: Operation::Upsert {
                    json: format!("{{\"sys_id\":\"id{index}\"}}"),
                    sys_updated_on: chrono::DateTime::UNIX_EPOCH,
                },
                message: message("sei.servicenow.user", index as i64, None, None),
                superseded: Vec::new(),
            })
            .collect();
        Batch {
            target: Target {
                integration_id: "sn1".into(),
                entity: Entity::User,
            },
            ops,
        }
    }

    fn deliverer(sei: FakeSei, dlq: FakeDlq) -> Deliverer<FakeSei, FakeDlq> {
        Deliverer::new(
            sei,
            dlq,
            SeiReadiness::detached(),
            false,
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
    }

    fn offsets(done: &[TestMessage]) -> Vec<i64> {
        let mut offsets: Vec<i64> = done.iter().map(|m| m.offset).collect();
        offsets.sort();
        offsets
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_answers_are_retried_until_sei_takes_the_batch() {
        let sei = FakeSei::default();
        for status in ["503", "429", "timeout"] {
            sei.scripted.lock().unwrap().push_back(Answer::Retry {
                status: status.into(),
                retry_after: (status == "429").then(|| Duration::from_secs(2)),
                detail: String::new(),
            });
        }
        let deliverer = deliverer(sei, FakeDlq::default());
        let started = Instant::now();
        let outcome = deliverer.deliver(batch(3)).await;
        assert_eq!(outcome.refused, None);
        assert_eq!(offsets(&outcome.done), vec![0, 1, 2]);
        assert_eq!(deliverer.transport.requests.lock().unwrap().len(), 4);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "Retry-After was honoured"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_record_is_dead_lettered_and_its_batch_mates_are_delivered() {
        let sei = FakeSei {
            bad: HashSet::from(["id3".to_owned(), "id7".to_owned()]),
            ..FakeSei::default()
        };
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(10)).await;
        assert_eq!(outcome.refused, None);
        assert_eq!(offsets(&outcome.done), (0..10).collect::<Vec<_>>());
        let parked = deliverer.dead_letters.parked.lock().unwrap().clone();
        assert_eq!(
            parked.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
            vec![3, 7]
        );
        assert_eq!(parked[0].1.code, "rejected_by_sei");
        assert!(
            parked[0].1.detail.contains("upserts[0]: bad"),
            "{:?}",
            parked[0].1
        );
        let mut stored = deliverer.transport.stored.lock().unwrap().clone();
        stored.sort();
        assert_eq!(stored.len(), 8);
        assert!(!stored.contains(&"id3".to_owned()) && !stored.contains(&"id7".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_400_that_names_no_record_refuses_the_batch_and_hands_every_record_back() {
        let sei = FakeSei::default();
        sei.scripted.lock().unwrap().push_back(Answer::Refused {
            status: 400,
            detail: "400 (not the contract's error: text/html, body starts \"<html>\")".into(),
            reason: RefusalReason::ForeignBadRequest,
        });
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(8)).await;
        assert!(outcome.done.is_empty(), "nothing is acknowledged");
        assert_eq!(outcome.unsent.len(), 8, "every record is handed back");
        assert_eq!(
            outcome.refused.map(|refusal| refusal.reason),
            Some(RefusalReason::ForeignBadRequest)
        );
        assert_eq!(
            *deliverer.transport.requests.lock().unwrap(),
            vec![8],
            "no split"
        );
        assert!(deliverer.dead_letters.parked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_400_naming_a_record_the_request_does_not_hold_is_a_refusal() {
        let sei = FakeSei::default();
        sei.scripted.lock().unwrap().push_back(Answer::Rejected {
            detail: "upserts[9]: bad".into(),
            record: NamedRecord::Upsert(9),
        });
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(3)).await;
        assert_eq!(
            outcome.refused.map(|refusal| refusal.reason),
            Some(RefusalReason::ContractBadRequest)
        );
        assert_eq!(outcome.unsent.len(), 3);
        assert!(deliverer.dead_letters.parked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_newest_operation_is_rejected_the_one_it_replaced_is_sent_instead() {
        // Offsets: 0 upsert a (v1), 1 delete a, 2 upsert a (bad) — collapsed into one op.
        let sei = FakeSei {
            bad: HashSet::from(["a".to_owned()]),
            ..FakeSei::default()
        };
        let deliverer = deliverer(sei, FakeDlq::default());
        let op = Op {
            sys_id: "a".into(),
            operation: Operation::Upsert {
                json: "{\"sys_id\":\"a\"}".into(),
                sys_updated_on: chrono::DateTime::UNIX_EPOCH,
            },
            message: message("sei.servicenow.user", 2, None, None),
            superseded: vec![
                crate::batch::Superseded {
                    operation: Operation::Upsert {
                        json: "{\"sys_id\":\"a\"}".into(),
                        sys_updated_on: chrono::DateTime::UNIX_EPOCH,
                    },
                    message: message("sei.servicenow.user", 0, None, None),
                },
                crate::batch::Superseded {
                    operation: Operation::Delete,
                    message: message("sei.servicenow.user", 1, None, None),
                },
            ],
        };
        let mut batch = batch(2);
        batch.ops.insert(1, op);
        let outcome = deliverer.deliver(batch).await;
        assert_eq!(outcome.refused, None);
        assert_eq!(offsets(&outcome.done), vec![0, 0, 1, 1, 2]);
        let parked = deliverer.dead_letters.parked.lock().unwrap().clone();
        assert_eq!(
            parked.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
            vec![2],
            "only the rejected upsert is dead-lettered"
        );
        assert_eq!(
            *deliverer.transport.deleted.lock().unwrap(),
            vec!["a".to_owned()],
            "the delete it had replaced reached SEI"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn too_large_batches_are_split_until_sei_takes_them() {
        let sei = FakeSei {
            max_records: Some(3),
            ..FakeSei::default()
        };
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(10)).await;
        assert_eq!(offsets(&outcome.done), (0..10).collect::<Vec<_>>());
        assert_eq!(deliverer.transport.stored.lock().unwrap().len(), 10);
        assert!(deliverer.dead_letters.parked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_record_too_large_for_sei_is_dead_lettered() {
        let sei = FakeSei {
            max_records: Some(0),
            ..FakeSei::default()
        };
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(2)).await;
        assert_eq!(outcome.done.len(), 2);
        assert_eq!(deliverer.dead_letters.parked.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_stops_delivery_without_dead_lettering() {
        let sei = FakeSei::default();
        sei.scripted.lock().unwrap().push_back(Answer::Refused {
            status: 401,
            detail: "unauthorized".into(),
            reason: RefusalReason::Unauthorized,
        });
        let deliverer = deliverer(sei, FakeDlq::default());
        let outcome = deliverer.deliver(batch(5)).await;
        assert!(outcome.done.is_empty());
        assert_eq!(outcome.unsent.len(), 5);
        assert_eq!(
            outcome.refused,
            Some(Refusal {
                status: 401,
                detail: "unauthorized".into(),
                reason: RefusalReason::Unauthorized,
            })
        );
        assert!(deliverer.dead_letters.parked.lock().unwrap().is_empty());
        assert_eq!(deliverer.transport.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_dlq_write_is_retried_before_the_record_counts_as_done() {
        let sei = FakeSei {
            bad: HashSet::from(["id0".to_owned()]),
            ..FakeSei::default()
        };
        let dlq = FakeDlq {
            failures_left: Mutex::new(3),
            ..FakeDlq::default()
        };
        let deliverer = deliverer(sei, dlq);
        let outcome = deliverer.deliver(batch(1)).await;
        assert_eq!(outcome.done.len(), 1);
        assert_eq!(deliverer.dead_letters.parked.lock().unwrap().len(), 1);
    }

    #[test]
    fn isolating_a_record_keeps_the_others_in_order() {
        let parts = isolate(batch(5).ops, 2);
        let ids: Vec<Vec<String>> = parts
            .iter()
            .map(|part| part.iter().map(|op| op.sys_id.clone()).collect())
            .collect();
        assert_eq!(
            ids,
            vec![vec!["id0", "id1"], vec!["id2"], vec!["id3", "id4"]]
        );
        assert_eq!(isolate(batch(2).ops, 0).len(), 2);
    }
}
